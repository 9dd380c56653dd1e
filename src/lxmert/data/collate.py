"""Batch plumbing shared by the datasets: the batch type, device moves, padding.

A collated batch is a `Batch(inputs, meta)`: `inputs` are exactly keyword arguments of the
model's `forward` (so `model(**batch.inputs)` never has to swallow unknown names), `meta`
the lists that identify the examples (question ids, NLVR2 identifiers, sentences), which
predictions and metrics need and the model never sees.

Which examples share a batch (length-aware batching, in training and in evaluation) is
the sampler's business: `lxmert.training.sampler`.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np
import torch

__all__ = [
    "Batch",
    "move_to",
    "pad_1d",
    "stack_objects",
    "text_batch",
    "collate_labelled",
]


class Batch(NamedTuple):
    """A collated batch: model keyword arguments and the examples' identifiers."""

    inputs: dict[str, Any]
    meta: dict[str, list[Any]]

    @property
    def size(self) -> int:
        """The number of examples (`len(batch)` is 2: it is a pair); from the meta lists
        when `inputs` are empty (evaluation outputs put back in file order)."""
        if "input_ids" in self.inputs:
            return int(self.inputs["input_ids"].shape[0])
        return len(next(iter(self.meta.values()))) if self.meta else 0


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
