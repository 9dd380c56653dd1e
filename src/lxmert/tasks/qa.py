"""`LxmertForQuestionAnswering`: VQA / GQA / VizWiz / A-OKVQA answer classification."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from lxmert.config import LxmertConfig
from lxmert.modeling.base import LxmertPreTrainedModel
from lxmert.modeling.heads import AnswerHead
from lxmert.modeling.lxmert import LxmertModel
from lxmert.modeling.outputs import LxmertForQuestionAnsweringOutput
from lxmert.tasks.pretraining import _ce_ignoring


def qa_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Long labels [B] -> cross-entropy (GQA option, HF); float [B, A] soft scores ->
    BCE-with-logits averaged over elements times A (the release's VQA loss)."""
    if labels.dtype.is_floating_point:
        if labels.shape != logits.shape:
            raise ValueError(f"soft-score labels {tuple(labels.shape)} != logits {tuple(logits.shape)}")
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float()) * logits.shape[-1]
    return _ce_ignoring(logits, labels.view(-1))


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
        **unused,
    ) -> LxmertForQuestionAnsweringOutput:
        enc = self.lxmert(input_ids, visual_feats, visual_pos, attention_mask, visual_attention_mask,
                          token_type_ids, inputs_embeds, output_attentions, output_hidden_states)
        out = LxmertForQuestionAnsweringOutput(**{k: getattr(enc, k) for k in enc.keys()
                                                   if k not in ("language_output", "vision_output")})
        out.question_answering_score = self.answer_head(enc.pooled_output)
        if labels is not None:
            out.loss = qa_loss(out.question_answering_score, labels)
        return out
