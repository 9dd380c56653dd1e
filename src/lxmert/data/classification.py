"""Multimodal classification data (hateful memes and the like) from JSONL.

One JSON object per line::

    {"id": "42", "img_id": "meme_00042", "text": "look at this", "labels": 1}
    {"img_id": "post_7", "text": "sunset at the beach", "labels": ["nature", "travel"]}

`img_id` and `text` are required; `labels` is one label (an int or a string) for
single-label data, or a list of labels for multi-label data; it is absent in unlabelled
(test) files. `id` is optional (default `"<file stem>:<line>"`). Blank lines are skipped;
every error names the file and the line.

Label space: given explicitly (`label_names`), else collected from the file(s): sorted
ints when every label is an int (so `0/1` keep their meaning), else sorted strings.
Mode: `multi_label=None` decides from the data (any list -> multi-label). A single-label
file with exactly two labels can be trained either as 2-way softmax or, with
`binary=True`, as ONE sigmoid logit for the positive label (the hateful-memes setting:
AUROC on p(positive)). Targets: long [B] (single-label), float multi-hot [B, L]
(multi-label and binary).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from torch.utils.data import Dataset

from lxmert.data.collate import Batch, collate_labelled
from lxmert.data.jsonl import iter_image_text_lines
from lxmert.data.sources import DataFormatError
from lxmert.features.union import ImageFeatures, StoreLike
from lxmert.data.text_index import TokenIndex
from lxmert.text import LxmertTokenizer

__all__ = ["ClassificationDataset", "ClassificationEntry", "read_classification_jsonl", "collate_classification",
           "collect_labels"]


class ClassificationEntry:
    """One line: id, image, text and its labels (a list; None when unlabelled)."""

    __slots__ = ("id", "img_id", "text", "labels", "where", "multi")

    def __init__(self, id: str, img_id: str, text: str, labels: list[Any] | None, where: str, multi: bool) -> None:
        self.id, self.img_id, self.text, self.labels, self.where, self.multi = id, img_id, text, labels, where, multi


def _label_value(value: Any, where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DataFormatError(f"{where}: a label must be an int or a string, got {value!r}")
    return value


def read_classification_jsonl(path: str | os.PathLike) -> Iterator[ClassificationEntry]:
    """Stream the entries of one JSONL file (see the module docstring)."""
    path = Path(path)
    for where, lineno, raw in iter_image_text_lines(path):
        labels = raw.get("labels")
        multi = isinstance(labels, list)
        if labels is None:
            values = None
        elif multi:
            values = [_label_value(v, where) for v in labels]
            if len(set(values)) != len(values):
                raise DataFormatError(f"{where}: repeated label in {labels!r}")
        else:
            values = [_label_value(labels, where)]
        ident = str(raw.get("id", f"{path.stem}:{lineno}"))
        yield ClassificationEntry(ident, str(raw["img_id"]), raw["text"], values, where, multi)


def collect_labels(entries: Sequence[ClassificationEntry]) -> list[Any]:
    """Sorted label values seen in `entries` (ints numerically, else as strings)."""
    seen = {v for e in entries if e.labels for v in e.labels}
    if not seen:
        raise ValueError("no labels in the data; pass label_names")
    if all(isinstance(v, int) for v in seen):
        return sorted(seen)
    return sorted(seen, key=str)


class ClassificationDataset(Dataset):
    """Image + text examples with single- or multi-label targets (see the module docstring).

    Args:
        paths: JSONL file(s).
        stores: feature store(s) holding every image.
        tokenizer: default the packaged BERT vocab.
        label_names: the label space in head order (ints or strings); default from the data.
        multi_label: None = decide from the data.
        binary: single-label data with two labels -> one sigmoid logit for `label_names[1]`.
    """

    def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike], stores: StoreLike,
                 tokenizer: LxmertTokenizer | None = None, label_names: Sequence[Any] | None = None, *,
                 multi_label: bool | None = None, binary: bool = False, max_length: int = 20,
                 max_boxes: int = 36) -> None:
        self.paths = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("no data file given")
        self.tokenizer = tokenizer or LxmertTokenizer.from_vocab()
        self.images = ImageFeatures(stores, max_boxes=max_boxes)
        self.max_length = max_length
        entries: list[ClassificationEntry] = []
        first_seen: dict[str, str] = {}
        for path in self.paths:
            for entry in read_classification_jsonl(path):
                # predictions are keyed by id: a repeat would overwrite an example's score
                if entry.id in first_seen:
                    raise DataFormatError(f"{entry.where}: id {entry.id!r} repeated (first at {first_seen[entry.id]})")
                first_seen[entry.id] = entry.where
                entries.append(entry)
        if not entries:
            raise ValueError(f"no examples in {[str(p) for p in self.paths]}")
        labelled = [e for e in entries if e.labels is not None]
        if labelled and len(labelled) != len(entries):
            a = next(e for e in entries if e.labels is not None)
            b = next(e for e in entries if e.labels is None)
            raise DataFormatError(f"some lines have 'labels' and some do not (e.g. {a.where} has, {b.where} has "
                                  "not); a split must be all labelled or all unlabelled")
        self.has_labels = bool(labelled)
        seen_multi = any(e.multi for e in entries)
        if multi_label is None:
            multi_label = seen_multi
        if not multi_label and seen_multi:
            e = next(e for e in entries if e.multi)
            raise DataFormatError(f"{e.where}: a list of labels in single-label data")
        names = list(label_names) if label_names is not None else collect_labels(entries)
        if binary:
            if multi_label or len(names) != 2:
                raise ValueError(f"binary=True needs single-label data with exactly 2 labels, got {names}")
        self.label_names = names
        self.multi_label = bool(multi_label)
        self.binary = binary
        index = {v: i for i, v in enumerate(names)}
        index.update({str(v): i for i, v in enumerate(names)})
        self.entries = entries
        self.targets: list[list[int]] = []
        for e in entries:
            ids = []
            for v in e.labels or []:
                k = index.get(v, index.get(str(v)))
                if k is None:
                    raise DataFormatError(f"{e.where}: label {v!r} is not one of {names}")
                ids.append(k)
            self.targets.append(ids)
        tokens = TokenIndex(self.tokenizer.vocab_size)
        for e in entries:
            tokens.add(e.text, self.tokenizer, max_length)
        tokens.finish(self.tokenizer, max_length)
        self.tokens = tokens
        locs = np.empty((len(entries), 2), dtype=np.int64)
        cache: dict[str, tuple[int, int]] = {}
        for i, e in enumerate(entries):
            loc = cache.get(e.img_id)
            if loc is None:
                loc = self.images.locate(e.img_id)
                if loc is None:
                    raise KeyError(f"{e.where}: image {e.img_id!r} is not in the feature store(s) "
                                   f"{self.images.describe()}")
                cache[e.img_id] = loc
            locs[i] = loc
        self.locations = locs
        self.raw = [{"id": e.id, "img_id": e.img_id, "text": e.text, "labels": e.labels} for e in entries]

    # the head --------------------------------------------------------------------------
    @property
    def head_labels(self) -> list[str]:
        """Names of the model's logits: every label, or only the positive one (binary)."""
        return [str(self.label_names[1])] if self.binary else [str(v) for v in self.label_names]

    @property
    def head_multi_label(self) -> bool:
        """Whether the head is trained with per-logit sigmoids (multi-label or binary)."""
        return self.multi_label or self.binary

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def lengths(self) -> np.ndarray:
        return self.tokens.lengths

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.entries]

    def target_of(self, index: int) -> np.ndarray | int:
        ids = self.targets[index]
        if self.binary:
            return np.asarray([float(ids[0] == 1)], dtype=np.float32)
        if self.multi_label:
            out = np.zeros(len(self.label_names), dtype=np.float32)
            out[ids] = 1.0
            return out
        return ids[0]

    def gold(self) -> np.ndarray:
        """Ground truth in the form `evaluate_classification` takes: [N] ids (0/1 for
        binary) or [N, L] multi-hot."""
        if not self.has_labels:
            raise ValueError("this split has no labels")
        if self.multi_label:
            return np.stack([self.target_of(i) for i in range(len(self))]).astype(np.int64)
        return np.asarray([t[0] for t in self.targets], dtype=np.int64)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} examples")
        record = self.images.get_at(tuple(self.locations[index]))
        example = {
            "input_ids": self.tokens[index],
            "visual_feats": record["features"],
            "visual_pos": record["boxes_norm"],
            "visual_mask": record["mask"],
            "id": self.entries[index].id,
        }
        if self.has_labels:
            example["target"] = self.target_of(index)
        return example

    def collate(self, examples: Sequence[dict[str, Any]]) -> Batch:
        return collate_classification(examples, pad_id=self.tokenizer.pad_id)


def collate_classification(examples: Sequence[dict[str, Any]], pad_id: int = 0) -> Batch:
    """Batch examples: the model's inputs (`labels` when present), the `id` list as meta."""
    return collate_labelled(examples, pad_id, "id")
