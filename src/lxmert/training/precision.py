"""Mixed precision (`train.amp`, `--amp`): which autocast a device gets, and why.

- CUDA: bf16 (Ampere and newer) or fp16 (with a gradient scaler, in the trainer).
- CPU: bf16 only. On CPUs with AMX (Intel Sapphire Rapids and newer) or AVX512-BF16, oneDNN
  runs bf16 GEMMs several times faster than fp32, which speeds up training and inference
  accordingly (docs/benchmarks.md has the measurements). Without those instructions bf16
  is emulated and SLOWER than fp32, so we warn. fp16 autocast on CPU is refused: it has no fast kernels there and
  no loss scaling in our trainer.
- Anything else (MPS): amp must be "none".

Master weights, gradients and optimiser state stay fp32 on every device. Autocast computes
the losses in fp32; beyond that the devices differ: CUDA keeps softmax and LayerNorm outputs
in fp32, while CPU autocast runs them (and so the residual stream) in bf16, with fp32
statistics inside the LayerNorm kernel; the tests bound the effect on losses and
accuracies, docs/benchmarks.md reports it.
"""

from __future__ import annotations

import contextlib
import functools
import logging

import torch

__all__ = ["AMP_CHOICES", "autocast", "check_amp", "cpu_has_fast_bf16"]

AMP_CHOICES = ("none", "bf16", "fp16")
log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=None)
def cpu_has_fast_bf16() -> bool:
    """AMX tiles or AVX512-BF16: bf16 matrix products in hardware."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def check_amp(amp: str, device: torch.device | str, what: str = "train.amp") -> None:
    """Raise on a precision the device cannot run; warn when it would run slower than fp32.
    Call once per run (the trainer does at start; `autocast` only raises)."""
    device = torch.device(device)
    _validate(amp, device, what)
    if amp == "bf16" and device.type == "cpu" and not cpu_has_fast_bf16():
        log.warning("%s = 'bf16' on a CPU without AMX / AVX512-BF16: bf16 is emulated there and slower "
                    "than fp32", what)


def _validate(amp: str, device: torch.device, what: str) -> None:
    if amp not in AMP_CHOICES:
        raise ValueError(f"{what} = {amp!r}: expected one of {', '.join(AMP_CHOICES)}")
    if amp == "none" or device.type == "cuda":
        return
    if device.type != "cpu":
        raise ValueError(f"{what} = {amp!r} is not supported on {device.type}; use 'none'")
    if amp == "fp16":
        raise ValueError(f"{what} = 'fp16' needs CUDA; on CPU use 'bf16' (fast on CPUs with AMX) or 'none'")


def autocast(amp: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The autocast context for `amp` on `device` (a no-op for 'none'); see `check_amp`."""
    device = torch.device(device)
    _validate(amp, device, "amp")
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
