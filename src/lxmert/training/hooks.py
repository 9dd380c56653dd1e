"""Extras that plug into the training loop (adversarial training, pruning masks, ...).

The loop calls a hook at fixed points and imports none of the extras: the public API
(`lxmert.api.train`) builds the hooks a recipe asks for. The default methods do nothing.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
from torch import nn

__all__ = ["TrainerHook", "LossFn"]

#: `loss_fn(model, inputs) -> (loss, named parts)`: one forward of the task's loss
LossFn = Callable[[nn.Module, dict[str, Any]], "tuple[torch.Tensor, dict[str, torch.Tensor]]"]


class TrainerHook:
    """Base of the loop's hooks (see the module docstring)."""

    def on_setup(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """After the model and optimiser exist (and a resumed run has restored them)."""

    def micro_step(self, model: nn.Module, inputs: dict[str, Any], loss_fn: LossFn, *, loss_scale: float,
                   backward: Callable[[torch.Tensor], None],
                   autocast: Callable[[], contextlib.AbstractContextManager]) -> dict[str, torch.Tensor] | None:
        """Run the forward and backward passes of one micro-batch in place of the loop, and
        return detached scalars with the objective under "loss"; None lets the loop do it.
        `loss_scale` multiplies every backward (1 / gradient accumulation), `backward`
        replaces `t.backward()` (AMP scaling), `autocast` is the precision context."""
        return None
