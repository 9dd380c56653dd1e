"""Label conventions shared by the datasets (which write targets) and the heads (which read them)."""

from __future__ import annotations

__all__ = ["IGNORE_INDEX"]

#: a target that contributes no loss: PyTorch's default `ignore_index`, and the release's
IGNORE_INDEX = -100
