"""Image-text retrieval with the pre-trained cross-modality matching head (docs/retrieval.md).

Data: a Karpathy-split file (`dataset_coco.json`, `dataset_flickr30k.json`, the world's
`retrieval/dataset_world.json`; `[retrieval] file`), its images keyed to the feature store
by `[retrieval] image_key` (`lxmert.data.karpathy`); `data.train` / `data.valid` /
`data.test` name the file's splits ("train", "restval", "val", "test").

Model: `LxmertForImageTextMatching`, the encoder plus `cls.seq_relationship`; from a
pre-training checkpoint the head is the pre-trained one (fine-tuning starts from it, and
`lxmert evaluate retrieval --checkpoint PRETRAINED --config RECIPE` scores zero-shot).

Fine-tuning: each step takes `train.batch_size` sentences with their images and, per
side in `negative_sides`, `negatives` negatives: the sentence with another image
("image") and the image with another sentence ("text"). With `hard_pool` > 0 the
negatives are the hardest of `hard_pool` random candidates under the current model
(scored without gradients, in eval mode, through the cached path), as UNITER and VILLA
mine them; before `hard_from_epoch` they are random. `loss = "binary"`: the pre-training
matching cross-entropy, positives and negatives weighing equally; `"ranking"`: UNITER's
hinge, mean of max(0, margin - p(pos) + p(neg)) over the negatives, p = P(matched).

Evaluation scores every (image, sentence) pair of the split (with `fold_size` = N: of
each consecutive fold of N images, metrics averaged over the folds: COCO 1k is
fold_size = 1000 on the 5k test images) with the cached path (`lxmert.modeling.matching`): Recall@1/5/10 text ->
image and image -> text, RSUM (the sum of the six, in points, max 600, as published) and
`mean_recall` (RSUM / 600, a fraction). Strict recall counts only the annotated pair;
`*_dup` keys count any image or sentence with the same text (`lxmert.data.retrieval.
same_text`): a caption shared word for word by several images is then found by each of
them. The best checkpoint is the one of the highest strict `rsum`. `rerank_top_k` > 0
switches to two-stage scoring (a cheap first stage, then the cross layers on each query's
top k only): faster, and approximate - docs/retrieval.md measures its recall loss.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from lxmert.atomic import atomic_write_text
from lxmert.checkpoint.files import read_checkpoint
from lxmert.checkpoint.layouts import canonicalize, infer_class_name
from lxmert.data.karpathy import CaptionSplit, read_karpathy
from lxmert.data.retrieval import NEGATIVE_SIDES, RetrievalGallery, RetrievalPairs
from lxmert.errors import RecipeError
from lxmert.evaluation.retrieval import RECALL_AT, first_hits, recall_metrics
from lxmert.modeling import LxmertForImageTextMatching
from lxmert.modeling.matching import (EncodedImages, EncodedText, attention_scores, cosine_scores,
                                      score_grid)
from lxmert.tasks import register_task
from lxmert.training.recipe import Recipe
from lxmert.training.task import Predictions, Task, under_root

__all__ = ["RetrievalOptions", "RetrievalTask", "RECALL_AT", "recall_metrics", "first_hits", "FIRST_STAGES",
           "RETRIEVAL_LOSSES", "unwrap_model"]

#: the K of Recall@K
FIRST_STAGES = ("attention", "cosine")
RETRIEVAL_LOSSES = ("binary", "ranking")


@dataclass
class RetrievalOptions:
    """The `[retrieval]` section (see the module docstring)."""

    #: the Karpathy-split file, relative to the data root (or absolute)
    file: str = "retrieval/dataset_world.json"
    #: how images are keyed to the feature store: "stem" (file name without extension) or a
    #: template over the image's fields, e.g. "COCO_val2014_{cocoid:012d}"
    image_key: str = "stem"
    #: negatives trained on per positive and side
    negatives: int = 1
    negative_sides: list[str] = field(default_factory=lambda: list(NEGATIVE_SIDES))
    #: candidates per positive and side that the current model scores to pick the hardest
    #: `negatives` (0: no mining, random negatives)
    hard_pool: int = 0
    hard_from_epoch: int = 0
    loss: str = "binary"
    margin: float = 0.2
    #: evaluation: 0 = one gallery of the whole split; N = consecutive folds of N images,
    #: each scored on its own, metrics averaged (COCO 1k: 1000 on the 5k test images)
    fold_size: int = 0
    #: length of each written ranking (>= 10 for Recall@10)
    top_k: int = 10
    #: (image, sentence) pairs per cross-modality forward when scoring
    pair_batch: int = 1024
    #: 0: score every pair (the figure to report); k: re-rank each query's top k of the
    #: cheap `first_stage` score
    rerank_top_k: int = 0
    first_stage: str = "attention"

    def problems(self) -> list[str]:
        """What is wrong with these values (empty when nothing), for the recipe's error."""
        out = []
        if not self.file:
            out.append("retrieval.file is empty (the Karpathy-split json, relative to the data root)")
        if not self.image_key:
            out.append("retrieval.image_key is empty (\"stem\" or a template such as \"{cocoid}\")")
        if self.negatives < 1:
            out.append(f"retrieval.negatives = {self.negatives} (must be >= 1)")
        bad = [s for s in self.negative_sides if s not in NEGATIVE_SIDES]
        if bad or not self.negative_sides or len(set(self.negative_sides)) != len(self.negative_sides):
            out.append(f"retrieval.negative_sides = {self.negative_sides} (one or both of "
                       f"{', '.join(NEGATIVE_SIDES)}, each once)")
        if self.hard_pool < 0 or 0 < self.hard_pool <= self.negatives:
            out.append(f"retrieval.hard_pool = {self.hard_pool} (0 for random negatives, or more candidates "
                       f"than retrieval.negatives = {self.negatives} to pick the hardest from)")
        if self.hard_from_epoch < 0:
            out.append(f"retrieval.hard_from_epoch = {self.hard_from_epoch} (must be >= 0)")
        if self.loss not in RETRIEVAL_LOSSES:
            out.append(f"retrieval.loss = {self.loss!r} (expected {' or '.join(RETRIEVAL_LOSSES)})")
        if self.margin < 0:
            out.append(f"retrieval.margin = {self.margin} (must be >= 0)")
        if self.fold_size < 0:
            out.append(f"retrieval.fold_size = {self.fold_size} (0 = the whole split, or images per fold)")
        if self.top_k < max(RECALL_AT):
            out.append(f"retrieval.top_k = {self.top_k} (must be >= {max(RECALL_AT)} for Recall@{max(RECALL_AT)})")
        if self.pair_batch < 1:
            out.append(f"retrieval.pair_batch = {self.pair_batch} (must be >= 1)")
        if self.rerank_top_k < 0 or 0 < self.rerank_top_k < self.top_k:
            out.append(f"retrieval.rerank_top_k = {self.rerank_top_k} (0 = score every pair, or >= "
                       f"retrieval.top_k = {self.top_k})")
        if self.first_stage not in FIRST_STAGES:
            out.append(f"retrieval.first_stage = {self.first_stage!r} (expected {' or '.join(FIRST_STAGES)})")
        return out


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module under DDP / `torch.compile` wrappers (mining and the cached path
    call its methods directly, outside the wrappers' forward)."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod  # type: ignore[assignment]
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


@register_task("retrieval")
class RetrievalTask(Task):
    """Image-text retrieval: the matching head scores every (image, sentence) pair."""

    folder = "retrieval"
    model_class = LxmertForImageTextMatching
    default_recipe = "retrieval"
    main_metric = "rsum"
    id_key = "sentid"
    options_class = RetrievalOptions

    def __init__(self, recipe: Recipe, data_dir: str | os.PathLike) -> None:
        super().__init__(recipe, data_dir)
        self.options: RetrievalOptions = recipe.options
        if recipe.adv.modalities:
            raise RecipeError("retrieval: [adv] (adversarial fine-tuning) is not supported here; its loss "
                              "perturbs one forward per batch, retrieval's runs positives and mined negatives")
        self.file = under_root(self.data_dir, self.options.file)
        if not self.file.is_file():
            raise FileNotFoundError(f"{self.file}: no Karpathy-split file (recipe retrieval.file)")

    # data ----------------------------------------------------------------------------
    def split_files(self, splits: list[str] | str) -> list[Path]:
        """Every split lives in the one Karpathy file."""
        return [self.file]

    def read_split(self, splits: list[str] | str) -> CaptionSplit:
        """The named splits of the Karpathy file, keyed by `retrieval.image_key`."""
        try:
            return read_karpathy(self.file, splits, self.options.image_key)
        except ValueError as err:
            if type(err) is not ValueError:  # DataFormatError names the file itself
                raise
            raise ValueError(f"{self.file}: {err} (recipe data.train/valid/test, retrieval.image_key)") from None

    def make_dataset(self, splits: list[str] | str, train: bool) -> Dataset:
        split = self.read_split(splits)
        max_length = self.recipe.data.max_seq_length
        if train:
            o = self.options
            return RetrievalPairs(split, self.images, self.tokenizer, max_length=max_length,
                                  pool=max(o.negatives, o.hard_pool), sides=o.negative_sides,
                                  seed=self.recipe.train.seed, where=str(self.file))
        return RetrievalGallery(split, self.images, self.tokenizer, max_length=max_length, where=str(self.file))

    # model ---------------------------------------------------------------------------
    def load_model(self, checkpoint: str | os.PathLike) -> nn.Module:
        """A retrieval checkpoint, loaded strictly; or a pre-training checkpoint, whose
        matching head is the one pre-training trained: zero-shot retrieval (its other
        heads are dropped, with a warning). Any other checkpoint has no matching head and
        is refused, as by every task."""
        stored = read_checkpoint(checkpoint)
        name = stored.class_name or (None if stored.int8 else infer_class_name(canonicalize(stored.state)))
        if name == "LxmertForPreTraining":
            return self.model_class.from_pretrained(checkpoint, strict=False)
        return self.model_class.from_pretrained(checkpoint)

    # training ------------------------------------------------------------------------
    def ddp_find_unused_parameters(self) -> bool:
        return True  # the head reads the pooled language vector only

    def loss(self, model: nn.Module, inputs: dict[str, Any], epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        o = self.options
        b = inputs["input_ids"].shape[0]
        hard = o.hard_pool > 0 and epoch >= o.hard_from_epoch
        chosen = self.mine_negatives(unwrap_model(model), inputs) if hard else {
            side: torch.arange(o.negatives, device=inputs["input_ids"].device).expand(b, -1)
            for side in o.negative_sides}
        pairs = self.pair_inputs(inputs, chosen)
        out = model(**pairs)
        scores = out.scores
        if o.loss == "binary":
            logits = out.logits.float()
            pos = F.cross_entropy(logits[:b], torch.ones(b, dtype=torch.long, device=logits.device))
            neg = F.cross_entropy(logits[b:], torch.zeros(len(logits) - b, dtype=torch.long, device=logits.device))
            loss = 0.5 * (pos + neg)
        else:
            p = torch.sigmoid(scores)  # P(matched); negatives come side by side, o.negatives per positive
            positive = p[:b].repeat_interleave(o.negatives).repeat(len(o.negative_sides))
            loss = F.relu(o.margin - positive + p[b:]).mean()
        return loss, {"positive_score": scores[:b].mean(), "negative_score": scores[b:].mean()}

    @torch.no_grad()
    def mine_negatives(self, model: LxmertForImageTextMatching, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The `negatives` hardest of each pool (highest score under `model` in eval mode,
        without gradients, by the cached path): {side: [B, negatives] pool indices}."""
        o = self.options
        was_training = model.training
        model.eval()
        try:
            chosen: dict[str, torch.Tensor] = {}
            b = inputs["input_ids"].shape[0]
            if "image" in o.negative_sides:
                k = inputs["negative_feats"].shape[1]
                text = model.encode_text(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"])
                mask = inputs.get("negative_visual_mask")
                images = model.encode_images(inputs["negative_feats"].flatten(0, 1),
                                             inputs["negative_pos"].flatten(0, 1),
                                             None if mask is None else mask.flatten(0, 1))
                rows = torch.arange(b * k, device=text.states.device)
                scores = model.pair_scores(text, images, rows // k, rows).view(b, k)
                chosen["image"] = scores.topk(o.negatives, dim=1).indices
            if "text" in o.negative_sides:
                k = inputs["negative_ids"].shape[1]
                images = model.encode_images(inputs["visual_feats"], inputs["visual_pos"],
                                             inputs.get("visual_attention_mask"))
                text = model.encode_text(inputs["negative_ids"].flatten(0, 1),
                                         inputs["negative_attention_mask"].flatten(0, 1))
                rows = torch.arange(b * k, device=images.states.device)
                scores = model.pair_scores(text, images, rows, rows // k).view(b, k)
                chosen["text"] = scores.topk(o.negatives, dim=1).indices
            return chosen
        finally:
            model.train(was_training)

    def pair_inputs(self, inputs: dict[str, Any], chosen: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One forward batch: the B positives, then per positive its chosen image negatives
        (the sentence with other images), then its text negatives (the image with other
        sentences)."""
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        feats, pos = inputs["visual_feats"], inputs["visual_pos"]
        vmask = inputs.get("visual_attention_mask")
        b = ids.shape[0]
        texts, text_masks = [ids], [mask]
        vis, vis_pos, vis_masks = [feats], [pos], [vmask]
        rows = torch.arange(b, device=ids.device)[:, None]
        if "image" in chosen:
            pick = chosen["image"]
            h = pick.shape[1]
            texts.append(ids.repeat_interleave(h, 0))
            text_masks.append(mask.repeat_interleave(h, 0))
            vis.append(inputs["negative_feats"][rows, pick].flatten(0, 1))
            vis_pos.append(inputs["negative_pos"][rows, pick].flatten(0, 1))
            neg_mask = inputs.get("negative_visual_mask")
            vis_masks.append(None if neg_mask is None else neg_mask[rows, pick].flatten(0, 1))
        if "text" in chosen:
            pick = chosen["text"]
            h = pick.shape[1]
            texts.append(inputs["negative_ids"][rows, pick].flatten(0, 1))
            text_masks.append(inputs["negative_attention_mask"][rows, pick].flatten(0, 1))
            vis.append(feats.repeat_interleave(h, 0))
            vis_pos.append(pos.repeat_interleave(h, 0))
            vis_masks.append(None if vmask is None else vmask.repeat_interleave(h, 0))
        width = max(t.shape[1] for t in texts)
        pad = self.tokenizer.pad_id
        input_ids = torch.cat([F.pad(t, (0, width - t.shape[1]), value=pad) for t in texts])
        attention_mask = torch.cat([F.pad(m, (0, width - m.shape[1])) for m in text_masks])
        out = {"input_ids": input_ids, "attention_mask": attention_mask,
               "token_type_ids": torch.zeros_like(input_ids),
               "visual_feats": torch.cat(vis), "visual_pos": torch.cat(vis_pos)}
        if any(m is not None for m in vis_masks):
            out["visual_attention_mask"] = torch.cat(
                [m if m is not None else torch.ones(v.shape[:2], dtype=torch.long, device=v.device)
                 for m, v in zip(vis_masks, vis, strict=True)])
        return out

    # evaluation ----------------------------------------------------------------------
    def encode_gallery(self, model: LxmertForImageTextMatching, dataset: Dataset, n_images: int,
                       sentences: np.ndarray, device: torch.device) -> tuple[EncodedImages, EncodedText]:
        """Every image and every sentence encoded once (the single-modality caches)."""
        size = self.eval_batch_size
        image_parts, text_parts = [], []
        for start in range(0, n_images, size):
            batch = dataset.image_batch(range(start, min(n_images, start + size)))  # type: ignore[attr-defined]
            image_parts.append(model.encode_images(**{k: v.to(device) for k, v in batch.items()}))
        for start in range(0, len(sentences), size):
            batch = dataset.text_batch(sentences[start:start + size])  # type: ignore[attr-defined]
            text_parts.append(model.encode_text(**{k: v.to(device) for k, v in batch.items()}))
        return EncodedImages.cat(image_parts), EncodedText.cat(text_parts)

    def two_stage_grid(self, model: LxmertForImageTextMatching, text: EncodedText,
                       images: EncodedImages) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(cross scores [I, S] of the scored pairs, -inf elsewhere; t2i / i2t candidate
        masks packed as [2, I, S] bool; number of pairs scored)."""
        o = self.options
        first = attention_scores(model, text, images) if o.first_stage == "attention" else cosine_scores(text, images)
        n_images, n_text = first.shape
        t2i = torch.zeros_like(first, dtype=torch.bool)
        t2i.scatter_(0, first.topk(min(o.rerank_top_k, n_images), dim=0).indices, True)
        i2t = torch.zeros_like(first, dtype=torch.bool)
        i2t.scatter_(1, first.topk(min(o.rerank_top_k, n_text), dim=1).indices, True)
        image_rows, text_rows = torch.nonzero(t2i | i2t, as_tuple=True)
        grid = torch.full_like(first, float("-inf"))
        device = text.states.device
        for start in range(0, len(image_rows), o.pair_batch):
            i = image_rows[start:start + o.pair_batch]
            s = text_rows[start:start + o.pair_batch]
            grid[i, s] = model.pair_scores(text, images, s.to(device), i.to(device)).float().cpu()
        return grid, torch.stack([t2i, i2t]), len(image_rows)

    @torch.no_grad()
    def predict(self, model: nn.Module, dataset: Dataset, device: torch.device) -> Predictions:
        """Rankings of every query of the split (or of each fold): {"text_to_image":
        {sentid: {"images", "scores"}}, "image_to_text": {image id: {"sentids", "scores"}},
        "folds": [image ids of each fold], "scored_pairs", "pairs"}."""
        o = self.options
        inner = unwrap_model(model)
        n_images = len(dataset)  # type: ignore[arg-type]
        fold_size = o.fold_size if 0 < o.fold_size < n_images else n_images
        if n_images % fold_size:
            raise ValueError(f"{n_images} images do not split into folds of retrieval.fold_size = {o.fold_size}")
        split = dataset.split  # type: ignore[attr-defined]
        sentences = dataset.sentences_of_images(0, n_images)  # type: ignore[attr-defined]
        images, text = self.encode_gallery(inner, dataset, n_images, sentences, device)
        position = {int(j): p for p, j in enumerate(sentences)}
        t2i: dict[int, dict[str, list]] = {}
        i2t: dict[str, dict[str, list]] = {}
        folds, scored, pairs = [], 0, 0
        for f in range(n_images // fold_size):
            lo, hi = f * fold_size, (f + 1) * fold_size
            fold_sentences = dataset.sentences_of_images(lo, hi)  # type: ignore[attr-defined]
            rows = torch.as_tensor([position[int(j)] for j in fold_sentences], device=text.states.device)
            fold_text = text.select(rows)
            fold_images = images.select(torch.arange(lo, hi, device=images.states.device))
            if o.rerank_top_k:
                grid, candidates, n_scored = self.two_stage_grid(inner, fold_text, fold_images)
                t2i_grid = grid.masked_fill(~candidates[0], float("-inf"))
                i2t_grid = grid.masked_fill(~candidates[1], float("-inf"))
            else:
                grid = score_grid(inner, fold_text, fold_images, pair_batch=o.pair_batch)
                t2i_grid = i2t_grid = grid
                n_scored = grid.numel()
            scored += n_scored
            pairs += grid.numel()
            image_ids = split.image_ids[lo:hi]
            folds.append(list(image_ids))
            top = t2i_grid.topk(min(o.top_k, hi - lo), dim=0)
            for c, j in enumerate(fold_sentences):
                t2i[split.sentence_ids[j]] = {"images": [image_ids[i] for i in top.indices[:, c].tolist()],
                                              "scores": top.values[:, c].tolist()}
            top = i2t_grid.topk(min(o.top_k, len(fold_sentences)), dim=1)
            for r, img in enumerate(image_ids):
                i2t[img] = {"sentids": [split.sentence_ids[fold_sentences[c]] for c in top.indices[r].tolist()],
                            "scores": top.values[r].tolist()}
        by_id = {"text_to_image": t2i, "image_to_text": i2t, "folds": folds, "scored_pairs": scored, "pairs": pairs}
        return Predictions(by_id, None)

    def score(self, predictions: dict[Any, Any], dataset: Dataset) -> dict[str, float]:
        """Strict and same-text Recall@1/5/10, RSUM and mean recall, averaged over folds
        (and `images` / `sentences` per fold, `folds`, `scored_pair_fraction`)."""
        split = dataset.split  # type: ignore[attr-defined]
        codes = dataset.text_code  # type: ignore[attr-defined]
        image_codes = dataset.image_codes  # type: ignore[attr-defined]
        image_index = {img: i for i, img in enumerate(split.image_ids)}
        sentence_index = {sid: j for j, sid in enumerate(split.sentence_ids)}
        own = dataset.split.image_sentences()  # type: ignore[attr-defined]
        t2i, i2t = predictions["text_to_image"], predictions["image_to_text"]
        per_fold: list[dict[str, float]] = []
        n_sentences = 0
        for fold in predictions["folds"]:
            rows = [image_index[img] for img in fold]
            sents = [j for i in rows for j in own[i]]
            n_sentences += len(sents)
            missing = [split.sentence_ids[j] for j in sents if split.sentence_ids[j] not in t2i]
            missing += [split.image_ids[i] for i in rows if split.image_ids[i] not in i2t]
            if missing:
                raise KeyError(f"{len(missing)} queries have no ranking, e.g. {missing[:3]!r}")
            t2i_rank = [[image_index[x] for x in t2i[split.sentence_ids[j]]["images"]] for j in sents]
            i2t_rank = [[sentence_index[x] for x in i2t[split.image_ids[i]]["sentids"]] for i in rows]
            strict = recall_metrics(
                first_hits(t2i_rank, [{int(split.sentence_image[j])} for j in sents]),
                first_hits(i2t_rank, [set(own[i]) for i in rows]))
            dup = recall_metrics(
                first_hits(t2i_rank, [(lambda i, c=int(codes[j]): c in image_codes[i]) for j in sents]),
                first_hits(i2t_rank, [(lambda j, c=image_codes[i]: int(codes[j]) in c) for i in rows]),
                suffix="_dup")
            per_fold.append({**strict, **dup})
        keys = list(per_fold[0])
        out = {k: float(np.mean([m[k] for m in per_fold])) for k in keys}
        if len(per_fold) > 1:
            for f, m in enumerate(per_fold):
                out[f"fold{f}/rsum"] = m["rsum"]
        out["images"] = float(sum(len(f) for f in predictions["folds"]) / len(predictions["folds"]))
        out["sentences"] = float(n_sentences / len(predictions["folds"]))
        out["folds"] = float(len(predictions["folds"]))
        out["scored_pair_fraction"] = float(predictions["scored_pairs"]) / max(1, int(predictions["pairs"]))
        return out

    def write_predictions(self, path: str | os.PathLike, predictions: dict[Any, Any]) -> Path:
        """The rankings as JSON: `{"text_to_image": [{"sentid", "images", "scores"}],
        "image_to_text": [{"image", "sentids", "scores"}], "folds": [[image ids]],
        "rerank_top_k", "first_stage"}` (scores: log-odds of "matched", best first)."""
        o = self.options
        data = {
            "text_to_image": [{"sentid": sid, **r} for sid, r in predictions["text_to_image"].items()],
            "image_to_text": [{"image": img, **r} for img, r in predictions["image_to_text"].items()],
            "folds": predictions["folds"],
            "rerank_top_k": o.rerank_top_k,
            "first_stage": o.first_stage if o.rerank_top_k else None,
        }
        path = Path(path)
        atomic_write_text(path, json.dumps(data) + "\n")
        return path
