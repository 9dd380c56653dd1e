"""Image-text retrieval data over a Karpathy split (`lxmert.data.karpathy`) and feature stores.

- `RetrievalPairs` (training): one example per sentence - the sentence, its image, and a
  pool of candidate negatives drawn for it: `pool` other images (for "this sentence, a
  wrong image") and `pool` other sentences (for "this image, a wrong sentence"). Which of
  them are trained on (random ones, or the hardest under the current model) is the task's
  loss (`lxmert.tasks.retrieval`); the dataset only draws the pool, as a pure function of
  (seed, epoch, index), so workers, ranks and resumed runs see the same negatives.
- `RetrievalGallery` (evaluation): the images and sentences of a split, read in batches for
  encoding each of them once; `len()` is the number of images (a `valid_limit` keeps the
  first N images and their sentences).

Captions that are not unique. A sentence may describe several images word for word
(frequent in the generated world, rare in COCO and Flickr30k). `same_text` decides this
for both: after lower-casing and dropping punctuation (the files' `tokens`), two
sentences are the same text. A negative is never the same text as a positive: an image
whose own captions include the sentence is not drawn as its negative, nor is a sentence
identical to one of the image's captions. Metrics report recall both ways (the task).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from lxmert.data.collate import Batch, pad_1d, stack_objects, text_batch
from lxmert.data.karpathy import CaptionSplit, tokenize
from lxmert.data.text_index import TokenIndex
from lxmert.features.union import ImageFeatures
from lxmert.text import LxmertTokenizer

__all__ = ["RetrievalPairs", "RetrievalGallery", "same_text", "NEGATIVE_SIDES", "collate_pairs"]

#: which side of a positive pair a negative replaces: "image" (the sentence with another
#: image: text -> image retrieval's mistakes) or "text" (the image with another sentence)
NEGATIVE_SIDES = ("image", "text")


def same_text(raw: str) -> str:
    """The form in which two captions count as the same sentence (lower-cased words)."""
    return " ".join(tokenize(raw))


def _locate_all(split: CaptionSplit, images: ImageFeatures, where: str) -> np.ndarray:
    locations = np.empty((len(split.image_ids), 2), dtype=np.int64)
    for i, img in enumerate(split.image_ids):
        loc = images.locate(img)
        if loc is None:
            raise KeyError(f"{where}: image {img!r} (split {'+'.join(split.splits)}) is not in the feature "
                           f"store(s) {images.describe()}; check retrieval.image_key")
        locations[i] = loc
    return locations


class _CaptionImages(Dataset):
    """What both datasets share: the split, its images' store locations, tokenised sentences
    and the same-text groups."""

    def __init__(self, split: CaptionSplit, images: ImageFeatures, tokenizer: LxmertTokenizer | None,
                 max_length: int, where: str) -> None:
        if not split.image_ids or not split.sentences:
            raise ValueError(f"{where}: split {'+'.join(split.splits)} has no images or no sentences")
        self.split = split
        self.where = where
        self.images = images
        self.tokenizer = tokenizer or LxmertTokenizer.from_vocab()
        self.max_length = max_length
        self.locations = _locate_all(split, images, where)
        self.tokens = TokenIndex.build(self.tokenizer, split.sentences, max_length)
        self.sentence_image = np.asarray(split.sentence_image, dtype=np.int64)
        keys = [same_text(s) for s in split.sentences]
        codes: dict[str, int] = {}
        #: same-text group of each sentence (equal codes = the same sentence)
        self.text_code = np.asarray([codes.setdefault(k, len(codes)) for k in keys], dtype=np.int64)
        self.num_codes = len(codes)
        #: image_codes[i]: the same-text codes of image i's captions
        self.image_codes: list[set[int]] = [set() for _ in split.image_ids]
        for j, i in enumerate(self.sentence_image):
            self.image_codes[int(i)].add(int(self.text_code[j]))

    def image_record(self, i: int) -> dict[str, Any]:
        return self.images.get_at(tuple(self.locations[i]))

    def image_batch(self, rows: Sequence[int]) -> dict[str, torch.Tensor]:
        """`visual_feats`, `visual_pos` (and `visual_attention_mask` when some image has
        fewer boxes than the others) of images `rows`."""
        records = [self.image_record(int(i)) for i in rows]
        out = {"visual_feats": stack_objects([r["features"] for r in records], torch.float32),
               "visual_pos": stack_objects([r["boxes_norm"] for r in records], torch.float32)}
        mask = stack_objects([r["mask"] for r in records])
        if not bool(mask.all()):
            out["visual_attention_mask"] = mask.long()
        return out

    def text_batch(self, rows: Sequence[int]) -> dict[str, torch.Tensor]:
        """`input_ids`, `attention_mask`, `token_type_ids` of sentences `rows`."""
        return text_batch([self.tokens[int(j)] for j in rows], self.tokenizer.pad_id)


class RetrievalPairs(_CaptionImages):
    """Training examples: each sentence with its image and `pool` candidate negatives per
    side in `sides` (see the module docstring)."""

    def __init__(self, split: CaptionSplit, images: ImageFeatures, tokenizer: LxmertTokenizer | None = None, *,
                 max_length: int = 20, pool: int = 1, sides: Sequence[str] = NEGATIVE_SIDES, seed: int = 0,
                 where: str = "retrieval split") -> None:
        super().__init__(split, images, tokenizer, max_length, where)
        bad = [s for s in sides if s not in NEGATIVE_SIDES]
        if bad or not sides:
            raise ValueError(f"negative sides must be among {NEGATIVE_SIDES}, got {list(sides)}")
        if pool < 1:
            raise ValueError(f"pool must be >= 1, got {pool}")
        self.pool = int(pool)
        self.sides = tuple(s for s in NEGATIVE_SIDES if s in sides)
        self.seed = int(seed)
        self.epoch = 0
        n_images = len(split.image_ids)
        images_of_code: list[set[int]] = [set() for _ in range(self.num_codes)]
        for j, i in enumerate(self.sentence_image):
            images_of_code[int(self.text_code[j])].add(int(i))
        self.images_of_code = [np.asarray(sorted(s), dtype=np.int64) for s in images_of_code]
        self.code_counts = np.bincount(self.text_code, minlength=self.num_codes)
        if "image" in self.sides and max(len(s) for s in images_of_code) >= n_images:
            raise ValueError(f"{where}: a sentence describes every image of the split; it has no negative image")
        if "text" in self.sides and any(len(codes) >= self.num_codes for codes in self.image_codes):
            raise ValueError(f"{where}: an image's captions cover every sentence of the split; it has no "
                             f"negative sentence")

    def __len__(self) -> int:
        return len(self.split.sentences)

    @property
    def lengths(self) -> np.ndarray:
        return self.tokens.lengths

    def set_epoch(self, epoch: int) -> None:
        """Select the negatives of epoch `epoch`."""
        self.epoch = int(epoch)

    def rng(self, index: int, epoch: int | None = None) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch if epoch is None else epoch, index])

    def negative_images(self, index: int, rng: np.random.Generator) -> np.ndarray:
        """`pool` distinct images (when the split has that many) none of whose captions is
        sentence `index`'s text."""
        excluded = self.images_of_code[int(self.text_code[index])]
        allowed = len(self.split.image_ids) - len(excluded)
        return _draw(rng, len(self.split.image_ids), self.pool, lambda c: ~np.isin(c, excluded), allowed)

    def negative_sentences(self, index: int, rng: np.random.Generator) -> np.ndarray:
        """`pool` distinct sentences (when possible) whose text is none of the captions of
        sentence `index`'s image."""
        codes = np.fromiter(self.image_codes[int(self.sentence_image[index])], dtype=np.int64)
        allowed = len(self.text_code) - int(self.code_counts[codes].sum())
        return _draw(rng, len(self.text_code), self.pool, lambda c: ~np.isin(self.text_code[c], codes), allowed)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = item if isinstance(item, tuple) else (self.epoch, item)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} sentences")
        rng = self.rng(index, epoch)
        record = self.image_record(int(self.sentence_image[index]))
        example: dict[str, Any] = {
            "input_ids": self.tokens[index],
            "visual_feats": record["features"],
            "visual_pos": record["boxes_norm"],
            "visual_mask": record["mask"],
            "sentid": self.split.sentence_ids[index],
        }
        if "image" in self.sides:
            records = [self.image_record(int(i)) for i in self.negative_images(index, rng)]
            example["negative_feats"] = np.stack([r["features"] for r in records])
            example["negative_pos"] = np.stack([r["boxes_norm"] for r in records])
            example["negative_mask"] = np.stack([r["mask"] for r in records])
        if "text" in self.sides:
            example["negative_ids"] = [self.tokens[int(j)] for j in self.negative_sentences(index, rng)]
        return example

    def collate(self, examples: Sequence[dict[str, Any]]) -> Batch:
        return collate_pairs(examples, self.tokenizer.pad_id)


def _draw(rng: np.random.Generator, n: int, k: int, ok: Any, allowed: int) -> np.ndarray:
    """`k` indices in [0, n) passing `ok`, distinct while `allowed` (how many pass) >= k."""
    distinct = allowed >= k
    chosen: list[int] = []
    seen: set[int] = set()
    while len(chosen) < k:
        candidates = rng.integers(0, n, size=max(2 * k, 8))
        for c in candidates[ok(candidates)]:
            c = int(c)
            if distinct and c in seen:
                continue
            seen.add(c)
            chosen.append(c)
            if len(chosen) == k:
                break
    return np.asarray(chosen, dtype=np.int64)


def collate_pairs(examples: Sequence[dict[str, Any]], pad_id: int = 0) -> Batch:
    """The positive pairs as `LxmertForImageTextMatching` inputs, plus the negative pools:
    `negative_feats` [B, K, N, D], `negative_pos` [B, K, N, 4], `negative_visual_mask`
    [B, K, N] (image side; the mask only when some image has fewer boxes) and
    `negative_ids` / `negative_attention_mask` [B, K, L'] (text side). Meta: `sentid`."""
    batch: dict[str, Any] = text_batch([e["input_ids"] for e in examples], pad_id)
    batch["visual_feats"] = stack_objects([e["visual_feats"] for e in examples], torch.float32)
    batch["visual_pos"] = stack_objects([e["visual_pos"] for e in examples], torch.float32)
    mask = stack_objects([e["visual_mask"] for e in examples])
    if "negative_feats" in examples[0]:
        b, k = len(examples), examples[0]["negative_feats"].shape[0]
        flat = [x for e in examples for x in e["negative_feats"]]
        batch["negative_feats"] = stack_objects(flat, torch.float32).view(b, k, -1, flat[0].shape[-1])
        batch["negative_pos"] = stack_objects([x for e in examples for x in e["negative_pos"]],
                                              torch.float32).view(b, k, -1, 4)
        neg_mask = stack_objects([x for e in examples for x in e["negative_mask"]]).view(b, k, -1)
        width = max(mask.shape[1], neg_mask.shape[2])
        if mask.shape[1] != width or neg_mask.shape[2] != width:
            raise ValueError(f"images of one batch have {mask.shape[1]} and {neg_mask.shape[2]} box slots; "
                             f"retrieval needs one box capacity (a feature store's max_boxes)")
        if not (bool(mask.all()) and bool(neg_mask.all())):
            batch["negative_visual_mask"] = neg_mask.long()
            batch["visual_attention_mask"] = mask.long()
    elif not bool(mask.all()):
        batch["visual_attention_mask"] = mask.long()
    if "negative_ids" in examples[0]:
        flat_ids = [x for e in examples for x in e["negative_ids"]]
        ids = pad_1d(flat_ids, pad_id)
        lengths = torch.as_tensor([len(x) for x in flat_ids])
        b, k = len(examples), len(examples[0]["negative_ids"])
        batch["negative_ids"] = ids.view(b, k, -1)
        batch["negative_attention_mask"] = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long().view(b, k, -1)
    return Batch(batch, {"sentid": [e["sentid"] for e in examples]})


class RetrievalGallery(_CaptionImages):
    """The images and sentences of an evaluation split, for scoring every pair.

    `len()` and indexing run over IMAGES (a `Limited` view keeps the first N images; their
    sentences come with them, `sentences_of_images`)."""

    has_labels = True

    def __init__(self, split: CaptionSplit, images: ImageFeatures, tokenizer: LxmertTokenizer | None = None, *,
                 max_length: int = 20, where: str = "retrieval split") -> None:
        super().__init__(split, images, tokenizer, max_length, where)

    def __len__(self) -> int:
        return len(self.split.image_ids)

    def __getitem__(self, index: int) -> str:
        return self.split.image_ids[index]

    def sentences_of_images(self, start: int, stop: int) -> np.ndarray:
        """Indices of the sentences of images [start, stop), in file order."""
        return np.flatnonzero((self.sentence_image >= start) & (self.sentence_image < stop))
