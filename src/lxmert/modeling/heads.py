"""Prediction heads: masked LM, cross-modality matching, object prediction, answers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lxmert.config import LxmertConfig
from lxmert.modeling.layers import activation


class GeLU(nn.Module):
    """Exact GeLU as a module: it sits at index 1 of `logit_fc` in released checkpoints."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x)


class PredictionHeadTransform(nn.Module):
    def __init__(self, config: LxmertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.act(self.dense(hidden)))


class LMPredictionHead(nn.Module):
    """Word-piece logits; `decoder.weight` is tied to the word embeddings."""

    def __init__(self, config: LxmertConfig) -> None:
        super().__init__()
        self.transform = PredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(self.transform(hidden), self.decoder.weight, self.bias)


class PreTrainingHeads(nn.Module):
    """`cls.predictions` (MLM) and `cls.seq_relationship` (matched / not matched)."""

    def __init__(self, config: LxmertConfig) -> None:
        super().__init__()
        self.predictions = LMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)


class VisualObjHead(nn.Module):
    """Per-object logits for detector labels (1600), attributes (400) and the 2048-d feature."""

    def __init__(self, config: LxmertConfig) -> None:
        super().__init__()
        self.transform = PredictionHeadTransform(config)
        sizes = {}
        if config.visual_obj_loss:
            sizes["obj"] = config.num_object_labels
        if config.visual_attr_loss:
            sizes["attr"] = config.num_attr_labels
        if config.visual_feat_loss:
            sizes["feat"] = config.visual_feat_dim
        self.decoder_dict = nn.ModuleDict({k: nn.Linear(config.hidden_size, n) for k, n in sizes.items()})

    def forward(self, hidden: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.transform(hidden)
        return {key: decoder(hidden) for key, decoder in self.decoder_dict.items()}


class AnswerHead(nn.Module):
    """Linear, GeLU, LayerNorm, Linear: the release's classifier.

    QA: Linear(d, 2d) ... Linear(2d, n_answers); NLVR2: Linear(2d, 2d) ... Linear(2d, 2).
    """

    def __init__(self, in_dim: int, hid_dim: int, num_labels: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.logit_fc = nn.Sequential(
            nn.Linear(in_dim, hid_dim), GeLU(), nn.LayerNorm(hid_dim, eps=eps),
            nn.Linear(hid_dim, num_labels),
        )

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.logit_fc(pooled)
