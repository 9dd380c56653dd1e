"""The release's optimiser ("BertAdam") and its warmup-linear schedule, plus AdamW.

LXMERT was trained with the BERT-era optimiser from `pytorch_pretrained_bert`, which
differs from `torch.optim.Adam(W)` in two ways that change the numbers: there is NO bias
correction of the moments (so early steps are small, which the warm-up hides), and the
weight decay is decoupled (added to the Adam update, not to the gradient) and applied to
every parameter, LayerNorm and biases included. We reproduce it exactly so that the
released recipes (lr 1e-4 pre-training, 5e-5 / 1e-5 fine-tuning) mean what they meant.

The learning rate schedule is kept outside the optimiser (a `LambdaLR`), which makes it
checkpointable with the usual `state_dict()` and lets AdamW share it. The release's
schedule evaluates `warmup_linear(step / t_total)` *before* incrementing the step, so
the very first update uses lr 0; `LambdaLR` does the same and we keep that quirk.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Iterator

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = [
    "BertAdam",
    "warmup_linear",
    "build_optimizer",
    "build_scheduler",
]


def warmup_linear(progress: float, warmup: float) -> float:
    """Multiplier of the base lr at `progress` = step / total_steps.

    Linear ramp from 0 to 1 over the first `warmup` fraction, then linear decay that
    reaches 0 at progress 1 (and stays 0 after it), as in the release.
    """
    if warmup > 0 and progress < warmup:
        return progress / warmup
    if warmup >= 1.0:
        return 1.0
    return max((progress - 1.0) / (warmup - 1.0), 0.0)


def _by_device(params: list[torch.Tensor], *aligned: list[torch.Tensor]
               ) -> Iterator[tuple[torch.device, tuple[list[torch.Tensor], ...]]]:
    """(device, (params, *aligned)) per (device, dtype) of `params`: the multi-tensor and
    fused kernels take lists on one device and of one dtype."""
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, p in enumerate(params):
        groups.setdefault((p.device, p.dtype), []).append(i)
    for (device, _), idx in groups.items():
        yield device, tuple([lst[i] for i in idx] for lst in (params, *aligned))


class BertAdam(Optimizer):
    """Adam without bias correction, with decoupled weight decay (the release's update).

    Per parameter p with gradient g (after any clipping done by the caller):
        m <- b1 m + (1 - b1) g
        v <- b2 v + (1 - b2) g^2
        u  = m / (sqrt(v) + eps) + weight_decay * p
        p <- p - lr * u
    `lr` is read from the param group every step, so a scheduler may change it. Gradient
    clipping lives outside, as in the release (`clip_grad_norm_` over all parameters).

    Three ways to run the same update:
    - `fused` (the default on CPU and CUDA): torch's fused AdamW kernel, one pass over each
      tensor. AdamW with bias corrections equal to 1 IS this update - its decoupled decay
      p <- p (1 - lr wd) followed by p <- p - lr m / (sqrt(v) + eps) is the line above - so
      the kernel is handed a step count of 2^24, where 1 - b^t is exactly 1 in float32 for
      any b < 1 used in practice (b2 = 0.999: 0.999^(2^24) underflows to 0). Same
      arithmetic up to rounding order (within 1 ulp per step, tested), in one pass over
      each tensor instead of a dozen (docs/benchmarks.md has the timings).
    - `foreach`: multi-tensor kernels, bit-identical to the loop.
    - neither: the per-parameter loop, the release's code path.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        foreach: bool = True,
        fused: bool | None = None,
    ) -> None:
        if lr < 0.0:
            raise ValueError(f"invalid learning rate {lr} (must be >= 0)")
        if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"invalid betas {betas} (each must be in [0, 1))")
        if eps < 0.0:
            raise ValueError(f"invalid eps {eps} (must be >= 0)")
        if weight_decay < 0.0:
            raise ValueError(f"invalid weight_decay {weight_decay} (must be >= 0)")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, foreach=foreach,
                        fused=fused)
        super().__init__(params, defaults)
        self._no_bias_correction: dict[torch.device, torch.Tensor] = {}

    @staticmethod
    def _can_fuse(params: list[torch.Tensor]) -> bool:
        return hasattr(torch, "_fused_adamw_") and all(
            p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float16, torch.bfloat16)
            for p in params)

    def _fused_step(self, params: list[torch.Tensor], grads: list[torch.Tensor], avgs: list[torch.Tensor],
                    sqs: list[torch.Tensor], lr: float, betas: tuple[float, float], eps: float,
                    decay: float) -> None:
        for device, (ps, gs, ms, vs) in _by_device(params, grads, avgs, sqs):
            if device not in self._no_bias_correction:
                # 1 - beta^(2^24) == 1 in float32: the kernel's bias corrections vanish
                self._no_bias_correction[device] = torch.tensor(float(2 ** 24), dtype=torch.float32, device=device)
            steps = [self._no_bias_correction[device]] * len(ps)
            torch._fused_adamw_(ps, gs, ms, vs, [], steps, lr=lr, beta1=betas[0], beta2=betas[1],
                                weight_decay=decay, eps=eps, amsgrad=False, maximize=False)

    def _gather(self, group: dict[str, Any]) -> tuple[list[torch.Tensor], ...]:
        params, grads, avgs, sqs, steps = [], [], [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("BertAdam does not support sparse gradients")
            state = self.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(p.grad)
            avgs.append(state["exp_avg"])
            sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        return params, grads, avgs, sqs, steps

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, decay = group["lr"], group["eps"], group["weight_decay"]
            params, grads, avgs, sqs, steps = self._gather(group)
            if not params:
                continue
            fused = group.get("fused")
            if fused is None:
                fused = self._can_fuse(params)
            elif fused and not self._can_fuse(params):
                raise RuntimeError("BertAdam(fused=True) needs float parameters on CPU or CUDA")
            if fused:
                self._fused_step(params, grads, avgs, sqs, lr, (beta1, beta2), eps, decay)
            elif group.get("foreach", True):
                # The same element-wise operations in the same order as the loop below (so the
                # same bits), issued as a few multi-tensor kernels instead of ~10 small kernels
                # per parameter: far fewer kernel launches on a GPU. On a CPU it can be slower
                # than the loop (docs/benchmarks.md): the update is memory-bound and this path
                # materialises the update tensors.
                for _, (ps, gs, ms, vs) in _by_device(params, grads, avgs, sqs):
                    torch._foreach_mul_(ms, beta1)
                    torch._foreach_add_(ms, gs, alpha=1.0 - beta1)
                    torch._foreach_mul_(vs, beta2)
                    torch._foreach_addcmul_(vs, gs, gs, value=1.0 - beta2)
                    updates = torch._foreach_sqrt(vs)
                    torch._foreach_add_(updates, eps)
                    updates = torch._foreach_div(ms, updates)
                    if decay > 0.0:
                        torch._foreach_add_(updates, ps, alpha=decay)
                    torch._foreach_add_(ps, updates, alpha=-lr)
                    del updates
            else:
                for p, grad, exp_avg, exp_avg_sq in zip(params, grads, avgs, sqs):
                    exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                    update = exp_avg / (exp_avg_sq.sqrt() + eps)
                    if decay > 0.0:
                        update.add_(p, alpha=decay)
                    p.add_(update, alpha=-lr)
            for step_t in steps:
                step_t += 1
        return loss


def build_optimizer(
    model: torch.nn.Module,
    name: str = "bertadam",
    lr: float = 1e-4,
    weight_decay: float = 0.01,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-6,
    decay_norm_and_bias: bool = True,
) -> Optimizer:
    """`bertadam` (the release) or `adamw` (torch's fused kernel on CPU/CUDA, foreach elsewhere).

    `decay_norm_and_bias=True` decays every parameter as the release did; False puts
    biases and LayerNorm weights in a group without decay (the modern convention).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if decay_norm_and_bias:
        groups: list[dict[str, Any]] = [{"params": params}]
    else:
        decay, no_decay = [], []
        for pname, p in model.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim < 2 or "LayerNorm" in pname or "norm" in pname.lower() else decay).append(p)
        groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    key = name.lower()
    if key == "bertadam":
        return BertAdam(groups, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
    if key == "adamw":
        # torch's fused AdamW runs on CUDA and CPU, one pass per tensor (docs/benchmarks.md
        # compares the paths); foreach for other devices.
        fusable = len(params) > 0 and all(p.device.type in ("cuda", "cpu") and p.is_floating_point()
                                          for p in params)
        kwargs: dict[str, Any] = {"fused": True} if fusable else {"foreach": True}
        return torch.optim.AdamW(
            groups, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, **kwargs
        )
    raise ValueError(f"unknown optimizer {name!r} (expected 'bertadam' or 'adamw')")


def build_scheduler(
    optimizer: Optimizer, total_steps: int, warmup: float, kind: str = "warmup_linear"
) -> LambdaLR:
    """Per-update lr multiplier: `warmup_linear` (release) or `constant` (after warm-up)."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if not 0.0 <= warmup <= 1.0:
        raise ValueError(f"warmup is a fraction of the run in [0, 1], got {warmup}")
    if kind == "warmup_linear":
        return LambdaLR(optimizer, lambda step: warmup_linear(step / total_steps, warmup))
    if kind == "constant":
        warm_steps = max(1, math.ceil(warmup * total_steps)) if warmup > 0 else 0

        def constant(step: int) -> float:
            return min(1.0, step / warm_steps) if warm_steps else 1.0

        return LambdaLR(optimizer, constant)
    raise ValueError(f"unknown schedule {kind!r} (expected 'warmup_linear' or 'constant')")
