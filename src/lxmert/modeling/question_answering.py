"""`LxmertForQuestionAnswering`: VQA / GQA / VizWiz / A-OKVQA answer classification."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from lxmert.checkpoint.answers import release_answers, remap_answer_head
from lxmert.checkpoint.files import StoredCheckpoint
from lxmert.checkpoint.layouts import ANSWER_WEIGHT_KEY
from lxmert.config import LxmertConfig
from lxmert.errors import CheckpointError
from lxmert.modeling.base import LxmertPreTrainedModel
from lxmert.modeling.heads import AnswerHead
from lxmert.modeling.losses import cross_entropy_ignoring
from lxmert.modeling.lxmert import LxmertModel
from lxmert.modeling.outputs import LxmertForQuestionAnsweringOutput
from lxmert.modeling.registry import register_model
from lxmert.text import AnswerTable

__all__ = ["LxmertForQuestionAnswering", "qa_loss", "adapt_answer_head"]

logger = logging.getLogger(__name__)


def qa_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Long labels [B] -> cross-entropy (GQA option, HF); float [B, A] soft scores ->
    BCE-with-logits averaged over elements times A (the release's VQA loss)."""
    if labels.dtype.is_floating_point:
        if labels.shape != logits.shape:
            raise ValueError(f"soft-score labels {tuple(labels.shape)} != logits {tuple(logits.shape)}")
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float()) * logits.shape[-1]
    return cross_entropy_ignoring(logits, labels.view(-1))


def adapt_answer_head(config: LxmertConfig, state: dict[str, torch.Tensor], stored: StoredCheckpoint,
                      answers: AnswerTable | Sequence[str] | None
                      ) -> tuple[LxmertConfig, dict[str, torch.Tensor], list[str] | None]:
    """Fit a checkpoint's answer head to the answer list wanted.

    With `answers`, the head's rows are remapped by answer text from the checkpoint's own
    list (answers.json, or the release's table of that size) - how the release starts VQA
    from the pre-trained 9500-answer head. Without, the head keeps its rows. Returns the
    config (num_qa_labels set), the state and the row names (None when unknown)."""
    target = None if answers is None else list(answers.answers if isinstance(answers, AnswerTable) else answers)
    if ANSWER_WEIGHT_KEY not in state:  # no head stored (or int8: built from the config)
        if target is not None:
            return dataclasses.replace(config, num_qa_labels=len(target)), state, target
        known = stored.answers or release_answers(config.num_qa_labels)
        return config, state, (list(known) if known and len(known) == config.num_qa_labels else None)
    rows = state[ANSWER_WEIGHT_KEY].shape[0]
    source = stored.answers or release_answers(rows)
    if target is None:
        return dataclasses.replace(config, num_qa_labels=rows), state, \
            (list(source) if source is not None and len(source) == rows else None)
    if source is None:
        raise CheckpointError(f"{stored.path}: cannot remap a {rows}-answer head: the checkpoint names no "
                              f"answers (answers.json) and {rows} is not a released table size")
    if list(source) != target:
        state, copied = remap_answer_head(state, source, target)
        logger.info("answer head remapped: %d of %d answers found in the checkpoint's %d",
                    copied, len(target), len(source))
    return dataclasses.replace(config, num_qa_labels=len(target)), state, target


@register_model
class LxmertForQuestionAnswering(LxmertPreTrainedModel):
    """Encoder + answer head on the pooled output; `answers` names the head's rows."""

    def __init__(self, config: LxmertConfig, answers: Sequence[str] | None = None) -> None:
        super().__init__(config)
        if answers is not None and len(answers) != config.num_qa_labels:
            raise ValueError(f"{len(answers)} answers for num_qa_labels={config.num_qa_labels}")
        self.answers = list(answers) if answers is not None else None
        self.lxmert = LxmertModel(config)
        d = config.hidden_size
        self.answer_head = AnswerHead(d, 2 * d, config.num_qa_labels, config.layer_norm_eps)
        self.init_weights()

    @classmethod
    def from_checkpoint(cls, config: LxmertConfig, state: dict[str, torch.Tensor], stored: StoredCheckpoint,
                        *, answers: AnswerTable | Sequence[str] | None = None, **options: Any
                        ) -> tuple["LxmertForQuestionAnswering", dict[str, torch.Tensor]]:
        """`answers`: the answer list the head should have (rows remapped by answer text
        from the checkpoint's list); default the checkpoint's own rows."""
        if options:
            raise TypeError(f"LxmertForQuestionAnswering.from_pretrained() got unexpected options {sorted(options)}")
        config, state, rows = adapt_answer_head(config, state, stored, answers)
        return cls(config, answers=rows), state

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        visual_feats: torch.Tensor | None = None,
        visual_pos: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        visual_attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> LxmertForQuestionAnsweringOutput:
        enc = self.lxmert(input_ids, visual_feats, visual_pos, attention_mask, visual_attention_mask,
                          token_type_ids, inputs_embeds, output_attentions, output_hidden_states,
                          first_token_only=not self.training)  # the head reads only the pooled [CLS]
        out = LxmertForQuestionAnsweringOutput(**enc.carried("language_output", "vision_output"))
        out.question_answering_score = self.answer_head(enc.pooled_output)
        if labels is not None:
            out.loss = qa_loss(out.question_answering_score, labels)
        return out
