"""Which examples form each step: a pure function of (seed, epoch), whatever the world size.

Exact resume and the 1-vs-N-process equivalence rely on it: the same examples form global
step t for any number of processes and accumulation steps, and a resumed run skips the
steps it has done without loading them.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler

from lxmert.training.rng import mix_seed

__all__ = ["GlobalBatchSampler"]


class GlobalBatchSampler(Sampler[list[int]]):
    """Micro-batches of this rank for one epoch; step t uses the same examples for any world.

    The epoch's order is `randperm(n)` from a generator seeded by (seed, epoch). Global
    step t takes positions [t*B, (t+1)*B); rank r keeps every world-th of them (offset r)
    and cuts its share into `grad_accum` micro-batches. The incomplete last global batch is
    dropped (every rank must do the same number of steps). `start_step` skips the steps a
    resumed run has already done without loading them.
    """

    def __init__(
        self,
        num_examples: int,
        global_batch: int,
        seed: int,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        grad_accum: int = 1,
        start_step: int = 0,
        shuffle: bool = True,
    ) -> None:
        if global_batch % (world_size * grad_accum):
            raise ValueError(
                f"global batch {global_batch} is not divisible by world_size {world_size} x "
                f"grad_accum {grad_accum}"
            )
        self.n = num_examples
        self.batch = global_batch
        self.seed, self.epoch = seed, epoch
        self.rank, self.world, self.accum = rank, world_size, grad_accum
        self.start_step = start_step
        self.shuffle = shuffle

    @property
    def steps(self) -> int:
        return self.n // self.batch

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step) * self.accum

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, 0x5EED))
            order = torch.randperm(self.n, generator=gen).tolist()
        else:
            order = list(range(self.n))
        micro = self.batch // (self.world * self.accum)
        for step in range(self.start_step, self.steps):
            chunk = order[step * self.batch:(step + 1) * self.batch][self.rank::self.world]
            for a in range(self.accum):
                yield chunk[a * micro:(a + 1) * micro]
