"""Typed model outputs; field names match `transformers` where both have the field."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Optional

import torch

Tensors = Optional[tuple[torch.Tensor, ...]]


class ModelOutput:
    """Dataclass base with `out["name"]`, `out[0]` (non-None fields in order) and `to_tuple()`."""

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None)

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return getattr(self, key)
        return self.to_tuple()[key]

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def carried(self, *dropped: str) -> dict[str, Any]:
        """The set fields but `dropped`: what a head model copies from the encoder's output
        into its own (heads drop the sequence outputs they consumed)."""
        return {k: getattr(self, k) for k in self.keys() if k not in dropped}


@dataclass
class EncoderOutputs(ModelOutput):
    """Hidden states and attention maps of every encoder.

    `cross_encoder_attentions` are language->object maps (as transformers returns);
    `cross_encoder_vision_attentions` are the object->language maps that transformers
    drops; `cross_language_attentions` / `cross_vision_attentions` are the self-attention
    maps inside the cross layers.
    """

    language_hidden_states: Tensors = None
    vision_hidden_states: Tensors = None
    language_attentions: Tensors = None
    vision_attentions: Tensors = None
    cross_encoder_attentions: Tensors = None
    cross_encoder_vision_attentions: Tensors = None
    cross_language_attentions: Tensors = None
    cross_vision_attentions: Tensors = None


@dataclass
class LxmertModelOutput(EncoderOutputs):
    language_output: Optional[torch.Tensor] = None
    vision_output: Optional[torch.Tensor] = None
    pooled_output: Optional[torch.Tensor] = None


@dataclass
class LxmertForPreTrainingOutput(EncoderOutputs):
    loss: Optional[torch.Tensor] = None
    losses: Optional[dict[str, torch.Tensor]] = None
    prediction_logits: Optional[torch.Tensor] = None
    cross_relationship_score: Optional[torch.Tensor] = None
    question_answering_score: Optional[torch.Tensor] = None
    obj_logits: Optional[dict[str, torch.Tensor]] = None
    language_output: Optional[torch.Tensor] = None
    vision_output: Optional[torch.Tensor] = None
    pooled_output: Optional[torch.Tensor] = None


@dataclass
class LxmertForQuestionAnsweringOutput(EncoderOutputs):
    loss: Optional[torch.Tensor] = None
    question_answering_score: Optional[torch.Tensor] = None
    pooled_output: Optional[torch.Tensor] = None


@dataclass
class LxmertForNLVR2Output(EncoderOutputs):
    loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None
    pooled_output: Optional[torch.Tensor] = None
