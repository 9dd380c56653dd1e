"""The pre-training dataset: (image, sentence) pairs with the five tasks' inputs and targets.

`PretrainingDataset` reads the release's `lxmert/*.json` (or the JSONL format of
`lxmert.data.jsonl`) as is - several files, all or some sources - and yields one example
per (image, sentence):

- cross-modality matching: with probability `match_prob` (0.5) the sentence is replaced
  by the sentence of a random example of another image (`matched_label` 0);
- masked LM on the (possibly mismatched) sentence (`lxmert.data.masking.mask_tokens`);
- masked objects (`mask_objects`); object/attribute targets are the detector's ids weighted
  by its confidences on ALL objects, the feature target the original features with the
  chosen-object mask (as the release);
- image QA: one answer sampled in proportion to its label score through the answer table;
  -100 when the pair is mismatched, the sentence is not a question, or no answer of the
  label is in the table (answers are matched exactly, then after `normalize_answer`;
  unknown ones are dropped, counted in `stats` and reported once as a warning).

Determinism: the randomness of example i in epoch e comes from a generator seeded with
(seed, e, i) only, so batches are identical for any number of workers or ranks; call
`set_epoch(e)` each epoch (or index the dataset with `(epoch, i)` pairs, which also works
with persistent workers).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Collection, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from lxmert.data.collate import Batch, pad_1d, stack_objects, text_batch
from lxmert.data.masking import IGNORE_INDEX, mask_objects, mask_tokens
from lxmert.data.jsonl import read_examples
from lxmert.features.union import ImageFeatures, StoreLike
from lxmert.data.text_index import TokenIndex, token_cache_path
from lxmert.text import AnswerTable, LxmertTokenizer

__all__ = ["PretrainingDataset", "PretrainingStats", "collate_pretraining"]

#: The release's pre-training splits (files under data/lxmert/): train on the first three,
#: validate on minival.
RELEASE_TRAIN_SPLITS = ("mscoco_train", "mscoco_nominival", "vgnococo")
RELEASE_VALID_SPLITS = ("mscoco_minival",)


logger = logging.getLogger(__name__)


@dataclass
class PretrainingStats:
    """What the dataset read; `answers_dropped` counts label answers not in the answer table."""

    examples: int = 0
    images: int = 0
    per_source: dict[str, int] = field(default_factory=dict)
    labelled: int = 0
    answers_dropped: int = 0
    labels_emptied: int = 0
    dropped_examples: Counter = field(default_factory=Counter)  # answer -> occurrences

    def summary(self) -> str:
        text = (f"{self.examples} examples over {self.images} images "
                f"({', '.join(f'{k} {v}' for k, v in sorted(self.per_source.items()))}); "
                f"{self.labelled} with a QA target")
        if self.answers_dropped:
            top = ", ".join(f"{a!r} x{n}" for a, n in self.dropped_examples.most_common(5))
            text += (f"; {self.answers_dropped} label answers not in the answer table were dropped "
                     f"({self.labels_emptied} labels left empty; most frequent: {top})")
        return text


class PretrainingDataset(Dataset):
    """LXMERT pre-training examples over feature store(s) (see the module docstring).

    Args:
        paths: pre-training json / jsonl file(s).
        stores: feature store(s) (`FeatureStore`, directory, or a list of them).
        tokenizer: `LxmertTokenizer` (default: the packaged BERT vocab).
        answer_table: `AnswerTable` or a path to one (default: the release's 9500 answers).
        sources: keep only these sources (e.g. {"mscoco", "vqa"}); None = all.
        max_length: ids per sentence including [CLS] and [SEP] (20 in LXMERT).
        seed: base of the per-example randomness.
        word_mask_prob / obj_mask_prob / match_prob: 0.15 / 0.15 / 0.5 as the paper; 0
            switches that corruption off.
        match_sources: only sentences of these sources are matching examples, and their
            mismatched sentences are drawn among them; the others keep their own sentence
            with `matched_label` -100 (no matching loss). None = every sentence (the release).
        qa: produce QA targets (`ans`); False gives -100 everywhere.
        max_boxes: object slots per image (36).
        token_cache: directory where the tokenised sentences are cached between runs
            (see `lxmert.data.text_index`); None = tokenise every time.
    """

    def __init__(
        self,
        paths: str | os.PathLike | Sequence[str | os.PathLike],
        stores: StoreLike,
        tokenizer: LxmertTokenizer | None = None,
        answer_table: AnswerTable | str | os.PathLike | None = None,
        *,
        sources: Collection[str] | None = None,
        max_length: int = 20,
        seed: int = 0,
        word_mask_prob: float = 0.15,
        obj_mask_prob: float = 0.15,
        match_prob: float = 0.5,
        match_sources: Collection[str] | None = None,
        qa: bool = True,
        max_boxes: int = 36,
        token_cache: str | os.PathLike | None = None,
    ) -> None:
        if not 0.0 <= match_prob <= 1.0:
            raise ValueError(f"match_prob must be in [0, 1], got {match_prob}")
        self.paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        if not self.paths:
            raise ValueError("no pre-training file given")
        self.tokenizer = tokenizer or LxmertTokenizer.from_vocab()
        if answer_table is None:
            answer_table = AnswerTable.from_name("pretrain")
        elif not isinstance(answer_table, AnswerTable):
            answer_table = AnswerTable.from_file(answer_table)
        self.answer_table = answer_table
        self.images = ImageFeatures(stores, max_boxes=max_boxes)
        self.max_length = max_length
        self.seed = seed
        self.epoch = 0
        self.word_mask_prob = word_mask_prob
        self.obj_mask_prob = obj_mask_prob
        self.match_prob = match_prob
        self.match_sources = None if match_sources is None else frozenset(match_sources)
        self.qa = qa
        self._special_ids = (self.tokenizer.cls_id, self.tokenizer.sep_id, self.tokenizer.pad_id)
        self._load(sources, token_cache)

    # ---------------------------------------------------------------------------------
    def _load(self, sources: Collection[str] | None, token_cache: str | os.PathLike | None) -> None:
        stats = PretrainingStats()
        cache_file = cached = None
        if token_cache is not None:
            cache_file = token_cache_path(token_cache, "pretrain", self.paths, self.tokenizer, self.max_length,
                                          sorted(sources) if sources is not None else None)
            if cache_file.exists():
                cached = TokenIndex.load(cache_file)
        tokens = TokenIndex(self.tokenizer.vocab_size)
        image_index: dict[str, int] = {}
        image_where: list[str] = []
        example_image: list[int] = []
        source_names: dict[str, int] = {}
        example_source: list[int] = []
        label_offsets = [0]
        label_ids: list[int] = []
        label_scores: list[float] = []
        for path in self.paths:
            for ex in read_examples(path, sources):
                img = image_index.get(ex.img_id)
                if img is None:
                    img = image_index[ex.img_id] = len(image_where)
                    image_where.append(ex.where)
                example_image.append(img)
                example_source.append(source_names.setdefault(ex.source, len(source_names)))
                if cached is None:
                    tokens.add(ex.sent, self.tokenizer, self.max_length)
                if ex.label:
                    stats.labelled += 1
                    kept: dict[int, float] = {}
                    for answer, score in ex.label.items():
                        idx = self.answer_table.lookup(answer)
                        if idx < 0:
                            stats.answers_dropped += 1
                            stats.dropped_examples[answer] += 1
                        elif score > 0:
                            kept[idx] = max(float(score), kept.get(idx, 0.0))
                    if not kept:
                        stats.labels_emptied += 1
                    label_ids.extend(kept)
                    label_scores.extend(kept.values())
                label_offsets.append(len(label_ids))
        if cached is not None and len(cached) == len(example_image):
            tokens = cached
        else:
            if cached is not None:  # stale despite its key (should not happen): rebuild
                logger.warning("token cache %s does not match the data; re-tokenising", cache_file)
                tokens = TokenIndex.build(self.tokenizer, (ex.sent for p in self.paths
                                                           for ex in read_examples(p, sources)), self.max_length)
            else:
                tokens.finish(self.tokenizer, self.max_length)
            if cache_file is not None:
                tokens.save(cache_file)
        if not example_image:
            raise ValueError(f"no examples in {[str(p) for p in self.paths]}"
                             + (f" for sources {sorted(sources)}" if sources is not None else ""))
        self.tokens = tokens
        self.image_ids = list(image_index)
        self.example_image = np.asarray(example_image, dtype=np.int32)
        self.source_names = list(source_names)
        self.example_source = np.asarray(example_source, dtype=np.int16)
        self.label_offsets = np.asarray(label_offsets, dtype=np.int64)
        self.label_ids = np.asarray(label_ids, dtype=np.int64)
        self.label_scores = np.asarray(label_scores, dtype=np.float64)
        locations = []
        for img_id, where in zip(self.image_ids, image_where):
            loc = self.images.locate(img_id)
            if loc is None:
                raise KeyError(f"{where}: image {img_id!r} is not in the feature store(s) {self.images.describe()}")
            locations.append(loc)
        self.image_locations = np.asarray(locations, dtype=np.int64).reshape(-1, 2)
        stats.examples = len(example_image)
        stats.images = len(self.image_ids)
        counts = np.bincount(self.example_source, minlength=len(self.source_names))
        stats.per_source = {name: int(counts[k]) for k, name in enumerate(self.source_names)}
        self.stats = stats
        if stats.answers_dropped:
            logger.warning("pre-training data: %s", stats.summary())
        self._matchable: np.ndarray | None = None  # per example: a matching example? (match_sources)
        self._match_pool: np.ndarray | None = None  # their indices, where negatives are drawn
        if self.match_sources is not None:
            unknown = sorted(self.match_sources - set(self.source_names))
            if unknown:
                raise ValueError(f"match_sources {unknown} not among the sources of {[str(p) for p in self.paths]}: "
                                 f"{self.source_names}")
            ids = [k for k, name in enumerate(self.source_names) if name in self.match_sources]
            self._matchable = np.isin(self.example_source, ids)
            self._match_pool = np.flatnonzero(self._matchable)

    # ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.example_image)

    @property
    def lengths(self) -> np.ndarray:
        """Token count of each example's own sentence (for length bucketing)."""
        return self.tokens.lengths

    def set_epoch(self, epoch: int) -> None:
        """Select the randomness of epoch `epoch` (masks, mismatches, sampled answers)."""
        self.epoch = int(epoch)

    def draw_sentence(self, index: int, rng: np.random.Generator) -> tuple[int, int]:
        """(the example whose sentence example `index` carries, matched label): its own
        sentence (1), another image's (0, with probability `match_prob`), or its own
        without a matching loss (-100) when matching is kept to other sources. The first
        draws of the example's generator; `__getitem__` and `epoch_lengths` share them."""
        pool = self._match_pool
        if pool is not None and not self._matchable[index]:
            return index, IGNORE_INDEX
        if self.match_prob > 0 and rng.random() < self.match_prob:
            img = self.example_image[index]
            for _ in range(100):
                other = int(rng.integers(0, len(self))) if pool is None else int(pool[rng.integers(0, len(pool))])
                if self.example_image[other] != img:
                    return other, 0
        return index, 1

    def epoch_lengths(self, epoch: int) -> np.ndarray:
        """The token count of the sentence each example carries in epoch `epoch` (its own,
        or the mismatched one), for length-aware batching.

        Bucketing by these, every example of a batch carries a sentence of about the same
        length whether it is matched or not, so length says nothing about the matching
        label (bucketing by `.lengths`, each example's OWN sentence, would: see
        `lxmert.training.sampler.dataset_lengths`). Replays only the sentence draw of each
        example (no features, no masking): a few microseconds per example, once per epoch.
        """
        own = self.tokens.lengths
        carried = np.empty(len(self), dtype=np.int64)
        for index in range(len(self)):
            carried[index] = own[self.draw_sentence(index, self.rng(index, epoch))[0]]
        return carried

    def rng(self, index: int, epoch: int | None = None) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch if epoch is None else epoch, index])

    def _random_features(self, rng: np.random.Generator, k: int) -> np.ndarray:
        """Features of `k` random objects of random images of this dataset."""
        imgs = rng.integers(0, len(self.image_ids), size=k)
        objs = rng.integers(0, self.images.stores[0].max_boxes, size=k)
        return np.stack([self.images.object_feature(tuple(self.image_locations[i]), int(o))
                         for i, o in zip(imgs, objs)])

    def sample_answer(self, index: int, rng: np.random.Generator) -> int:
        """An answer id drawn in proportion to the label scores of example `index` (-100 if none)."""
        lo, hi = self.label_offsets[index], self.label_offsets[index + 1]
        if hi <= lo:
            return IGNORE_INDEX
        if hi - lo == 1:
            return int(self.label_ids[lo])
        scores = self.label_scores[lo:hi]
        return int(self.label_ids[lo + rng.choice(hi - lo, p=scores / scores.sum())])

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = item if isinstance(item, tuple) else (self.epoch, item)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} examples")
        rng = self.rng(index, epoch)
        img = int(self.example_image[index])
        sentence_of, matched = self.draw_sentence(index, rng)
        input_ids, mlm_labels = mask_tokens(
            self.tokens[sentence_of], rng, vocab_size=self.tokenizer.vocab_size, mask_id=self.tokenizer.mask_id,
            special_ids=self._special_ids, prob=self.word_mask_prob,
        )
        record = self.images.get_at(tuple(self.image_locations[img]))
        feats = record["features"]
        masked, chosen = mask_objects(feats, rng, random_features=self._random_features, valid=record["mask"],
                                      prob=self.obj_mask_prob)
        ans = self.sample_answer(index, rng) if (self.qa and matched != 0) else IGNORE_INDEX
        return {
            "input_ids": input_ids,
            "labels": mlm_labels,
            "visual_feats": masked,
            "visual_pos": record["boxes_norm"],
            "visual_mask": record["mask"],
            "obj_ids": record["obj_ids"],
            "obj_conf": record["obj_conf"],
            "attr_ids": record["attr_ids"],
            "attr_conf": record["attr_conf"],
            "orig_feats": feats,
            "feat_mask": chosen,
            "matched_label": matched,
            "ans": ans,
        }

    def collate(self, examples: Sequence[dict[str, Any]]) -> Batch:
        return collate_pretraining(examples, pad_id=self.tokenizer.pad_id)


def collate_pretraining(examples: Sequence[dict[str, Any]], pad_id: int = 0) -> Batch:
    """Batch pre-training examples into the model's keyword arguments and targets.

    Text is padded to the longest sentence of the batch (MLM labels with -100). A
    `visual_attention_mask` is added only when some image has fewer real boxes than the
    batch's slots: the release never passed one, and all-ones would only cost time.
    """
    batch = text_batch([e["input_ids"] for e in examples], pad_id)
    batch["labels"] = pad_1d([e["labels"] for e in examples], IGNORE_INDEX)
    batch["visual_feats"] = stack_objects([e["visual_feats"] for e in examples], torch.float32)
    batch["visual_pos"] = stack_objects([e["visual_pos"] for e in examples], torch.float32)
    visual_mask = stack_objects([e["visual_mask"] for e in examples])
    if not bool(visual_mask.all()):
        batch["visual_attention_mask"] = visual_mask.long()
    batch["obj_labels"] = {
        "obj": (stack_objects([e["obj_ids"] for e in examples], torch.long),
                stack_objects([e["obj_conf"] for e in examples], torch.float32)),
        "attr": (stack_objects([e["attr_ids"] for e in examples], torch.long),
                 stack_objects([e["attr_conf"] for e in examples], torch.float32)),
        "feat": (stack_objects([e["orig_feats"] for e in examples], torch.float32),
                 stack_objects([e["feat_mask"] for e in examples], torch.float32)),
    }
    batch["matched_label"] = torch.as_tensor([e["matched_label"] for e in examples], dtype=torch.long)
    batch["ans"] = torch.as_tensor([e["ans"] for e in examples], dtype=torch.long)
    return Batch(batch, {})
