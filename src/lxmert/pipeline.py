"""`lxmert.pipeline(task, model=...)`: images and sentences in, answers out.

The conventions of transformers' `pipeline("visual-question-answering")`:

    vqa = lxmert.pipeline("vqa", model="runs/vqa/best", detector="frcnn-vg/pytorch_model.bin")
    vqa("photo.jpg", "what is on the table?", top_k=5)   # [{"answer": "cup", "score": 0.91}, ...]
    vqa(["a.jpg", "b.jpg"], ["what colour is it?", "how many?"])   # lists batch: one list each

    vqa = lxmert.pipeline("vqa", model="demo-out/vqa/pretrained/best",
                          features="demo-out/world/features/store")
    vqa("synth_test_000003", "what colour is the ball?", return_attention=True)
    # {"answers": [...], "boxes": [[x1, y1, x2, y2], ...], "attention": [...], "image_size": [h, w], ...}

    nlvr2 = lxmert.pipeline("nlvr2", model="runs/nlvr2/best", features=STORE)
    nlvr2(("left_id", "right_id"), "the left image contains two dogs.")   # {"answer": True, "score": 0.8}

    match = lxmert.pipeline("matching", model="runs/pretrain/last", features=STORE)
    match("img_id", "a red ball next to a cube.")                          # {"score": 0.97, "match": True}

An image is a file path, a PIL image or an RGB array `[H, W, 3]` (these need the detector:
its 36 boxes are extracted first, one image per forward as the release did), or
precomputed region features: an image id of the feature store given as `features=`, a
`RegionFeatures`, or a mapping with `features [n, D]`, `boxes [n, 4]` (pixels) and the
image size (`img_h`, `img_w`) - e.g. a `FeatureStore.get` record. A string is looked up
in the store first, then as a file.

Scores: VQA/GQA heads are trained with binary cross-entropy in the release, so an
answer's score is its sigmoid (scores of different answers need not sum to 1); NLVR2 and
matching are 2-way softmax probabilities. `return_attention=True` adds the cross-attention
over the boxes: the language->object attention of the last cross-modality layer from the
[CLS] token (whose state the pooler turns into the answer), averaged over heads; it sums
to 1 over an image's boxes.

The pipeline runs one model forward per batch of examples, under a lock, so one
pipeline may be shared by threads (the server's detector workers call `regions`
concurrently; `forward` runs one batch at a time).
"""

from __future__ import annotations

import os
import sys
import threading
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from lxmert.checkpoint.files import RECIPE_NAME, resolve_checkpoint
from lxmert.data.collate import stack_objects, text_batch
from lxmert.detector import DetectorConfig, FeatureExtractor
from lxmert.errors import CheckpointError
from lxmert.features.store import FeatureStore
from lxmert.modeling import LxmertForNLVR2, LxmertForPreTraining, LxmertForQuestionAnswering, LxmertPreTrainedModel
from lxmert.text import DEFAULT_MAX_LENGTH, LxmertTokenizer
from lxmert.training.recipe import load_recipe

__all__ = ["pipeline", "Pipeline", "VQAPipeline", "NLVR2Pipeline", "MatchingPipeline", "RegionFeatures",
           "PIPELINE_TASKS", "ImageInput"]

PathLike = str | os.PathLike[str]
#: what an image may be (see the module docstring)
ImageInput = Any


# ------------------------------------------------------------------------------ region features
@dataclass(frozen=True, eq=False)
class RegionFeatures:
    """The regions of one image as the model reads them: real boxes only, no padding.

    `features [n, D]` float32, `boxes [n, 4]` pixels (x1, y1, x2, y2) on the image of
    `image_size` (height, width); `source` says where they came from ("store",
    "detector", "given"); the detector's object / attribute ids and confidences when known.
    """

    features: np.ndarray
    boxes: np.ndarray
    image_size: tuple[int, int]
    image_id: str = ""
    source: str = "given"
    object_ids: np.ndarray | None = None
    object_conf: np.ndarray | None = None
    attr_ids: np.ndarray | None = None
    attr_conf: np.ndarray | None = None
    positions: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        where = f"image {self.image_id!r}" if self.image_id else "region features"
        feats = np.asarray(self.features, dtype=np.float32)
        boxes = np.asarray(self.boxes, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[0] < 1:
            raise ValueError(f"{where}: 'features' must be [n, D] with n >= 1, got shape {feats.shape}")
        if boxes.shape != (feats.shape[0], 4):
            raise ValueError(f"{where}: 'boxes' must be [{feats.shape[0]}, 4] (one per feature row), "
                             f"got shape {boxes.shape}")
        if not (np.isfinite(feats).all() and np.isfinite(boxes).all()):
            raise ValueError(f"{where}: 'features' and 'boxes' must be finite")
        try:
            height, width = (int(v) for v in self.image_size)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: 'image_size' must be (height, width), got {self.image_size!r}") from None
        if height < 1 or width < 1:
            raise ValueError(f"{where}: image size must be positive, got (height, width) = ({height}, {width})")
        object.__setattr__(self, "features", feats)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "image_size", (height, width))
        # The loaders' rule: (x1/W, y1/H, x2/W, y2/H); stores and the detector keep boxes
        # inside the image, so the clip only guards hand-made boxes.
        scale = np.asarray([width, height, width, height], dtype=np.float32)
        object.__setattr__(self, "positions", np.clip(boxes / scale, 0.0, 1.0).astype(np.float32))

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def feat_dim(self) -> int:
        return int(self.features.shape[1])

    @classmethod
    def from_record(cls, record: Mapping[str, Any], source: str = "detector") -> "RegionFeatures":
        """From a TSV-schema record (what the detector and `FeatureStore.stored_record` give)."""
        n = int(record["num_boxes"])
        return cls(np.asarray(record["features"])[:n], np.asarray(record["boxes"])[:n],
                   (int(record["img_h"]), int(record["img_w"])), image_id=str(record.get("img_id", "")),
                   source=source, object_ids=_opt(record.get("objects_id"), n),
                   object_conf=_opt(record.get("objects_conf"), n), attr_ids=_opt(record.get("attrs_id"), n),
                   attr_conf=_opt(record.get("attrs_conf"), n))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "RegionFeatures":
        """From `{"features", "boxes", "img_h", "img_w"}` (or `"image_size": (h, w)`), e.g. a
        `FeatureStore.get` record, whose padded slots (`mask` False) are dropped."""
        missing = [k for k in ("features", "boxes") if k not in values]
        if missing:
            raise KeyError(f"region features lack {missing} (need 'features' [n, D] and 'boxes' [n, 4] in pixels)")
        if "image_size" in values:
            size = values["image_size"]
        elif "img_h" in values and "img_w" in values:
            size = (values["img_h"], values["img_w"])
        else:
            raise KeyError("region features lack the image size ('img_h' and 'img_w', or 'image_size': (h, w)); "
                           "the boxes are in pixels of that image")
        feats, boxes = np.asarray(values["features"]), np.asarray(values["boxes"])
        keep = slice(None)
        if values.get("mask") is not None:
            keep = np.asarray(values["mask"]).astype(bool)
        extra = {name: (None if values.get(key) is None else np.asarray(values[key])[keep])
                 for name, key in (("object_ids", "obj_ids"), ("object_conf", "obj_conf"),
                                   ("attr_ids", "attr_ids"), ("attr_conf", "attr_conf"))}
        return cls(feats[keep], boxes[keep], size, image_id=str(values.get("img_id", "")),
                   source=str(values.get("source", "given")), **extra)

    @classmethod
    def from_store(cls, store: FeatureStore, img_id: str) -> "RegionFeatures":
        """Image `img_id` of `store` (KeyError naming the store when it is not there)."""
        return cls.from_mapping({**store.get(img_id), "source": "store"})

    def to_record(self) -> dict[str, Any]:
        """The TSV-schema record of these regions (ids and confidences zero when unknown)."""
        n = len(self)
        zeros_i, zeros_f = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.float32)
        return {"img_id": self.image_id, "img_h": self.image_size[0], "img_w": self.image_size[1],
                "num_boxes": n,
                "objects_id": zeros_i if self.object_ids is None else self.object_ids,
                "objects_conf": zeros_f if self.object_conf is None else self.object_conf,
                "attrs_id": zeros_i if self.attr_ids is None else self.attr_ids,
                "attrs_conf": zeros_f if self.attr_conf is None else self.attr_conf,
                "boxes": self.boxes, "features": self.features}


def _opt(values: Any, n: int) -> np.ndarray | None:
    return None if values is None else np.asarray(values)[:n]


# ------------------------------------------------------------------------------ the pipelines
class Pipeline:
    """Shared machinery: resolving images to regions, batching, the model forward.

    Subclasses give the model classes they accept, the number of images per example, the
    name of the text (`text_name`) and `scores` / `postprocess`. The stages are public so
    that a server can run them apart: `regions` (image -> `RegionFeatures`, the detector's
    work), `forward` (a batch of resolved examples -> raw per-example outputs, one model
    forward) and `postprocess` (raw output -> the user's result).
    """

    task: ClassVar[str] = ""
    images_per_example: ClassVar[int] = 1
    text_name: ClassVar[str] = "text"
    model_classes: ClassVar[tuple[type, ...]] = ()

    def __init__(self, model: LxmertPreTrainedModel, tokenizer: LxmertTokenizer, *,
                 extractor: FeatureExtractor | None = None, store: FeatureStore | None = None,
                 device: str | torch.device = "cpu", max_length: int = DEFAULT_MAX_LENGTH,
                 model_path: Path | None = None) -> None:
        if not isinstance(model, self.model_classes):
            raise CheckpointError(f"{model_path or 'the model'}: holds a {type(model).__name__}; the {self.task!r} "
                                  f"pipeline needs a {' or '.join(c.__name__ for c in self.model_classes)}")
        self.check_model(model, model_path)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.model_path = model_path
        self.extractor = extractor
        self.store = store
        feat_dim = model.config.visual_feat_dim
        if store is not None and store.feat_dim != feat_dim:
            raise ValueError(f"feature store {store.path} holds {store.feat_dim}-d features, the model "
                             f"{model_path or ''} reads {feat_dim}-d ones")
        if extractor is not None and extractor.cfg.head_channels != feat_dim:
            raise CheckpointError(detector_mismatch(model_path, feat_dim, extractor.cfg.head_channels))
        self._lock = threading.Lock()

    def check_model(self, model: LxmertPreTrainedModel, path: Path | None) -> None:
        """Refuse a model of an accepted class that lacks the head this task reads."""

    # images -----------------------------------------------------------------------
    def regions(self, image: ImageInput) -> RegionFeatures:
        """The regions of one image input (see the module docstring for the forms)."""
        if isinstance(image, RegionFeatures):
            return image
        if isinstance(image, Mapping):
            return RegionFeatures.from_mapping(image)
        if isinstance(image, (str, os.PathLike)):
            name = os.fspath(image)
            if self.store is not None and name in self.store:
                return RegionFeatures.from_store(self.store, name)
            if Path(name).is_file():
                return self.detect(name, Path(name).stem)
            if self.store is not None:
                raise KeyError(f"{name!r}: neither an image id of feature store {self.store.path} nor an image file")
            raise FileNotFoundError(f"{name}: no such image file (pass features=STORE to look ids up in a store)")
        if isinstance(image, np.ndarray):
            if image.ndim == 2:
                raise ValueError("a 2-d array is ambiguous: pass region features as "
                                 "{'features': [n, D], 'boxes': [n, 4], 'img_h': H, 'img_w': W}")
            return self.detect(image, "image")
        if isinstance(image, Image.Image):
            return self.detect(np.asarray(image.convert("RGB")), "image")
        raise TypeError(f"cannot read an image from a {type(image).__name__}: give a file path, a PIL image, "
                        f"an RGB array [H, W, 3], a feature-store id or region features")

    def detect(self, image: np.ndarray | PathLike, image_id: str = "image") -> RegionFeatures:
        """Detector regions of one image file or RGB array (one image per forward, as the release)."""
        if self.extractor is None:
            raise ValueError("this pipeline has no detector: pixels need one (pipeline(..., detector=WEIGHTS)); "
                             "or give precomputed features (features=STORE and an image id)")
        with torch.inference_mode():
            prepared = self.extractor.prepare(image)
            record = self.extractor.records([image_id], [prepared])[0]
        return RegionFeatures.from_record(record, source="detector")

    # model ------------------------------------------------------------------------
    def encode(self, examples: Sequence[tuple[Sequence[RegionFeatures], str]]) -> dict[str, torch.Tensor]:
        """Model inputs of resolved examples, padded as the data loaders pad them (text to
        the longest sentence; boxes to the most boxes, with an object mask only then)."""
        for regions, _ in examples:
            for r in regions:
                if r.feat_dim != self.model.config.visual_feat_dim:
                    raise ValueError(f"image {r.image_id!r}: {r.feat_dim}-d features, the model reads "
                                     f"{self.model.config.visual_feat_dim}-d ones")
        ids = self.tokenizer.encode_batch([check_text(t, self.text_name) for _, t in examples], self.max_length)
        inputs: dict[str, torch.Tensor] = text_batch(ids, self.tokenizer.pad_id)
        if self.images_per_example == 1:
            feats = stack_objects([r[0].features for r, _ in examples], torch.float32)
            pos = stack_objects([r[0].positions for r, _ in examples], torch.float32)
            mask = stack_objects([np.ones(len(r[0]), dtype=np.int64) for r, _ in examples])
        else:
            # pad every image of every example to one box count: [B, k, N, ...]
            flat = [img for r, _ in examples for img in r]
            k = self.images_per_example
            feats = stack_objects([img.features for img in flat], torch.float32)
            feats = feats.reshape(len(examples), k, *feats.shape[1:])
            pos = stack_objects([img.positions for img in flat], torch.float32)
            pos = pos.reshape(len(examples), k, *pos.shape[1:])
            mask = stack_objects([np.ones(len(img), dtype=np.int64) for img in flat])
            mask = mask.reshape(len(examples), k, -1)
        inputs["visual_feats"] = feats
        inputs["visual_pos"] = pos
        if not bool(mask.all()):
            inputs["visual_attention_mask"] = mask.long()
        return inputs

    def forward(self, examples: Sequence[tuple[Sequence[RegionFeatures], str]],
                return_attention: bool = False) -> list[dict[str, Any]]:
        """One model forward over resolved examples -> per example `{"scores": array,
        "attention": [per image: array over its boxes] or None}`."""
        if not examples:
            return []
        for regions, _ in examples:
            if len(regions) != self.images_per_example:
                raise ValueError(f"the {self.task!r} pipeline takes {self.images_per_example} image(s) per "
                                 f"example, got {len(regions)}")
        with self._lock:
            inputs = {k: v.to(self.device) for k, v in self.encode(examples).items()}
            with torch.inference_mode():
                out = self.model(**inputs, output_attentions=return_attention)
                scores = self.scores(out).float().cpu().numpy()
                attention = None
                if return_attention:
                    # [CLS] row of the last cross layer's language->object maps, mean over heads
                    attention = out.cross_encoder_attentions[-1][:, :, 0, :].float().mean(dim=1).cpu().numpy()
        results = []
        for i, (regions, _) in enumerate(examples):
            maps = None
            if attention is not None:
                k = self.images_per_example
                maps = [attention[i * k + j, : len(r)] for j, r in enumerate(regions)]
            results.append({"scores": scores[i], "attention": maps})
        return results

    def scores(self, out: Any) -> torch.Tensor:
        """[B, K] scores from the model output."""
        raise NotImplementedError

    def postprocess(self, raw: Mapping[str, Any], regions: Sequence[RegionFeatures], *, top_k: int = 5,
                    return_attention: bool = False) -> Any:
        raise NotImplementedError

    # calls ------------------------------------------------------------------------
    def __call__(self, image: Any, text: str | Sequence[str] | None = None, *, top_k: int = 5,
                 return_attention: bool = False, batch_size: int = 16) -> Any:
        """Results for one example (image(s) + text) or for lists of them (a list back)."""
        check_top_k(top_k)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        items, single = self.examples(image, text)
        resolved = [([self.regions(img) for img in images], t) for images, t in items]
        results: list[Any] = []
        for start in range(0, len(resolved), batch_size):
            chunk = resolved[start:start + batch_size]
            for (regions, _), raw in zip(chunk, self.forward(chunk, return_attention)):
                results.append(self.postprocess(raw, regions, top_k=top_k, return_attention=return_attention))
        return results[0] if single else results

    def examples(self, image: Any, text: str | Sequence[str] | None) -> tuple[list[tuple[list[Any], str]], bool]:
        """(list of (images, text), whether the call was for a single example)."""
        if text is None:
            if _is_example_dict(image):
                return [self._from_dict(image)], True
            if isinstance(image, (list, tuple)) and image and all(_is_example_dict(e) for e in image):
                return [self._from_dict(e) for e in image], False
            raise ValueError(f"no {self.text_name}: call with (image, {self.text_name}) or "
                             f"{{'image': ..., '{self.text_name}': ...}}")
        images_batched = self.is_image_batch(image)
        text_batched = not isinstance(text, str)
        if text_batched and (not isinstance(text, Sequence) or not text):
            raise ValueError(f"{self.text_name} must be a string or a non-empty list of strings")
        if not images_batched and not text_batched:
            return [(self.image_group(image), text)], True  # type: ignore[list-item]
        images = list(image) if images_batched else None
        texts = list(text) if text_batched else None  # type: ignore[arg-type]
        if images is not None and texts is not None and len(images) != len(texts):
            raise ValueError(f"{len(images)} images for {len(texts)} {self.text_name}s: give one per image "
                             f"(or one {self.text_name} for all)")
        n = len(images) if images is not None else len(texts)  # type: ignore[arg-type]
        return [(self.image_group(images[i] if images is not None else image),
                 texts[i] if texts is not None else text) for i in range(n)], False  # type: ignore[index,misc]

    def is_image_batch(self, image: Any) -> bool:
        """Whether `image` is a list of examples' images rather than one example's."""
        if not isinstance(image, (list, tuple)):
            return False
        if not image:
            raise ValueError("empty list of images")
        return True

    def image_group(self, image: Any) -> list[Any]:
        """One example's images as a list of `images_per_example` image inputs."""
        return [image]

    def _from_dict(self, entry: Mapping[str, Any]) -> tuple[list[Any], str]:
        image = entry.get("images", entry.get("image"))
        names = (self.text_name, "text", "question", "statement", "sentence")
        text = next((entry[k] for k in names if k in entry), None)
        if text is None:
            raise KeyError(f"example {sorted(entry)} has no {self.text_name!r}")
        return self.image_group(image), text


class VQAPipeline(Pipeline):
    """Question answering (VQA, GQA, ... heads): `(image, question) -> [{"answer", "score"}]`,
    best first; scores are sigmoids (BCE-trained heads)."""

    task = "vqa"
    text_name = "question"
    model_classes = (LxmertForQuestionAnswering, LxmertForPreTraining)

    def check_model(self, model: LxmertPreTrainedModel, path: Path | None) -> None:
        if isinstance(model, LxmertForPreTraining) and not model.config.task_qa:
            raise CheckpointError(f"{path or 'the model'}: a pre-training checkpoint without a QA head "
                                  f"(task_qa false) answers no questions")

    @property
    def answers(self) -> list[str]:
        """The answer of each row of the head (`<answer i>` when the checkpoint names none)."""
        names = getattr(self.model, "answers", None)
        n = self.model.config.num_qa_labels
        return list(names) if names else [f"<answer {i}>" for i in range(n)]

    @property
    def answers_named(self) -> bool:
        return bool(getattr(self.model, "answers", None))

    def scores(self, out: Any) -> torch.Tensor:
        return torch.sigmoid(out.question_answering_score.float())

    def postprocess(self, raw: Mapping[str, Any], regions: Sequence[RegionFeatures], *, top_k: int = 5,
                    return_attention: bool = False) -> Any:
        scores = np.asarray(raw["scores"])
        k = min(check_top_k(top_k), len(scores))
        order = np.argsort(-scores, kind="stable")[:k]
        names = getattr(self.model, "answers", None)
        answers = [{"answer": names[i] if names else f"<answer {i}>", "score": float(scores[i])} for i in order]
        if not return_attention:
            return answers
        return {"answers": answers, **_attention_fields(raw, regions, single=True)}


class NLVR2Pipeline(Pipeline):
    """Is a statement true of two images? `((left, right), statement) -> {"answer": bool,
    "score": probability of that answer}`."""

    task = "nlvr2"
    images_per_example = 2
    text_name = "statement"
    model_classes = (LxmertForNLVR2,)

    def scores(self, out: Any) -> torch.Tensor:
        return torch.softmax(out.logits.float(), dim=-1)

    def is_image_batch(self, image: Any) -> bool:
        if not isinstance(image, (list, tuple)) or not image:
            raise ValueError("NLVR2 takes a pair of images (left, right), or a list of pairs")
        return isinstance(image[0], (list, tuple))

    def image_group(self, image: Any) -> list[Any]:
        if not isinstance(image, (list, tuple)) or len(image) != 2:
            raise ValueError(f"NLVR2 takes a pair of images (left, right), got {type(image).__name__}"
                             f"{f' of {len(image)}' if isinstance(image, (list, tuple)) else ''}")
        return list(image)

    def postprocess(self, raw: Mapping[str, Any], regions: Sequence[RegionFeatures], *, top_k: int = 5,
                    return_attention: bool = False) -> Any:
        p_true = float(np.asarray(raw["scores"])[1])  # label 1 = true, as the release's NLVR2 files
        result: dict[str, Any] = {"answer": p_true >= 0.5, "score": p_true if p_true >= 0.5 else 1.0 - p_true}
        if return_attention:
            result.update(_attention_fields(raw, regions, single=False))
        return result


class MatchingPipeline(Pipeline):
    """Does a sentence describe an image? The pre-training matching head
    (`cls.seq_relationship`): `(image, sentence) -> {"score": P(match), "match": bool}`."""

    task = "matching"
    text_name = "sentence"
    model_classes = (LxmertForPreTraining,)

    def scores(self, out: Any) -> torch.Tensor:
        return torch.softmax(out.cross_relationship_score.float(), dim=-1)

    def postprocess(self, raw: Mapping[str, Any], regions: Sequence[RegionFeatures], *, top_k: int = 5,
                    return_attention: bool = False) -> Any:
        p = float(np.asarray(raw["scores"])[1])  # matched_label 1 = the sentence is the image's
        result: dict[str, Any] = {"score": p, "match": p >= 0.5}
        if return_attention:
            result.update(_attention_fields(raw, regions, single=True))
        return result


def _attention_fields(raw: Mapping[str, Any], regions: Sequence[RegionFeatures], single: bool) -> dict[str, Any]:
    maps = raw.get("attention")
    if maps is None:
        raise ValueError("no attention in this output: run forward(..., return_attention=True)")
    per_image = [{"image_id": r.image_id, "image_size": list(r.image_size), "boxes": r.boxes.tolist(),
                  "attention": [float(a) for a in m]} for r, m in zip(regions, maps)]
    return per_image[0] if single else {"images": per_image}


#: task name -> pipeline class (aliases in transformers' spelling)
PIPELINE_TASKS: dict[str, type[Pipeline]] = {
    "vqa": VQAPipeline, "visual-question-answering": VQAPipeline, "gqa": VQAPipeline,
    "nlvr2": NLVR2Pipeline, "matching": MatchingPipeline, "image-text-matching": MatchingPipeline,
}


def pipeline(task: str, model: PathLike | LxmertPreTrainedModel, *, detector: PathLike | FeatureExtractor | None = None,
             detector_config: PathLike | DetectorConfig | None = None, random_init_detector: bool = False,
             features: PathLike | FeatureStore | None = None, tokenizer: LxmertTokenizer | None = None,
             device: str | torch.device = "cpu", max_length: int | None = None) -> Pipeline:
    """A ready pipeline for `task` ("vqa", "nlvr2", "matching"; see `PIPELINE_TASKS`).

    `model`: a checkpoint directory (or a training run: its last checkpoint) or a loaded
    model. `detector`: Faster R-CNN weights (pytorch_model.bin of unc-nlp/frcnn-vg-finetuned)
    or a `FeatureExtractor`, needed for pixels; `random_init_detector=True` builds one with
    random weights (tests only: the answers mean nothing). `features`: a feature store to
    look image ids up in. `max_length`: ids per sentence (default: the checkpoint's recipe,
    else 20 as the release).

    The model is loaded and checked against the detector and the store before the
    detector's weights are read, so a wrong combination fails in seconds.
    """
    cls = PIPELINE_TASKS.get(task)
    if cls is None:
        raise ValueError(f"unknown pipeline task {task!r}; choose from {sorted(PIPELINE_TASKS)}")
    model_path: Path | None = None
    if isinstance(model, LxmertPreTrainedModel):
        loaded = model
    else:
        if not Path(model).exists():
            raise FileNotFoundError(f"checkpoint {model} does not exist")
        model_path = resolve_checkpoint(model)
        loaded = LxmertPreTrainedModel.from_pretrained(model_path, map_location=device)
    if tokenizer is None:
        tokenizer = LxmertTokenizer.from_vocab(model_path if model_path is not None and model_path.is_dir() else None)
    if max_length is None:
        max_length = recipe_max_length(model_path)
    store = features if isinstance(features, FeatureStore) or features is None else FeatureStore.open(features)
    if isinstance(detector, FeatureExtractor):
        extractor: FeatureExtractor | None = detector
    elif detector is not None or random_init_detector:
        cfg = detector_config if isinstance(detector_config, DetectorConfig) else (
            DetectorConfig.from_file(detector_config) if detector_config is not None else DetectorConfig())
        if cfg.head_channels != loaded.config.visual_feat_dim:  # before reading hundreds of MB of weights
            raise CheckpointError(detector_mismatch(model_path, loaded.config.visual_feat_dim, cfg.head_channels))
        extractor = FeatureExtractor.from_weights(detector, cfg, random_init=random_init_detector, device=device)
    else:
        extractor = None
    return cls(loaded, tokenizer, extractor=extractor, store=store, device=device, max_length=max_length,
               model_path=model_path)


def recipe_max_length(checkpoint: Path | None) -> int:
    """Ids per sentence the checkpoint was trained with: its recipe.json's
    data.max_seq_length when it carries one, else the release's 20."""
    if checkpoint is None or not (checkpoint / RECIPE_NAME).is_file():
        return DEFAULT_MAX_LENGTH
    return int(load_recipe(checkpoint / RECIPE_NAME).data.max_seq_length)


def detector_mismatch(model_path: Path | None, model_dim: int, detector_dim: int) -> str:
    """The message for a model that cannot read the detector's features."""
    return (f"{model_path or 'the model'}: reads {model_dim}-d region features, the detector gives "
            f"{detector_dim}-d ones (a model trained on the built-in world's features cannot answer "
            f"about photos)")


def check_text(text: Any, what: str = "text") -> str:
    """A non-empty sentence (ValueError naming `what` otherwise)."""
    if not isinstance(text, str):
        raise TypeError(f"the {what} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"the {what} is empty")
    return text


def check_top_k(top_k: Any) -> int:
    """`top_k` as an int >= 1 (ValueError otherwise)."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
    return int(top_k)


def _is_example_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and ("image" in obj or "images" in obj)


class _CallableModule(types.ModuleType):
    """`lxmert.pipeline` is this module once anything imports it by name (the import
    system sets the package attribute to the submodule), and the `pipeline` function
    otherwise (`lxmert.__getattr__`): making the module callable keeps
    `lxmert.pipeline("vqa", ...)` working either way, as in transformers."""

    def __call__(self, task: str, model: Any, **kwargs: Any) -> Pipeline:
        return pipeline(task, model, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
