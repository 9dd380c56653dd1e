"""Loss pieces shared by the heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lxmert.labels import IGNORE_INDEX

__all__ = ["IGNORE_INDEX", "cross_entropy_ignoring"]


def cross_entropy_ignoring(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over non-ignored rows; 0 (with a graph) when every row is ignored.

    `F.cross_entropy` returns NaN for an all-ignored batch, which happens routinely for QA
    (a batch of captions) and would poison the summed loss.
    """
    if bool((labels != IGNORE_INDEX).any()):
        return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)
    return logits.sum() * 0.0
