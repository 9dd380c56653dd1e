"""Multi-head attention: one implementation, `scaled_dot_product_attention` inside.

Query, key and value live in ONE fused projection (`qkv`, [3d, d]) so a self-attention
needs one GEMM instead of three. The release stored them as three Linear layers
(`query`, `key`, `value`); `lxmert.checkpoint.layouts` splits and joins them, nowhere else.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lxmert.config import LxmertConfig

# The release's additive mask value. exp(-10000) underflows to 0 in every float format,
# so it equals masking with -inf / dtype-min wherever a row has one visible key, and,
# unlike dtype-min, it survives a cast to fp16 / bf16 under autocast.
MASK_VALUE = -10000.0


def additive_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """[B, K] 1/0 keep-mask -> [B, 1, 1, K] additive mask; None when nothing is masked.

    Returning None for an all-ones mask lets SDPA pick its fastest kernel. Under
    `torch.compile` the mask is always built: the data-dependent test would split the graph.
    """
    if mask is None:
        return None
    if not torch.compiler.is_compiling() and bool(mask.all()):
        return None
    return ((1.0 - mask.to(dtype)) * MASK_VALUE)[:, None, None, :]


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention over `num_attention_heads` heads (no output projection)."""

    def __init__(self, config: LxmertConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.hidden_size = config.hidden_size
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob

    def split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[B, T, 3d] -> three [B, H, T, Dh] tensors.

        `unbind`, not `x[0], x[1], x[2]`: the backward of three index selects is three
        zero-filled copies of the whole [3, B, H, T, Dh] gradient added together; unbind's
        is one stack (docs/benchmarks.md measures what the fills cost)."""
        b, t, _ = x.shape
        x = x.view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = x.unbind(0)
        return q, k, v

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attention of q over (k, v); returns context [B, Tq, d] and, if asked, probs."""
        dropout_p = self.dropout_p if self.training else 0.0
        if need_weights:
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
            if mask is not None:
                scores = scores + mask
            probs = scores.softmax(dim=-1)
            context = F.dropout(probs, dropout_p, self.training) @ v
        else:
            probs = None
            if mask is not None and mask.dtype != q.dtype:
                mask = mask.to(q.dtype)
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        b, h, t, dh = context.shape
        return context.transpose(1, 2).reshape(b, t, h * dh), probs

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        q, k, v = self.split_heads(self.qkv(hidden))
        return self.attend(q, k, v, mask, need_weights)
