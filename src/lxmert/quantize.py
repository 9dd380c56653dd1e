"""Int8 CPU inference: quantise a checkpoint, load it, and measure what it changes.

The quantisation itself (which Linear layers, 7- or 8-bit activations, the stored int8
tensors) is `lxmert.modeling.int8`; an int8 directory is an ordinary checkpoint directory
holding `model.int8.safetensors`, so `Model.from_pretrained(dir)` loads it. This module is
the workflow around it: `quantize_checkpoint` (what `lxmert quantize` runs),
`save_quantized` / `load_quantized`, and the answer agreement between an fp32 model and
its int8 copy (`answer_agreement`, `check_agreement` on a labelled split).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from lxmert.checkpoint.files import INT8_WEIGHTS_NAME
from lxmert.modeling import LxmertPreTrainedModel
from lxmert.modeling.int8 import (
    ACTIVATION_RANGES,
    DEFAULT_SKIP,
    HEAD_SKIP,
    QUANT_KEY,
    TIED_SKIP,
    full_range_is_exact,
    is_quantized,
    quantize_model,
    weight_rounding_model,
)

__all__ = [
    "QUANTIZED_WEIGHTS_NAME", "quantize_model", "is_quantized", "save_quantized", "load_quantized",
    "quantize_checkpoint", "answer_agreement", "Agreement", "AgreementCounter", "DEFAULT_SKIP", "TIED_SKIP",
    "HEAD_SKIP", "ACTIVATION_RANGES", "full_range_is_exact", "weight_rounding_model",
]

QUANTIZED_WEIGHTS_NAME = INT8_WEIGHTS_NAME


def save_quantized(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Write a quantised model: `model.int8.safetensors`, `config.json` (with the
    quantisation flag), `answers.json` for QA models."""
    if not is_quantized(model):
        raise ValueError("model is not quantised; call quantize_model first")
    config = getattr(model, "config", None)
    if config is None or QUANT_KEY not in config.extra:
        raise ValueError("model.config lacks the quantisation flag; quantise with lxmert.quantize.quantize_model")
    if not isinstance(model, LxmertPreTrainedModel):
        raise TypeError(f"save_quantized needs an lxmert model, got {type(model).__name__}")
    return model.save_pretrained(directory)


def load_quantized(directory: str | os.PathLike, activation_range: str = "auto") -> nn.Module:
    """Load an int8 directory (of whatever model class it records) ready for CPU inference.

    `activation_range` as for `quantize_model`, decided for THIS machine."""
    path = Path(directory)
    if not (path / INT8_WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f"{path / INT8_WEIGHTS_NAME}: no quantised weights here "
                                f"(write them with `lxmert quantize`)")
    return LxmertPreTrainedModel.from_pretrained(path / INT8_WEIGHTS_NAME, activation_range=activation_range)


def quantize_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, per_channel: bool = True,
                        skip: Iterable[str] = DEFAULT_SKIP, activation_range: str = "auto") -> Path:
    """Load any checkpoint `src` (our dir, HF dir, authors' .pth), quantise, write `dst`."""
    model = LxmertPreTrainedModel.from_pretrained(src)
    return save_quantized(quantize_model(model, per_channel=per_channel, skip=skip, inplace=True,
                                         activation_range=activation_range), dst)

@dataclass
class Agreement:
    """How often the int8 model gives the fp32 model's answer, and how far the logits move."""

    samples: int
    top1_agreement: float       # share of samples whose arg-max answer is the same
    top5_overlap: float         # mean |top5(fp32) & top5(int8)| / 5
    max_abs_logit_diff: float
    mean_abs_logit_diff: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AgreementCounter:
    """Accumulates `Agreement` over batches of (reference, candidate) logits, so that one pass
    over the data can compare several candidates with the same reference."""

    def __init__(self, name: str = "logits") -> None:
        self.name = name
        self.n = self.agree = self.count = 0
        self.overlap = self.max_diff = self.abs_sum = 0.0

    def add(self, a: torch.Tensor, b: torch.Tensor) -> None:
        a, b = a.float(), b.float()
        if a.shape != b.shape:
            raise ValueError(f"{self.name}: shapes differ {tuple(a.shape)} vs {tuple(b.shape)}")
        self.agree += int((a.argmax(-1) == b.argmax(-1)).sum())
        k = min(5, a.shape[-1])
        ta, tb = a.topk(k, dim=-1).indices, b.topk(k, dim=-1).indices
        self.overlap += float((ta.unsqueeze(-1) == tb.unsqueeze(-2)).any(-1).float().sum() / k)
        diff = (a - b).abs()
        self.max_diff = max(self.max_diff, float(diff.max()))
        self.abs_sum += float(diff.sum())
        self.count += diff.numel()
        self.n += a.shape[0]

    def result(self) -> Agreement:
        if self.n == 0:
            raise ValueError("no batches to compare")
        return Agreement(samples=self.n, top1_agreement=self.agree / self.n, top5_overlap=self.overlap / self.n,
                         max_abs_logit_diff=self.max_diff, mean_abs_logit_diff=self.abs_sum / self.count)


@torch.inference_mode()
def answer_agreement(reference: nn.Module, candidate: nn.Module, batches: Iterable[dict[str, Any]],
                     output: str = "question_answering_score") -> Agreement:
    """Compare the answer logits of two models on the same batches (e.g. fp32 vs int8)."""
    counter = AgreementCounter(output)
    for batch in batches:
        counter.add(getattr(reference(**batch), output), getattr(candidate(**batch), output))
    return counter.result()
