"""Shared base of every model: weight init and the `from_pretrained` / `save_pretrained` API."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from lxmert.config import LxmertConfig

M = TypeVar("M", bound="LxmertPreTrainedModel")


class LxmertPreTrainedModel(nn.Module):
    """Base class: BERT initialisation and checkpoint I/O (delegated to `lxmert.checkpoints`)."""

    config: LxmertConfig

    def __init__(self, config: LxmertConfig) -> None:
        super().__init__()
        self.config = config

    def init_weights(self) -> None:
        self.apply(self._init_module)
        self.tie_weights()

    def _init_module(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def tie_weights(self) -> None:
        """Models with an MLM decoder tie it to the word embeddings (as BERT and the release)."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self, trainable_only: bool = False) -> int:
        seen: set[int] = set()
        total = 0
        for p in self.parameters():
            if id(p) in seen or (trainable_only and not p.requires_grad):
                continue
            seen.add(id(p))
            total += p.numel()
        return total

    @classmethod
    def from_pretrained(cls: type[M], path: str | os.PathLike, *, strict: bool = True,
                        answers: Any = None, map_location: str | torch.device = "cpu",
                        **config_overrides: Any) -> M:
        """Load from our directory, a Hugging Face directory, or an authors' `.pth` file.

        The layout is detected from the keys. A checkpoint may hold more heads than this
        model needs (they are ignored); with `answers` (a list or `AnswerTable`) a QA head
        trained on another answer list is remapped row by row by normalised answer text.
        """
        from lxmert.checkpoints import load_pretrained

        return load_pretrained(cls, path, strict=strict, answers=answers,
                               map_location=map_location, **config_overrides)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write `config.json` + `model.safetensors` (+ `answers.json` for QA models)."""
        from lxmert.checkpoints import save_pretrained

        return save_pretrained(self, directory)
