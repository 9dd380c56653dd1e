"""Transformer blocks: the BERT layer and LXMERT's cross-modality layer.

Module names mirror the released checkpoints (`attention.self`, `attention.output`,
`intermediate`, `output`, `visual_attention`, `lang_self_att`, ...) so that the key map in
`lxmert.checkpoint.layouts` is short: only the fused `qkv` differs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lxmert.config import LxmertConfig
from lxmert.modeling.attention import MultiHeadAttention


def activation(name: str):
    if name in ("gelu", "gelu_python"):
        return F.gelu  # exact erf GeLU, as the release
    if name == "gelu_new":
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "relu":
        return F.relu
    raise ValueError(f"unsupported activation {name!r}")


class AddNorm(nn.Module):
    """Projection, dropout, residual, post-LayerNorm (BERT's `*Output` modules)."""

    def __init__(self, in_dim: int, config: LxmertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(in_dim, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class Intermediate(nn.Module):
    def __init__(self, config: LxmertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = activation(config.hidden_act)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(hidden))


class SelfAttentionBlock(nn.Module):
    """Self-attention + AddNorm (`attention.self` + `attention.output` in checkpoints)."""

    def __init__(self, config: LxmertConfig) -> None:
        super().__init__()
        self.self = MultiHeadAttention(config)
        self.output = AddNorm(config.hidden_size, config)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        context, probs = self.self(hidden, mask, need_weights)
        return self.output(context, hidden), probs


class BertLayer(nn.Module):
    """A BERT encoder layer: used for the 9 language and the 5 object-relationship layers."""

    def __init__(self, config: LxmertConfig) -> None:
        super().__init__()
        self.attention = SelfAttentionBlock(config)
        self.intermediate = Intermediate(config)
        self.output = AddNorm(config.intermediate_size, config)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        hidden, probs = self.attention(hidden, mask, need_weights)
        return self.output(self.intermediate(hidden), hidden), probs


class CrossAttentionBlock(nn.Module):
    """The ONE cross-attention sublayer whose weights serve both directions.

    Language queries attend over objects and object queries over language with the same
    projections. We run the shared projection once over the concatenated streams
    ([lang; objects]) so each layer does one QKV GEMM and one output GEMM for both
    directions, instead of the four + two of a direction-by-direction implementation.
    """

    def __init__(self, config: LxmertConfig) -> None:
        super().__init__()
        self.att = MultiHeadAttention(config)
        self.output = AddNorm(config.hidden_size, config)

    def forward(
        self,
        lang: torch.Tensor,
        lang_mask: torch.Tensor | None,
        visn: torch.Tensor,
        visn_mask: torch.Tensor | None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        sizes = [lang.shape[1], visn.shape[1]]
        both = torch.cat([lang, visn], dim=1)
        q, k, v = self.att.split_heads(self.att.qkv(both))
        # `split` (backward: one cat) rather than slicing (backward: a zero-filled full-size
        # gradient per slice, added up)
        (q_lang, q_visn), (k_lang, k_visn), (v_lang, v_visn) = (t.split(sizes, dim=2) for t in (q, k, v))
        lang_ctx, l2v = self.att.attend(q_lang, k_visn, v_visn, visn_mask, need_weights)
        visn_ctx, v2l = self.att.attend(q_visn, k_lang, v_lang, lang_mask, need_weights)
        out = self.output(torch.cat([lang_ctx, visn_ctx], dim=1), both)
        lang_out, visn_out = out.split(sizes, dim=1)
        return lang_out, visn_out, l2v, v2l

    def language_side(self, lang: torch.Tensor, lang_mask: torch.Tensor | None, visn: torch.Tensor,
                      visn_mask: torch.Tensor | None) -> torch.Tensor:
        """Only the language half of `forward` (words attending to objects): the object
        queries and their output rows are not computed. Row for row the same arithmetic
        as `forward`'s language output."""
        sizes = [lang.shape[1], visn.shape[1]]
        q, k, v = self.att.split_heads(self.att.qkv(torch.cat([lang, visn], dim=1)))
        (q_lang, _), (_, k_visn), (_, v_visn) = (t.split(sizes, dim=2) for t in (q, k, v))
        lang_ctx, _ = self.att.attend(q_lang, k_visn, v_visn, visn_mask)
        return self.output(lang_ctx, lang)


class CrossModalityLayer(nn.Module):
    """LXMERT's cross layer: shared cross-attention, then per-stream self-attention and FFN."""

    def __init__(self, config: LxmertConfig) -> None:
        super().__init__()
        self.visual_attention = CrossAttentionBlock(config)
        self.lang_self_att = SelfAttentionBlock(config)
        self.visn_self_att = SelfAttentionBlock(config)
        self.lang_inter = Intermediate(config)
        self.lang_output = AddNorm(config.intermediate_size, config)
        self.visn_inter = Intermediate(config)
        self.visn_output = AddNorm(config.intermediate_size, config)

    def forward(
        self,
        lang: torch.Tensor,
        lang_mask: torch.Tensor | None,
        visn: torch.Tensor,
        visn_mask: torch.Tensor | None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor | None, ...]]:
        lang, visn, l2v, v2l = self.visual_attention(lang, lang_mask, visn, visn_mask, need_weights)
        lang, lang_probs = self.lang_self_att(lang, lang_mask, need_weights)
        visn, visn_probs = self.visn_self_att(visn, visn_mask, need_weights)
        lang = self.lang_output(self.lang_inter(lang), lang)
        visn = self.visn_output(self.visn_inter(visn), visn)
        return lang, visn, (l2v, v2l, lang_probs, visn_probs)

    def first_token(self, lang: torch.Tensor, lang_mask: torch.Tensor | None, visn: torch.Tensor,
                    visn_mask: torch.Tensor | None) -> torch.Tensor:
        """The language stream's first row ([CLS]) after this layer, [B, 1, d]: all that the
        pooler, and so every pooled head (QA, NLVR2, classification, matching), reads of the
        LAST cross layer. The object stream and the other words' rows of that layer feed
        nothing there, so they are skipped: the words' cross-attention (all rows: the
        self-attention's keys), then self-attention with the first row as the only query,
        then the feed-forward on that row."""
        lang = self.visual_attention.language_side(lang, lang_mask, visn, visn_mask)
        att = self.lang_self_att.self
        q, k, v = att.split_heads(att.qkv(lang))
        context, _ = att.attend(q[:, :, :1], k, v, lang_mask)
        first = self.lang_self_att.output(context, lang[:, :1])
        return self.lang_output(self.lang_inter(first), first)
