"""From pixels to the 36 region features LXMERT reads (the release's ``generate_tsv.py`` rule).

For every image: run the detector, then among the RPN proposals

1. run NMS (IoU 0.3) once per object class over the proposal boxes with that class's
   probability, and give each box the highest probability among the classes that kept it;
2. keep boxes whose score is >= 0.2; if fewer than ``min_boxes`` (36) pass, take the
   ``min_boxes`` best-scoring boxes instead (boxes suppressed everywhere score 0 and come
   last); if more than ``max_boxes`` pass, the ``max_boxes`` best;
3. report for each kept box its proposal coordinates scaled back to the original image,
   its pooled 2048-d feature (from the proposal box, not the regressed one), and the arg-max
   object and attribute with their probabilities (softmax over all classes, background /
   "no attribute" excluded from the arg-max).

Records are dicts in the TSV schema of :mod:`lxmert.features.tsv`.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from lxmert.detector.config import DetectorConfig
from lxmert.detector.model import DetectorOutput, FasterRCNN
from lxmert.detector.ops import per_class_nms_max_score
from lxmert.detector.preprocess import PreparedImage, batch_images, load_image, to_model_input

__all__ = ["FeatureExtractor", "collect_images", "extract_to_tsv", "record_to_model_inputs", "select_boxes"]


def select_boxes(boxes: torch.Tensor, fg_scores: torch.Tensor, cfg: DetectorConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the boxes to keep and each box's selection score.

    Kept boxes come best first when the top-k rule applies, and in proposal order when the
    number passing the threshold already lies in ``[min_boxes, max_boxes]`` (as the
    release's ``np.where`` returned them).

    Args:
        boxes: proposals ``[R, 4]``.
        fg_scores: foreground class probabilities ``[R, num_classes]``.
    """
    max_conf = per_class_nms_max_score(boxes, fg_scores, cfg.nms_thresh)
    passing = torch.nonzero(max_conf >= cfg.score_thresh).flatten()
    if cfg.min_boxes <= len(passing) <= cfg.max_boxes:
        # the release keeps np.where order here: proposal order (by RPN objectness)
        return passing, max_conf
    order = torch.sort(max_conf, descending=True, stable=True).indices
    n = min(cfg.min_boxes if len(passing) < cfg.min_boxes else cfg.max_boxes, len(order))
    return order[:n], max_conf


class FeatureExtractor:
    """Wraps a :class:`FasterRCNN` with preprocessing and the box-selection rule.

    ``random_init`` marks an extractor whose weights are random: its features are useless
    for anything but testing the pipeline, and :meth:`extract` records that in the
    ``random_init`` attribute so callers can warn.
    """

    def __init__(self, model: FasterRCNN, *, device: str | torch.device = "cpu", random_init: bool = False):
        self.model = model.eval().to(device)
        self.cfg = model.cfg
        self.device = torch.device(device)
        self.random_init = random_init

    @classmethod
    def from_weights(
        cls,
        weights: str | os.PathLike[str] | None,
        config: DetectorConfig | str | os.PathLike[str] | None = None,
        *,
        random_init: bool = False,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> "FeatureExtractor":
        """Build the detector and load the converted-Caffe checkpoint (or random weights).

        ``config`` is a :class:`DetectorConfig`, a path to our JSON or the demo's YAML, or
        None for the defaults. With ``random_init=True`` no weights are read.
        """
        from lxmert.detector.weights import load_frcnn_checkpoint, load_state_dict_strict, random_init_

        cfg = config if isinstance(config, DetectorConfig) else (
            DetectorConfig.from_file(config) if config is not None else DetectorConfig())
        model = FasterRCNN(cfg)
        if random_init:
            random_init_(model, seed=seed)
        else:
            if weights is None:
                raise ValueError("no detector weights given (use random_init=True for a pipeline test)")
            load_state_dict_strict(model, load_frcnn_checkpoint(weights), source=str(weights))
        return cls(model, device=device, random_init=random_init)

    # ------------------------------------------------------------------------------------
    def prepare(self, image: np.ndarray | str | os.PathLike[str]) -> PreparedImage:
        arr = load_image(image) if isinstance(image, (str, os.PathLike)) else image
        return to_model_input(arr, self.cfg)

    def detect(self, prepared: Sequence[PreparedImage]) -> list[DetectorOutput]:
        """Raw detector outputs for already prepared images, in one forward call
        (:meth:`FasterRCNN.forward` runs the images of one size through the backbone together)."""
        images, sizes = batch_images(list(prepared))
        return self.model(images.to(self.device), sizes)

    def records(self, img_ids: Sequence[str], prepared: Sequence[PreparedImage]) -> list[dict[str, Any]]:
        """TSV records for prepared images processed together in one forward pass."""
        if len(img_ids) != len(prepared):
            raise ValueError(f"{len(img_ids)} ids for {len(prepared)} images")
        outs = self.detect(prepared)
        return [self._record(i, p, o) for i, p, o in zip(img_ids, prepared, outs)]

    def extract(self, images: Iterable[tuple[str, np.ndarray | str | os.PathLike[str]]], *, batch_size: int = 1) -> Iterable[dict[str, Any]]:
        """Yield one record per ``(img_id, image)``; ``batch_size`` images per forward.

        Each image gets the boxes and features it gets alone (to float rounding where two
        images of a batch share a size, see :class:`FasterRCNN`), so the batch size is a
        speed setting only.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        ids: list[str] = []
        prepared: list[PreparedImage] = []
        for img_id, image in images:
            ids.append(img_id)
            prepared.append(self.prepare(image))
            if len(ids) == batch_size:
                yield from self.records(ids, prepared)
                ids, prepared = [], []
        if ids:
            yield from self.records(ids, prepared)

    def _record(self, img_id: str, prep: PreparedImage, out: DetectorOutput) -> dict[str, Any]:
        cfg = self.cfg
        if cfg.background_last:
            fg, attr = out.cls_probs[:, :-1], out.attr_probs[:, :-1]
        else:
            fg, attr = out.cls_probs[:, 1:], out.attr_probs[:, 1:]
        keep, _ = select_boxes(out.boxes, fg, cfg)
        obj_conf, obj_id = fg[keep].max(dim=1)
        attr_conf, attr_id = attr[keep].max(dim=1)
        sy, sx = prep.scale_yx
        boxes = out.boxes[keep].clone()
        boxes[:, 0::2] *= sx
        boxes[:, 1::2] *= sy
        h, w = prep.orig_size
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        return {
            "img_id": img_id,
            "img_h": h,
            "img_w": w,
            "num_boxes": int(len(keep)),
            "objects_id": obj_id.cpu().numpy().astype(np.int64),
            "objects_conf": obj_conf.cpu().numpy().astype(np.float32),
            "attrs_id": attr_id.cpu().numpy().astype(np.int64),
            "attrs_conf": attr_conf.cpu().numpy().astype(np.float32),
            "boxes": boxes.cpu().numpy().astype(np.float32),
            "features": out.features[keep].cpu().numpy().astype(np.float32),
        }


# --------------------------------------------------------------------------------------------
# Resumable extraction to a TSV file
# --------------------------------------------------------------------------------------------

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


def collect_images(inputs: Sequence[str | os.PathLike[str]]) -> list[tuple[str, str]]:
    """``(img_id, path)`` for image files and directories (scanned, sorted, not recursive).

    The id is the file name without its extension (``COCO_val2014_000000000042``), as in
    the released TSVs. Two files with one id are an error rather than a silent overwrite.
    """
    items: list[tuple[str, str]] = []
    for inp in inputs:
        p = os.fspath(inp)
        if os.path.isdir(p):
            names = sorted(n for n in os.listdir(p) if n.lower().endswith(IMAGE_SUFFIXES))
            items.extend((os.path.splitext(n)[0], os.path.join(p, n)) for n in names)
        elif os.path.isfile(p):
            items.append((os.path.splitext(os.path.basename(p))[0], p))
        else:
            raise FileNotFoundError(f"{p}: no such image file or directory")
    seen: dict[str, str] = {}
    for img_id, path in items:
        if img_id in seen:
            raise ValueError(f"image id {img_id!r} occurs twice: {seen[img_id]} and {path}")
        if any(c in img_id for c in "\t\r\n"):
            raise ValueError(f"{path}: image id {img_id!r} contains a tab or newline")
        seen[img_id] = path
    return items


def _scan_rows(path: str, *, truncate: bool) -> list[str]:
    """Image ids of the complete rows of a TSV; optionally cut a torn last row off.

    A row is complete when it ends with a newline and has the ten fields; only the cheap
    header fields are parsed (decoding every feature would read the file twice over).
    """
    from lxmert.features.tsv import TsvFormatError, split_header

    ids: list[str] = []
    good_end = 0
    with open(path, "rb") as f:
        pos = 0
        for lineno, line in enumerate(f, start=1):
            end = pos + len(line)
            if not line.endswith(b"\n"):
                break  # torn write: the process died inside this row
            if line.strip():
                try:
                    img_id, *_ = split_header(line, path=path, lineno=lineno)
                except TsvFormatError:
                    if truncate:
                        break
                    raise
                ids.append(img_id)
            good_end = pos = end
    if truncate and good_end != os.path.getsize(path):
        with open(path, "r+b") as f:
            f.truncate(good_end)
            f.flush()
            os.fsync(f.fileno())
    return ids


def extract_to_tsv(
    extractor: FeatureExtractor,
    items: Sequence[tuple[str, np.ndarray | str | os.PathLike[str]]],
    tsv_path: str | os.PathLike[str],
    *,
    batch_size: int = 1,
    progress: bool = True,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Extract features for ``items`` into ``tsv_path``, resuming an interrupted run.

    Rows are appended to ``<tsv>.partial`` one at a time, each flushed and fsynced, so a
    crash loses at most the image in flight; a rerun skips every image already there (and
    trims a torn last row). When all images are done the partial file is renamed to
    ``tsv_path``. A rerun that adds images to a finished TSV continues from a copy of it.

    ``provenance`` (weights file and its SHA-256, config, random-init flag) is stored in
    ``<tsv>.extraction.json``; resuming with a different detector is refused, because one
    TSV mixing two detectors' features would be silently inconsistent.

    Returns a summary dict (counts, seconds, images/s). Per-image timings are appended to
    ``<tsv>.metrics.jsonl`` (one JSON object per line, easy to plot).
    """
    import json
    import shutil
    import time

    from tqdm.auto import tqdm

    from lxmert.features.tsv import encode_row
    from lxmert.atomic import atomic_write_text

    tsv = os.fspath(tsv_path)
    partial, meta_path, metrics_path = tsv + ".partial", tsv + ".extraction.json", tsv + ".metrics.jsonl"
    os.makedirs(os.path.dirname(os.path.abspath(tsv)), exist_ok=True)
    meta = dict(provenance or {})
    meta.setdefault("random_init", extractor.random_init)
    meta.setdefault("config", extractor.cfg.to_dict())
    if os.path.exists(meta_path) and (os.path.exists(partial) or os.path.exists(tsv)):
        with open(meta_path, encoding="utf-8") as f:
            old = json.load(f)
        informational = {"batch_size", "weights"}  # a moved weights file is still the same detector
        diff = sorted(k for k in set(old) | set(meta) if k not in informational and old.get(k) != meta.get(k))
        if diff:
            raise ValueError(
                f"{tsv}: was extracted with a different detector setup (differs in {diff}); "
                f"use another --tsv or delete {tsv}, {partial} and {meta_path}"
            )
    atomic_write_text(meta_path, json.dumps(meta, indent=2, sort_keys=True) + "\n")

    if os.path.exists(partial):
        done = set(_scan_rows(partial, truncate=True))
    elif os.path.exists(tsv):
        done = set(_scan_rows(tsv, truncate=False))
        todo_ids = {i for i, _ in items} - done
        if not todo_ids:
            return {"tsv": tsv, "extracted": 0, "skipped": len(items), "seconds": 0.0, "images_per_s": None}
        shutil.copyfile(tsv, partial)
    else:
        done = set()
    todo = [(i, x) for i, x in items if i not in done]
    skipped = len(items) - len(todo)

    t0 = time.perf_counter()
    count = 0
    bar = tqdm(total=len(todo), unit="img", desc="extract", disable=not progress)
    with open(partial, "ab") as out, open(metrics_path, "a", encoding="utf-8") as log:
        last = time.perf_counter()
        for record in extractor.extract(todo, batch_size=batch_size):
            out.write(encode_row(record).encode("utf-8") + b"\n")
            out.flush()
            os.fsync(out.fileno())
            now = time.perf_counter()
            count += 1
            log.write(json.dumps({"done": skipped + count, "img_id": record["img_id"],
                                  "seconds": round(now - last, 4), "num_boxes": record["num_boxes"]}) + "\n")
            log.flush()
            last = now
            bar.update(1)
    bar.close()
    os.replace(partial, tsv)
    seconds = time.perf_counter() - t0
    return {"tsv": tsv, "extracted": count, "skipped": skipped, "seconds": seconds,
            "images_per_s": (count / seconds) if count and seconds > 0 else None}


def record_to_model_inputs(record: dict[str, Any]) -> dict[str, torch.Tensor]:
    """``visual_feats [1, n, 2048]`` and ``visual_pos [1, n, 4]`` for one extracted image.

    Boxes are normalised as the release's data loaders do: ``(x1/W, y1/H, x2/W, y2/H)``,
    which lies in [0, 1] because extraction clips boxes to the image.
    """
    boxes = torch.as_tensor(np.asarray(record["boxes"], dtype=np.float32)).clone()
    boxes[:, 0::2] /= float(record["img_w"])
    boxes[:, 1::2] /= float(record["img_h"])
    feats = torch.as_tensor(np.asarray(record["features"], dtype=np.float32))
    return {"visual_feats": feats[None], "visual_pos": boxes.clamp(0.0, 1.0)[None]}
