"""`LxmertForClassification`: one logit per label on the pooled output.

Multimodal classification (hateful memes, sentiment of image+text posts, multi-label
tagging) as the meme toolkits built on LXMERT do it: the encoder's pooled [CLS] vector
goes through the release's classifier shape (Linear(d, 2d), GeLU, LayerNorm,
Linear(2d, n_labels)).

- `multi_label=True`: every label is an independent yes/no (sigmoid per logit),
  targets are float [B, L] in {0, 1}, loss = BCE-with-logits averaged over elements.
  A binary task ("hateful or not") is a multi-label task with ONE label: one logit,
  AUROC on its sigmoid - the way hateful-memes numbers are reported.
- `multi_label=False`: exactly one label per example (softmax), targets long [B]
  (-100 = ignore), loss = cross-entropy.

The label names and the mode are stored in `config.extra["classification"]`, so a saved
checkpoint reloads with `LxmertForClassification.from_pretrained(dir)` and nothing else.
Keys: `lxmert.*` (encoder) + `classifier.logit_fc.{0,2,3}.*` (head).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from lxmert.checkpoint.files import StoredCheckpoint
from lxmert.config import LxmertConfig
from lxmert.errors import CheckpointError
from lxmert.modeling.base import LxmertPreTrainedModel
from lxmert.modeling.heads import AnswerHead
from lxmert.modeling.losses import cross_entropy_ignoring
from lxmert.modeling.lxmert import LxmertModel
from lxmert.modeling.outputs import LxmertForNLVR2Output
from lxmert.modeling.registry import register_model

__all__ = ["LxmertForClassification", "classification_loss", "CLASSIFICATION_KEY"]

#: where the label names and the mode live in `LxmertConfig.extra`
CLASSIFICATION_KEY = "classification"


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """BCE-with-logits (mean over elements) for multi-label, cross-entropy otherwise."""
    if multi_label:
        if labels.shape != logits.shape:
            raise ValueError(f"multi-label targets {tuple(labels.shape)} != logits {tuple(logits.shape)}")
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
    if labels.dtype.is_floating_point:
        raise ValueError("single-label classification expects long label ids [B], got floats")
    return cross_entropy_ignoring(logits, labels.view(-1))


@register_model
class LxmertForClassification(LxmertPreTrainedModel):
    """Encoder + classifier on the pooled output; `labels` names the logits.

    Build with `LxmertForClassification(config, labels=["not hateful", "hateful"],
    multi_label=False)`, or without arguments when `config.extra["classification"]`
    already holds them (a loaded checkpoint).
    """

    def __init__(self, config: LxmertConfig, labels: Sequence[str] | None = None,
                 multi_label: bool | None = None) -> None:
        # our own copy: the label list is written into config.extra below
        config = dataclasses.replace(config, extra=copy.deepcopy(config.extra))
        super().__init__(config)
        stored = dict(config.extra.get(CLASSIFICATION_KEY) or {})
        if labels is None:
            labels = stored.get("labels")
        if multi_label is None:
            multi_label = stored.get("multi_label")
        if not labels:
            raise ValueError("LxmertForClassification needs label names: pass labels=[...] or a config "
                             f"whose extra[{CLASSIFICATION_KEY!r}] has them")
        labels = [str(x) for x in labels]
        if len(set(labels)) != len(labels):
            raise ValueError(f"duplicate label names in {labels}")
        if multi_label is None:
            multi_label = len(labels) == 1
        if not multi_label and len(labels) < 2:
            raise ValueError("single-label classification needs at least 2 labels (use multi_label=True "
                             "with one label for a binary task scored by one sigmoid)")
        self.labels = labels
        self.multi_label = bool(multi_label)
        config.extra[CLASSIFICATION_KEY] = {"labels": list(labels), "multi_label": self.multi_label}
        self.lxmert = LxmertModel(config)
        d = config.hidden_size
        self.classifier = AnswerHead(d, 2 * d, len(labels), config.layer_norm_eps)
        self.init_weights()

    @property
    def num_labels(self) -> int:
        return len(self.labels)

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
    ) -> LxmertForNLVR2Output:
        """Returns `logits` [B, n_labels] (and `loss` with `labels`), as `LxmertForNLVR2`."""
        enc = self.lxmert(input_ids, visual_feats, visual_pos, attention_mask, visual_attention_mask,
                          token_type_ids, inputs_embeds, output_attentions, output_hidden_states,
                          first_token_only=not self.training)  # the head reads only the pooled [CLS]
        out = LxmertForNLVR2Output(**enc.carried("language_output", "vision_output"))
        out.logits = self.classifier(enc.pooled_output)
        if labels is not None:
            out.loss = classification_loss(out.logits, labels, self.multi_label)
        return out

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Sigmoid per label (multi-label) or softmax over labels (single-label)."""
        return torch.sigmoid(logits.float()) if self.multi_label else torch.softmax(logits.float(), -1)

    @classmethod
    def from_checkpoint(cls, config: LxmertConfig, state: dict[str, torch.Tensor], stored: StoredCheckpoint, *,
                        labels: Sequence[str] | None = None, multi_label: bool | None = None, **options: Any
                        ) -> tuple["LxmertForClassification", dict[str, torch.Tensor]]:
        """A classifier checkpoint, or a new classifier on any encoder checkpoint.

        From a pre-trained / QA / NLVR2 checkpoint pass `labels` (and `multi_label`, with
        `strict=False`): the encoder is loaded, other heads are dropped, the classifier
        starts fresh. From a classification checkpoint the labels come from its config;
        passing different labels is an error (the head's rows would not mean what the
        names say).
        """
        if options:
            raise TypeError(f"LxmertForClassification.from_pretrained() got unexpected options {sorted(options)}")
        config = dataclasses.replace(config, extra=copy.deepcopy(config.extra))
        stored_labels = (config.extra.get(CLASSIFICATION_KEY) or {}).get("labels")
        has_head = any(k.startswith("classifier.") for k in state) or (stored.int8 and stored_labels is not None)
        if labels is not None and has_head and stored_labels is not None and list(labels) != list(stored_labels):
            raise CheckpointError(f"{stored.path}: classifier was trained for labels {stored_labels}, "
                                  f"not {list(labels)}")
        if labels is not None and not has_head:
            config.extra[CLASSIFICATION_KEY] = {"labels": list(labels), "multi_label": multi_label}
        elif multi_label is not None:
            config.extra.setdefault(CLASSIFICATION_KEY, {})["multi_label"] = multi_label
        if not (config.extra.get(CLASSIFICATION_KEY) or {}).get("labels"):
            raise CheckpointError(f"{stored.path}: no classifier in this checkpoint; pass labels=[...] "
                                  f"(and strict=False) to start one")
        return cls(config), state
