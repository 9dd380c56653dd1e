"""Batch plumbing shared by the datasets: the batch type, device moves, padding, length bucketing.

A collated batch is a `Batch(inputs, meta)`: `inputs` are exactly keyword arguments of the
model's `forward` (so `model(**batch.inputs)` never has to swallow unknown names), `meta`
the lists that identify the examples (question ids, NLVR2 identifiers, sentences), which
predictions and metrics need and the model never sees.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = [
    "Batch",
    "move_to",
    "pad_1d",
    "stack_objects",
    "text_batch",
    "collate_labelled",
    "LengthBucketBatchSampler",
]


class Batch(NamedTuple):
    """A collated batch: model keyword arguments and the examples' identifiers."""

    inputs: dict[str, Any]
    meta: dict[str, list[Any]]

    @property
    def size(self) -> int:
        """The number of examples (`len(batch)` is 2: it is a pair)."""
        return int(self.inputs["input_ids"].shape[0])


def move_to(batch: Any, device: torch.device | str, non_blocking: bool = False) -> Any:
    """Move every tensor of a (nested) batch to `device`; lists of metadata stay as they are.

    Dicts and tuples are rebuilt (tuples keep their type, so `obj_labels["obj"]` stays a
    pair); lists are returned unchanged because in our batches they only hold metadata
    such as question ids.
    """
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {k: move_to(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, tuple):
        return type(batch)(*(move_to(v, device, non_blocking) for v in batch)) if hasattr(batch, "_fields") \
            else tuple(move_to(v, device, non_blocking) for v in batch)
    return batch


def pad_1d(sequences: Sequence[Sequence[int] | np.ndarray], pad_value: int, dtype: torch.dtype = torch.long,
           length: int | None = None) -> torch.Tensor:
    """Right-pad 1-d sequences into a [B, L] tensor, L = the longest (or `length`)."""
    if not sequences:
        raise ValueError("cannot pad an empty batch")
    longest = max(len(s) for s in sequences)
    width = longest if length is None else length
    if width < longest:
        raise ValueError(f"length={length} is shorter than the longest sequence ({longest})")
    out = np.full((len(sequences), width), pad_value, dtype=np.int64)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = seq
    return torch.from_numpy(out).to(dtype)


def text_batch(sequences: Sequence[Sequence[int] | np.ndarray], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """`input_ids`, `attention_mask`, `token_type_ids` padded to the longest sequence.

    Dynamic padding: the model never computes over padding beyond the batch's longest
    sentence. Token types are all 0, as in LXMERT.
    """
    input_ids = pad_1d(sequences, pad_id)
    lengths = torch.as_tensor([len(s) for s in sequences])
    attention_mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": torch.zeros_like(input_ids)}


def collate_labelled(examples: Sequence[dict[str, Any]], pad_id: int, id_key: str) -> Batch:
    """Batch one-image examples (`input_ids`, `visual_feats`, `visual_pos`, `visual_mask`,
    optional `target`, an id under `id_key`): the model's inputs with `labels` when present
    (class indices or stacked score vectors), and the list of ids as meta. The object mask
    is passed only when some image has fewer boxes than the batch's widest."""
    batch: dict[str, Any] = text_batch([e["input_ids"] for e in examples], pad_id)
    batch["visual_feats"] = stack_objects([e["visual_feats"] for e in examples], torch.float32)
    batch["visual_pos"] = stack_objects([e["visual_pos"] for e in examples], torch.float32)
    visual_mask = stack_objects([e["visual_mask"] for e in examples])
    if not bool(visual_mask.all()):
        batch["visual_attention_mask"] = visual_mask.long()
    if "target" in examples[0]:
        targets = [e["target"] for e in examples]
        if isinstance(targets[0], np.ndarray):
            batch["labels"] = torch.from_numpy(np.stack(targets))
        else:
            batch["labels"] = torch.as_tensor(targets, dtype=torch.long)
    return Batch(batch, {id_key: [e[id_key] for e in examples]})


def stack_objects(arrays: Sequence[np.ndarray], dtype: torch.dtype | None = None) -> torch.Tensor:
    """Stack per-example object arrays [N, ...] into [B, N_max, ...], zero-padding shorter ones."""
    if not arrays:
        raise ValueError("cannot stack an empty batch")
    n_max = max(a.shape[0] for a in arrays)
    first = arrays[0]
    if all(a.shape == first.shape for a in arrays):
        out = torch.from_numpy(np.stack(arrays))
    else:
        buf = np.zeros((len(arrays), n_max, *first.shape[1:]), dtype=first.dtype)
        for i, a in enumerate(arrays):
            buf[i, : a.shape[0]] = a
        out = torch.from_numpy(buf)
    return out if dtype is None else out.to(dtype)


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Batches of sentences of similar length, in a shuffled order; DDP-aware.

    Each epoch the indices are shuffled with a generator seeded by (seed, epoch), cut
    into pools of `batch_size * pool_batches`, each pool sorted by length and cut into
    batches, and the batches shuffled again - so padding shrinks while batches stay random.

    With `num_replicas > 1` every rank takes every `num_replicas`-th batch of the same
    global order; the batch list is first padded by repeating batches from its start (or
    truncated with `drop_last`) so that all ranks run the same number of steps. Call
    `set_epoch(e)` before each epoch, as with `DistributedSampler`.
    """

    def __init__(self, lengths: Sequence[int] | np.ndarray, batch_size: int, *, shuffle: bool = True,
                 drop_last: bool = False, seed: int = 0, pool_batches: int = 50,
                 num_replicas: int | None = None, rank: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if pool_batches < 1:
            raise ValueError(f"pool_batches must be >= 1, got {pool_batches}")
        if num_replicas is None or rank is None:
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                num_replicas = torch.distributed.get_world_size() if num_replicas is None else num_replicas
                rank = torch.distributed.get_rank() if rank is None else rank
            else:
                num_replicas = 1 if num_replicas is None else num_replicas
                rank = 0 if rank is None else rank
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} out of range for num_replicas={num_replicas}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.pool_batches = pool_batches
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _global_batches(self) -> list[np.ndarray]:
        n = len(self.lengths)
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        pool = self.batch_size * self.pool_batches
        batches: list[np.ndarray] = []
        for start in range(0, n, pool):
            chunk = order[start:start + pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _per_rank(self, total: int) -> int:
        if self.drop_last:
            return total // self.num_replicas
        return math.ceil(total / self.num_replicas)

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._global_batches()
        per_rank = self._per_rank(len(batches))
        needed = per_rank * self.num_replicas
        if needed > len(batches) and batches:
            batches = batches + [batches[i % len(batches)] for i in range(needed - len(batches))]
        for b in batches[self.rank:needed:self.num_replicas]:
            yield b.tolist()

    def __len__(self) -> int:
        n = len(self.lengths)
        if self.drop_last:
            full = 0
            # pools cut batches independently, so count full batches per pool
            pool = self.batch_size * self.pool_batches
            for start in range(0, n, pool):
                full += min(pool, n - start) // self.batch_size
            total = full
        else:
            pool = self.batch_size * self.pool_batches
            total = sum(math.ceil(min(pool, n - s) / self.batch_size) for s in range(0, n, pool))
        return self._per_rank(total)
