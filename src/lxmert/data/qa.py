"""Question-answering datasets: VQA and GQA as the release ships them, and a base for more.

`QADataset` reads json files of questions, one image each, tokenises every question once
(see `lxmert.data.text_index`), and turns each `label` ({answer: score}) into a target
through an `AnswerTable`:

- `target="soft"` (default; the release's VQA loss): float [A] with each known answer's
  score - BCE-with-logits against it;
- `target="index"`: the id of the best-scoring known answer (cross-entropy), -100 if none.

Answers not in the table are matched again after `normalize_answer`; those still unknown
are dropped from the target, counted in `stats` and reported once as a warning - never
silently. Entries without a `label` key (test files) give batches without `labels`.

Subclasses (VizWiz, A-OKVQA, ...) override `parse_entry` (and, for other containers,
`read_raw`), returning a `QAEntry`.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from torch.utils.data import Dataset

from lxmert.data.collate import Batch, collate_labelled
from lxmert.data.masking import IGNORE_INDEX
from lxmert.data.sources import DataFormatError
from lxmert.features.union import ImageFeatures, StoreLike
from lxmert.data.text_index import TokenIndex, token_cache_path
from lxmert.text import AnswerTable, LxmertTokenizer

__all__ = ["QAEntry", "QAStats", "QADataset", "VQADataset", "GQADataset", "collate_qa", "load_json_list"]

logger = logging.getLogger(__name__)


@dataclass
class QAEntry:
    """One question: what every QA dataset reduces its json entries to."""

    question_id: Any
    img_id: str
    sent: str
    label: dict[str, float] | None  # None: no ground truth (test split)


@dataclass
class QAStats:
    questions: int = 0
    images: int = 0
    labelled: int = 0
    answers_dropped: int = 0
    labels_emptied: int = 0
    dropped: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        text = f"{self.questions} questions over {self.images} images, {self.labelled} labelled"
        if self.answers_dropped:
            top = ", ".join(f"{a!r} x{n}" for a, n in self.dropped.most_common(5))
            text += (f"; {self.answers_dropped} label answers not in the answer table were dropped "
                     f"({self.labels_emptied} questions left without a known answer; most frequent: {top})")
        return text


def load_json_list(path: Path) -> list:
    """A json file holding a list of entries; errors name the file."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(f"data file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, list):
        raise DataFormatError(f"{path}: expected a list of entries, got {type(data).__name__}")
    return data


class QADataset(Dataset):
    """Questions about images with answer-table targets (see the module docstring).

    Args:
        paths: json file(s) (a list of entries each).
        stores: feature store(s) holding every image.
        tokenizer: default the packaged BERT vocab.
        answer_table: `AnswerTable`, a path to one, or None for `default_answers`.
        max_length: ids per question including [CLS]/[SEP] (20 in LXMERT).
        target: "soft" or "index" (see the module docstring).
        max_boxes: object slots per image (36).
        token_cache: directory caching the tokenised questions between runs (None: off).
    """

    #: name of the packaged answer table used when none is given
    default_answers: str | None = None
    #: type question ids are converted to (VQA: int, GQA: str)
    question_id_type: type = str

    def __init__(
        self,
        paths: str | os.PathLike | Sequence[str | os.PathLike],
        stores: StoreLike,
        tokenizer: LxmertTokenizer | None = None,
        answer_table: AnswerTable | str | os.PathLike | None = None,
        *,
        max_length: int = 20,
        target: str = "soft",
        max_boxes: int = 36,
        token_cache: str | os.PathLike | None = None,
    ) -> None:
        if target not in ("soft", "index"):
            raise ValueError(f"target must be 'soft' or 'index', got {target!r}")
        self.paths = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("no data file given")
        self.tokenizer = tokenizer or LxmertTokenizer.from_vocab()
        if answer_table is None:
            if self.default_answers is None:
                raise ValueError(f"{type(self).__name__} needs an answer_table")
            answer_table = AnswerTable.from_name(self.default_answers)
        elif not isinstance(answer_table, AnswerTable):
            answer_table = AnswerTable.from_file(answer_table)
        self.answer_table = answer_table
        self.images = ImageFeatures(stores, max_boxes=max_boxes)
        self.max_length = max_length
        self.target = target
        self._load(token_cache)

    # hooks -----------------------------------------------------------------------------
    def read_raw(self, path: Path) -> Iterator[tuple[dict, str]]:
        """Yield (raw entry, where) pairs of one file; `where` names file and entry."""
        for index, raw in enumerate(load_json_list(path)):
            yield raw, f"{path}: entry {index}"

    def parse_entry(self, raw: dict, where: str) -> QAEntry:
        """Reduce one raw entry to a `QAEntry`; raise `DataFormatError` naming `where`."""
        if not isinstance(raw, dict):
            raise DataFormatError(f"{where}: expected an object, got {type(raw).__name__}")
        for key in ("question_id", "img_id", "sent"):
            if key not in raw:
                raise DataFormatError(f"{where}: missing key {key!r}")
        qid = raw["question_id"]
        # Taken as written, never converted: VQA's 2.9 would become 2 and "3" would not
        # match the integer ids of predictions and the official files.
        if isinstance(qid, bool) or not isinstance(qid, self.question_id_type) or qid == "":
            name = self.question_id_type.__name__
            raise DataFormatError(f"{where}: question_id {qid!r} is not a valid {name} ({type(self).__name__} "
                                  f"question ids are {name}s, read as written, never converted)")
        label = raw.get("label")
        if label is not None and not (isinstance(label, dict) and all(
                isinstance(a, str) and isinstance(s, (int, float)) for a, s in label.items())):
            raise DataFormatError(f"{where} (question_id {qid!r}): 'label' must be an {{answer: score}} object")
        if not isinstance(raw["sent"], str):
            raise DataFormatError(f"{where} (question_id {qid!r}): 'sent' must be a string")
        return QAEntry(qid, str(raw["img_id"]), raw["sent"], label)

    # loading ---------------------------------------------------------------------------
    def _load(self, token_cache: str | os.PathLike | None = None) -> None:
        stats = QAStats()
        cache_file = cached = None
        if token_cache is not None:
            cache_file = token_cache_path(token_cache, type(self).__name__, self.paths, self.tokenizer,
                                          self.max_length)
            if cache_file.exists():
                cached = TokenIndex.load(cache_file)
        tokens = TokenIndex(self.tokenizer.vocab_size)
        self.entries: list[QAEntry] = []
        self.raw: list[dict] = []
        where_of: list[str] = []
        offsets = [0]
        ids: list[int] = []
        scores: list[float] = []
        with_label = without_label = None
        first_seen: dict[Any, str] = {}
        for path in self.paths:
            for raw, where in self.read_raw(path):
                entry = self.parse_entry(raw, where)
                # predictions and scores are keyed by question id: a repeat would overwrite
                # one question with another and miscount
                if entry.question_id in first_seen:
                    raise DataFormatError(f"{where}: question_id {entry.question_id!r} repeated "
                                          f"(first at {first_seen[entry.question_id]})")
                first_seen[entry.question_id] = where
                if entry.label is None:
                    without_label = without_label or where
                else:
                    with_label = with_label or where
                    stats.labelled += 1
                    kept: dict[int, float] = {}
                    for answer, score in entry.label.items():
                        idx = self.answer_table.lookup(answer)
                        if idx < 0:
                            stats.answers_dropped += 1
                            stats.dropped[answer] += 1
                        else:
                            kept[idx] = max(float(score), kept.get(idx, 0.0))
                    if not kept:
                        stats.labels_emptied += 1
                    ids.extend(kept)
                    scores.extend(kept.values())
                offsets.append(len(ids))
                self.entries.append(entry)
                self.raw.append(raw)
                where_of.append(where)
                if cached is None:
                    tokens.add(entry.sent, self.tokenizer, self.max_length)
        if cached is not None and len(cached) == len(self.entries):
            tokens = cached
        else:
            if cached is not None:  # stale despite its key: rebuild
                tokens = TokenIndex.build(self.tokenizer, (e.sent for e in self.entries), self.max_length)
            else:
                tokens.finish(self.tokenizer, self.max_length)
            if cache_file is not None:
                tokens.save(cache_file)
        if not self.entries:
            raise ValueError(f"no questions in {[str(p) for p in self.paths]}")
        if with_label and without_label:
            raise DataFormatError(
                f"some entries have a 'label' and some do not (e.g. {with_label} has one, {without_label} has not); "
                "a split must be all labelled or all unlabelled"
            )
        self.has_labels = with_label is not None
        self.tokens = tokens
        self.label_offsets = np.asarray(offsets, dtype=np.int64)
        self.label_ids = np.asarray(ids, dtype=np.int64)
        self.label_scores = np.asarray(scores, dtype=np.float32)
        image_locations: dict[str, tuple[int, int]] = {}
        locs = np.empty((len(self.entries), 2), dtype=np.int64)
        for i, entry in enumerate(self.entries):
            loc = image_locations.get(entry.img_id)
            if loc is None:
                loc = self.images.locate(entry.img_id)
                if loc is None:
                    raise KeyError(f"{where_of[i]} (question_id {entry.question_id!r}): image {entry.img_id!r} "
                                   f"is not in the feature store(s) {self.images.describe()}")
                image_locations[entry.img_id] = loc
            locs[i] = loc
        self.locations = locs
        stats.questions = len(self.entries)
        stats.images = len(image_locations)
        self.stats = stats
        if stats.answers_dropped:
            logger.warning("%s: %s", type(self).__name__, stats.summary())

    # access ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.entries)

    @property
    def lengths(self) -> np.ndarray:
        return self.tokens.lengths

    @property
    def question_ids(self) -> list:
        return [e.question_id for e in self.entries]

    @property
    def num_answers(self) -> int:
        return len(self.answer_table)

    def target_of(self, index: int) -> np.ndarray | int:
        """The training target of question `index` (soft [A] float32, or an answer id / -100)."""
        lo, hi = self.label_offsets[index], self.label_offsets[index + 1]
        if self.target == "soft":
            out = np.zeros(len(self.answer_table), dtype=np.float32)
            out[self.label_ids[lo:hi]] = self.label_scores[lo:hi]
            return out
        if hi <= lo:
            return IGNORE_INDEX
        return int(self.label_ids[lo + int(np.argmax(self.label_scores[lo:hi]))])

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} questions")
        record = self.images.get_at(tuple(self.locations[index]))
        example = {
            "input_ids": self.tokens[index],
            "visual_feats": record["features"],
            "visual_pos": record["boxes_norm"],
            "visual_mask": record["mask"],
            "question_id": self.entries[index].question_id,
        }
        if self.has_labels:
            example["target"] = self.target_of(index)
        return example

    def collate(self, examples: Sequence[dict[str, Any]]) -> Batch:
        return collate_qa(examples, pad_id=self.tokenizer.pad_id)


def collate_qa(examples: Sequence[dict[str, Any]], pad_id: int = 0) -> Batch:
    """Batch QA examples: the model's inputs (`labels` when present), `question_id` as meta."""
    return collate_labelled(examples, pad_id, "question_id")


class VQADataset(QADataset):
    """VQA v2 as the release ships it: `{question_id: int, img_id, sent, label, answer_type, question_type}`.

    Default answers: the release's 3129-answer table.
    """

    default_answers = "vqa"
    question_id_type = int


class GQADataset(QADataset):
    """GQA as the release ships it: `{question_id: str, img_id, sent, label: {answer: 1.0}}`.

    Default answers: the release's 1842-answer table.
    """

    default_answers = "gqa"
    question_id_type = str
