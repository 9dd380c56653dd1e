"""Fast float16 <-> float32 copies for feature rows (import narrows, reading widens)."""

from __future__ import annotations

import functools
import warnings
from typing import Any

import numpy as np

__all__ = ["cast_into"]

# Below torch's parallel grain size (32768 elements), so a copy never wakes its thread pool.
_CHUNK = 16384


def cast_into(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst[...] = src`` for a contiguous ``dst``; float16 <-> float32 goes through torch.

    numpy converts float16 with a scalar loop; torch uses F16C vector instructions with the
    same round-to-nearest-even, several times faster (figures in docs/features.md). Chunks
    stay below torch's parallel grain size so the copy never wakes its thread pool: with
    busy cores (DataLoader workers, other jobs) an OpenMP barrier costs a scheduler quantum.
    Other dtype pairs are a plain ``np.copyto``.
    """
    torch = _torch() if np.float16 in (src.dtype, dst.dtype) and src.dtype != dst.dtype else None
    if torch is None:
        np.copyto(dst, src)
        return
    with warnings.catch_warnings():
        # src may be a read-only map; torch warns about that but only reads it here
        warnings.simplefilter("ignore", UserWarning)
        d = torch.from_numpy(dst.reshape(-1))
        s = torch.from_numpy(np.ascontiguousarray(src).reshape(-1))
    for start in range(0, d.numel(), _CHUNK):
        d[start:start + _CHUNK].copy_(s[start:start + _CHUNK])


@functools.cache
def _torch() -> Any:
    """torch if importable, imported on first use (``import lxmert.features`` stays light)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    return torch
