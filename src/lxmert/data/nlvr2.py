"""NLVR2: one sentence about a pair of images, true or false.

Reads the release's json `{identifier, img0, img1, label: 0|1, sent, uid}`. Each example
carries both images' objects stacked on a pair axis (`visual_feats [2, N, D]`); the model
encodes (sentence, image) twice and classifies the concatenated pooled vectors. Files
without `label` (the hidden test split) give batches without `labels`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from lxmert.data.collate import Batch, stack_objects, text_batch
from lxmert.data.sources import DataFormatError
from lxmert.features.union import ImageFeatures, StoreLike
from lxmert.data.text_index import TokenIndex
from lxmert.evaluation.nlvr2 import sentence_key
from lxmert.text import LxmertTokenizer

__all__ = ["NLVR2Dataset", "collate_nlvr2", "identifier_problem"]

_REQUIRED = ("identifier", "img0", "img1", "sent")


def identifier_problem(identifier: object) -> str | None:
    """What is wrong with an NLVR2 identifier, None when nothing.

    The official format is `<split>-<set>-<pair>-<sentence>` (`dev-850-2-0`): predictions
    are keyed by it and the consistency metric groups by it with the third field blanked
    (`lxmert.evaluation.nlvr2.sentence_key`, whose rule is applied here too). Checked when
    the data is read, so a bad identifier fails before training, not at its evaluation."""
    if not isinstance(identifier, str):
        return f"identifier must be a string '<split>-<set>-<pair>-<sentence>', got {type(identifier).__name__}"
    parts = identifier.split("-")
    if len(parts) != 4 or not all(parts) or not all(p.isdigit() for p in parts[1:]):
        return (f"identifier {identifier!r} is not '<split>-<set>-<pair>-<sentence>' "
                f"(e.g. 'dev-850-2-0'; the consistency metric groups by it)")
    try:
        sentence_key(identifier)
    except ValueError as err:
        return str(err)
    return None


class NLVR2Dataset(Dataset):
    """NLVR2 examples over feature store(s); batches follow the `LxmertForNLVR2` contract."""

    def __init__(
        self,
        paths: str | os.PathLike | Sequence[str | os.PathLike],
        stores: StoreLike,
        tokenizer: LxmertTokenizer | None = None,
        *,
        max_length: int = 20,
        max_boxes: int = 36,
    ) -> None:
        self.paths = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("no data file given")
        self.tokenizer = tokenizer or LxmertTokenizer.from_vocab()
        self.images = ImageFeatures(stores, max_boxes=max_boxes)
        self.max_length = max_length
        self._load()

    def _load(self) -> None:
        tokens = TokenIndex(self.tokenizer.vocab_size)
        self.raw: list[dict] = []
        labels: list[int] = []
        locations: list[tuple[int, int, int, int]] = []
        seen: dict[str, tuple[int, int]] = {}
        first_seen: dict[str, str] = {}
        with_label = without_label = None
        for path in self.paths:
            try:
                with open(path, encoding="utf-8") as handle:
                    data = json.load(handle)
            except FileNotFoundError:
                raise FileNotFoundError(f"data file not found: {path}") from None
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise DataFormatError(f"{path}: not valid JSON ({err})") from None
            if not isinstance(data, list):
                raise DataFormatError(f"{path}: expected a list of entries, got {type(data).__name__}")
            for index, raw in enumerate(data):
                where = f"{path}: entry {index}"
                if not isinstance(raw, dict):
                    raise DataFormatError(f"{where}: expected an object, got {type(raw).__name__}")
                for key in _REQUIRED:
                    if key not in raw:
                        raise DataFormatError(f"{where} (identifier {raw.get('identifier')!r}): missing key {key!r}")
                where = f"{where} (identifier {raw['identifier']!r})"
                identifier = raw["identifier"]
                problem = identifier_problem(identifier)
                if problem:
                    raise DataFormatError(f"{where}: {problem}")
                if identifier in first_seen:
                    raise DataFormatError(f"{where}: identifier repeated (first at {first_seen[identifier]})")
                first_seen[identifier] = where
                if "label" in raw:
                    label = raw["label"]
                    if isinstance(label, bool) or label not in (0, 1):
                        raise DataFormatError(f"{where}: label must be 0 or 1, got {label!r}")
                    labels.append(int(label))
                    with_label = with_label or where
                else:
                    labels.append(-1)
                    without_label = without_label or where
                pair = []
                for key in ("img0", "img1"):
                    img_id = str(raw[key])
                    loc = seen.get(img_id)
                    if loc is None:
                        loc = self.images.locate(img_id)
                        if loc is None:
                            raise KeyError(f"{where}: {key} {img_id!r} is not in the feature store(s) "
                                           f"{self.images.describe()}")
                        seen[img_id] = loc
                    pair.extend(loc)
                locations.append(tuple(pair))
                self.raw.append(raw)
                tokens.add(str(raw["sent"]), self.tokenizer, self.max_length)
        tokens.finish(self.tokenizer, self.max_length)
        if not self.raw:
            raise ValueError(f"no examples in {[str(p) for p in self.paths]}")
        if with_label and without_label:
            raise DataFormatError(f"some entries have a 'label' and some do not (e.g. {with_label} has one, "
                                  f"{without_label} has not)")
        self.has_labels = with_label is not None
        self.tokens = tokens
        self.labels = np.asarray(labels, dtype=np.int64)
        self.locations = np.asarray(locations, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.raw)

    @property
    def lengths(self) -> np.ndarray:
        return self.tokens.lengths

    @property
    def identifiers(self) -> list[str]:
        return [r["identifier"] for r in self.raw]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} examples")
        loc = self.locations[index]
        left = self.images.get_at((int(loc[0]), int(loc[1])))
        right = self.images.get_at((int(loc[2]), int(loc[3])))
        raw = self.raw[index]
        example = {
            "input_ids": self.tokens[index],
            "visual_feats": np.stack([left["features"], right["features"]]),
            "visual_pos": np.stack([left["boxes_norm"], right["boxes_norm"]]),
            "visual_mask": np.stack([left["mask"], right["mask"]]),
            "identifier": raw["identifier"],
            "sent": raw["sent"],
        }
        if self.has_labels:
            example["label"] = int(self.labels[index])
        return example

    def collate(self, examples: Sequence[dict[str, Any]]) -> Batch:
        return collate_nlvr2(examples, pad_id=self.tokenizer.pad_id)


def collate_nlvr2(examples: Sequence[dict[str, Any]], pad_id: int = 0) -> Batch:
    """Batch NLVR2 examples: inputs `visual_feats [B, 2, N, D]`, `labels [B]`; meta
    `identifier` and `sent` lists."""
    batch = text_batch([e["input_ids"] for e in examples], pad_id)
    # stack_objects pads the object axis; move it first so that [2, N, D] pads along N
    feats = stack_objects([e["visual_feats"].transpose(1, 0, 2) for e in examples], torch.float32)
    pos = stack_objects([e["visual_pos"].transpose(1, 0, 2) for e in examples], torch.float32)
    mask = stack_objects([e["visual_mask"].T for e in examples])
    batch["visual_feats"] = feats.transpose(1, 2).contiguous()
    batch["visual_pos"] = pos.transpose(1, 2).contiguous()
    if not bool(mask.all()):
        batch["visual_attention_mask"] = mask.transpose(1, 2).long().contiguous()
    if "label" in examples[0]:
        batch["labels"] = torch.as_tensor([e["label"] for e in examples], dtype=torch.long)
    return Batch(batch, {"identifier": [e["identifier"] for e in examples], "sent": [e["sent"] for e in examples]})
