"""Which examples form each step: a pure function of (seed, epoch), whatever the world size.

Exact resume and the 1-vs-N-process equivalence rely on it: the same examples form global
step t for any number of processes and accumulation steps, and a resumed run skips the
steps it has done without loading them.

Length-aware batching (`data.batching = "length"`, the default) is the one bucketing
implementation of the package: `bucket_by_length` sorts windows of consecutive positions
by length and cuts them into batches. Training applies it to the epoch's shuffled order
(windows of `WINDOW_BATCHES` global batches, fewer in small epochs: `training_window`; then
the batches are shuffled again), so the
examples of a step have similar lengths and collate pads them little, while which examples
meet in a step stays random from epoch to epoch. Evaluation applies it to the split in
file order (`eval_batch_order`) and puts the outputs back in file order afterwards.

Why windows and not a sort of the whole epoch: a full sort would put every short sentence
of the epoch in the same few hundred steps (in pre-training, region descriptions are the
short ones, captions the long ones), so steps would become source-specific for long runs;
inside a window of 50 batches the lengths already repeat enough to fill batches of one or
two lengths.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from lxmert.training.rng import mix_seed

__all__ = ["GlobalBatchSampler", "BATCHINGS", "WINDOW_BATCHES", "MIN_WINDOWS_PER_EPOCH", "EVAL_WINDOW_BATCHES",
           "bucket_by_length", "training_window",
           "dataset_lengths", "random_batching_reason", "eval_batch_order", "micro_batch_slot"]

#: values of the recipe's `data.batching`
BATCHINGS = ("length", "random")
#: global batches per training window sorted by length (as transformers' `group_by_length`
#: megabatches): large enough that every length fills whole batches, small enough that a
#: window is a random sample of the epoch
WINDOW_BATCHES = 50
#: an epoch holds at least this many windows; smaller epochs get smaller windows, down to
#: one batch (random batches, only the slices of a batch sorted): with a window as large
#: as the epoch, the same examples of one length would meet in the same steps every epoch
MIN_WINDOWS_PER_EPOCH = 16
#: evaluation batches per window sorted by length: the outputs of one window are held
#: until it is put back in file order, so it is kept smaller than training's
EVAL_WINDOW_BATCHES = 16


def bucket_by_length(order: Sequence[int] | np.ndarray, lengths: np.ndarray, batch_size: int,
                     window_batches: int) -> list[np.ndarray]:
    """Cut `order` (dataset positions) into batches of `batch_size`, each window of
    `window_batches` batches first sorted by length.

    The sort is stable, so examples of equal length keep their order in `order` (random in
    training, file order in evaluation). Every position is in exactly one batch; only the
    last window's last batch may be shorter than `batch_size`. Each batch is sorted by
    length, shortest first.
    """
    if batch_size < 1 or window_batches < 1:
        raise ValueError(f"batch_size ({batch_size}) and window_batches ({window_batches}) must be >= 1")
    order = np.asarray(order, dtype=np.int64)
    window = batch_size * window_batches
    batches: list[np.ndarray] = []
    for start in range(0, len(order), window):
        chunk = order[start:start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    return batches


def random_batching_reason(dataset: Any) -> str | None:
    """Why training cannot batch `dataset` by length (see `dataset_lengths`), or None."""
    if hasattr(dataset, "set_epoch"):
        if getattr(dataset, "epoch_lengths", None) is None:
            return "its examples change with the epoch (set_epoch) and it gives no epoch_lengths(epoch)"
        return None
    if getattr(dataset, "lengths", None) is None:
        return "it has no .lengths"
    return None


def dataset_lengths(dataset: Any, epoch: int | None = None) -> np.ndarray | None:
    """The token count of each example, for length-aware batching; None: batch at random.

    A dataset whose examples change with the epoch (it has `set_epoch`: pre-training draws
    its masks and mismatched sentences per (seed, epoch, index)) is bucketed by
    `epoch_lengths(epoch)`, the lengths its examples have in that epoch; without that
    method, at random (None), because `.lengths` - each example's own sentence - is not
    what a mismatched example carries. Bucketing by it would also leak the matching label
    inside a step: the matched examples of a bucketed batch all have the bucket's length,
    the mismatched ones other lengths, a cue that changes from step to step and slowed
    the demo's matching stage (docs/training.md). Other datasets are bucketed by `.lengths`;
    without it, at random. Evaluation passes no epoch and uses `.lengths`.
    """
    if epoch is not None and random_batching_reason(dataset) is not None:
        return None
    if epoch is not None and hasattr(dataset, "set_epoch"):
        lengths = dataset.epoch_lengths(epoch)
    else:
        lengths = getattr(dataset, "lengths", None)
    if lengths is None:
        return None
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or len(lengths) != len(dataset):
        raise ValueError(f"{type(dataset).__name__} lengths have shape {lengths.shape}, expected "
                         f"({len(dataset)},): one length per example")
    return lengths.astype(np.int64, copy=False)


def training_window(steps_per_epoch: int) -> int:
    """Global batches per bucketing window for an epoch of `steps_per_epoch` steps:
    `WINDOW_BATCHES`, or fewer so that the epoch holds `MIN_WINDOWS_PER_EPOCH` windows.

    Why the floor: a window as large as the epoch sorts the whole training set, so the
    same examples of one length would meet in the same steps every epoch and a step would
    often be one kind of example (in the demo's generated world a question's length is
    its template); on the demo's 200-question fine-tuning that cost accuracy, measured in
    docs/training.md. Real fine-tuning sets have thousands of steps per epoch and get the
    full window.
    """
    return max(1, min(WINDOW_BATCHES, steps_per_epoch // MIN_WINDOWS_PER_EPOCH))


def micro_batch_slot(rank: int, accum_step: int, world_size: int) -> int:
    """Which of the `world_size * grad_accum` consecutive slices of a global batch rank
    `rank` trains at accumulation step `accum_step`.

    The slices are the same for any split with the same product (1 process x 2
    accumulation steps, or 2 processes x 1), so even losses averaged per micro-batch
    (masked LM: a mean over the masked tokens) see the same groups. Odd accumulation steps
    run the ranks in reverse, so that over a step each rank gets a similar share of long
    and short slices of a length-sorted batch (the slowest rank sets the pace).
    """
    return accum_step * world_size + (rank if accum_step % 2 == 0 else world_size - 1 - rank)


class GlobalBatchSampler(Sampler[list[int]]):
    """Micro-batches of this rank for one epoch; step t uses the same examples for any world.

    The epoch's order is `randperm(n)` from a generator seeded by (seed, epoch); the
    incomplete last global batch of it is dropped (every rank must do the same number of
    steps). Global step t is then the t-th batch of B positions: with `lengths` (length-
    aware batching) the batches come from `bucket_by_length` over windows of
    `window_batches` batches (default `training_window(steps)`) and, with windows of more
    than one batch, are shuffled by a second generator of (seed, epoch); without, they are
    consecutive slices of the order (a one-batch window keeps those, sorted inside). A
    global batch is cut into `world_size * grad_accum` consecutive slices (sorted by length
    when bucketed) and rank r trains slice `micro_batch_slot(r, a, world_size)` at
    accumulation step a. `start_step` skips the steps a resumed run has already done
    without loading them.
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
        lengths: Sequence[int] | np.ndarray | None = None,
        window_batches: int | None = None,
    ) -> None:
        if global_batch % (world_size * grad_accum):
            raise ValueError(
                f"global batch {global_batch} is not divisible by world_size {world_size} x "
                f"grad_accum {grad_accum}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} out of range for world_size {world_size}")
        if lengths is not None:
            lengths = np.asarray(lengths, dtype=np.int64)
            if lengths.shape != (num_examples,):
                raise ValueError(f"lengths has shape {lengths.shape}, expected ({num_examples},)")
        if window_batches is None:
            window_batches = training_window(num_examples // global_batch)
        if window_batches < 1:
            raise ValueError(f"window_batches must be >= 1, got {window_batches}")
        self.n = num_examples
        self.batch = global_batch
        self.seed, self.epoch = seed, epoch
        self.rank, self.world, self.accum = rank, world_size, grad_accum
        self.start_step = start_step
        self.shuffle = shuffle
        self.lengths = lengths
        self.window_batches = window_batches

    @property
    def steps(self) -> int:
        return self.n // self.batch

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step) * self.accum

    def global_batches(self) -> list[np.ndarray]:
        """The epoch's global batches (dataset positions), in step order."""
        if self.shuffle:
            gen = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, 0x5EED))
            order = torch.randperm(self.n, generator=gen).numpy()
        else:
            order = np.arange(self.n)
        order = order[:self.steps * self.batch]
        if self.lengths is None or (self.window_batches == 1 and self.world * self.accum == 1):
            # a one-batch window sorts only inside a batch, which one slice does not need
            return [order[t * self.batch:(t + 1) * self.batch] for t in range(self.steps)]
        batches = bucket_by_length(order, self.lengths, self.batch, self.window_batches)
        if self.shuffle and self.window_batches > 1:
            gen = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, 0xB0C5))
            batches = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        micro = self.batch // (self.world * self.accum)
        batches = self.global_batches()
        for step in range(self.start_step, self.steps):
            chunk = batches[step]
            for a in range(self.accum):
                slot = micro_batch_slot(self.rank, a, self.world)
                yield chunk[slot * micro:(slot + 1) * micro].tolist()


def eval_batch_order(num_examples: int, batch_size: int, lengths: np.ndarray | None,
                     window_batches: int = EVAL_WINDOW_BATCHES) -> list[np.ndarray]:
    """The batches (dataset positions) evaluation runs, in the order it runs them.

    Without `lengths`: consecutive slices of the split in file order. With: each window of
    `window_batches` batches of consecutive examples sorted by length (`bucket_by_length`),
    so that one window's outputs can be put back in file order before the next window runs.
    """
    positions = np.arange(num_examples)
    if lengths is None:
        return [positions[i:i + batch_size] for i in range(0, num_examples, batch_size)]
    return bucket_by_length(positions, lengths, batch_size, window_batches)
