"""A simulated bottom-up-attention detector: 36 labelled boxes per scene, with features.

A scene's record (`detector_record`) lists every object (its shape as the detector label,
a share of them mislabelled with low confidence), parts of objects, jittered duplicates
and background regions, with Visual-Genome-style object/attribute ids and confidences.
Region features are a FIXED random function of the box's true label and attributes plus
noise (`FeatureFunction`): the function depends only on its seed, never on the split or
on the world's seed, so what a model learns about features carries over between splits
and between worlds.
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np

from lxmert.data.synth.scenes import COLOURS, MATERIALS, SHAPES, SIZES, Scene, SceneObject

__all__ = [
    "PARTS", "BACKGROUNDS", "DETECTOR_OBJECT_IDS", "DETECTOR_ATTRIBUTE_IDS", "FEATURE_CODES",
    "FeatureFunction", "detector_record",
]

PARTS: tuple[str, ...] = ("top", "edge", "side", "corner")
BACKGROUNDS: tuple[str, ...] = ("floor", "wall", "table", "shadow")

# Detector label spaces: ids below 1600 (objects) and 400 (attributes) like the Visual
# Genome detector. The ids are arbitrary but fixed, spread over the range on purpose so
# that nothing relies on them being small or contiguous.
DETECTOR_OBJECT_IDS: dict[str, int] = {
    name: 37 + 97 * k for k, name in enumerate(SHAPES + PARTS + BACKGROUNDS)
}
DETECTOR_ATTRIBUTE_IDS: dict[str, int] = {
    name: 11 + 23 * k for k, name in enumerate(COLOURS + tuple(MATERIALS) + SIZES)
}

#: How concepts map to feature channels (`FeatureFunction`'s `code`).
FEATURE_CODES: tuple[str, ...] = ("dense", "channels")


class FeatureFunction:
    """The fixed random map from (detector label, attributes) to region features.

    Each object and attribute name owns a code vector; a region's feature is
    ReLU(sum of its codes + noise) - non-negative and sparse like the ResNet pool5 features
    of the real detector. With `code="dense"` a code is a random Gaussian direction over all
    channels; with `code="channels"` each name owns a block of feat_dim // names channels
    (one at least, assigned in a fixed random order, scaled to the dense codes' norm; with
    fewer channels than names some names share one) and the rest stay zero apart from
    noise. The two carry the same information; a small model trained with Adam learns to
    bind words to the second somewhat sooner (docs/training.md measures both).
    """

    def __init__(self, feat_dim: int, feature_seed: int, noise: float, code: str = "dense") -> None:
        if code not in FEATURE_CODES:
            raise ValueError(f"code must be one of {FEATURE_CODES}, got {code!r}")
        rng = np.random.default_rng(feature_seed)
        self.feat_dim = feat_dim
        self.noise = noise
        if code == "dense":
            self.obj = {name: rng.standard_normal(feat_dim, dtype=np.float32) for name in DETECTOR_OBJECT_IDS}
            self.attr = {name: rng.standard_normal(feat_dim, dtype=np.float32) for name in DETECTOR_ATTRIBUTE_IDS}
            return
        names = [("obj", n) for n in DETECTOR_OBJECT_IDS] + [("attr", n) for n in DETECTOR_ATTRIBUTE_IDS]
        width = max(1, feat_dim // len(names))
        slots = rng.permutation(max(feat_dim // width, len(names)))
        codes: dict[tuple[str, str], np.ndarray] = {}
        for (table, name), slot in zip(names, slots):
            vec = np.zeros(feat_dim, dtype=np.float32)
            start = (int(slot) * width) % feat_dim
            vec[start:start + width] = math.sqrt(feat_dim / width)
            codes[(table, name)] = vec
        self.obj = {n: codes[("obj", n)] for n in DETECTOR_OBJECT_IDS}
        self.attr = {n: codes[("attr", n)] for n in DETECTOR_ATTRIBUTE_IDS}

    def __call__(self, parts: list[list[tuple[str, str, float]]], noise_scale: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
        """`parts[i]` lists (table, name, weight) terms of region i; returns float32 [n, D]."""
        out = rng.standard_normal((len(parts), self.feat_dim), dtype=np.float32)
        out *= (self.noise * noise_scale)[:, None].astype(np.float32)
        for i, terms in enumerate(parts):
            row = out[i]
            for table, name, weight in terms:
                row += weight * (self.obj[name] if table == "obj" else self.attr[name])
        np.maximum(out, 0.0, out=out)
        out *= 0.5
        return out


def detector_record(scene: Scene, rng: random.Random, nprng: np.random.Generator, features: FeatureFunction,
                    *, num_boxes: int, label_noise: float) -> dict[str, Any]:
    """The `num_boxes` boxes a bottom-up-attention detector would report for `scene`.

    Returns a record in the layout `lxmert.features.tsv.write_tsv` writes (img_id, img_h,
    img_w, num_boxes, objects_id/conf, attrs_id/conf, boxes in pixels, features). `rng`
    draws the boxes and labels, `nprng` the feature noise; `label_noise` is the share of
    object boxes given a wrong shape label. `num_boxes` must leave room for every object
    with its parts and duplicates (5 boxes per object).
    """
    boxes: list[tuple[float, float, float, float]] = []
    obj_names: list[str] = []
    obj_conf: list[float] = []
    attr_names: list[str] = []
    attr_conf: list[float] = []
    terms: list[list[tuple[str, str, float]]] = []
    noise: list[float] = []

    def add(box, obj_name, oconf, attr_name, aconf, feat_terms, noise_scale=1.0):
        x1, y1, x2, y2 = box
        x1, x2 = sorted((min(max(x1, 0.0), scene.width - 1.0), min(max(x2, 1.0), float(scene.width))))
        y1, y2 = sorted((min(max(y1, 0.0), scene.height - 1.0), min(max(y2, 1.0), float(scene.height))))
        boxes.append((x1, y1, max(x2, x1 + 1.0), max(y2, y1 + 1.0)))
        obj_names.append(obj_name)
        obj_conf.append(oconf)
        attr_names.append(attr_name)
        attr_conf.append(aconf)
        terms.append(feat_terms)
        noise.append(noise_scale)

    def object_terms(o: SceneObject) -> list[tuple[str, str, float]]:
        return [("obj", o.shape, 1.0), ("attr", o.colour, 1.0), ("attr", o.material, 0.8), ("attr", o.size, 0.6)]

    def detected_attr(o: SceneObject) -> str:
        r = rng.random()
        return o.colour if r < 0.6 else o.material if r < 0.9 else o.size

    for o in scene.objects:
        if rng.random() < label_noise:
            label, conf = rng.choice([s for s in SHAPES if s != o.shape]), rng.uniform(0.2, 0.5)
        else:
            label, conf = o.shape, rng.uniform(0.55, 0.99)
        add(o.box, label, conf, detected_attr(o), rng.uniform(0.3, 0.9), object_terms(o))
    for o in scene.objects:
        x1, y1, x2, y2 = o.box
        w, h = x2 - x1, y2 - y1
        for _ in range(rng.randint(1, 2)):  # parts: a sub-box sharing the object's colour
            part = rng.choice(PARTS)
            fx, fy = rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.6)
            px, py = x1 + rng.uniform(0, 1 - fx) * w, y1 + rng.uniform(0, 1 - fy) * h
            add((px, py, px + fx * w, py + fy * h), part, rng.uniform(0.2, 0.6), o.colour,
                rng.uniform(0.2, 0.7), [("obj", part, 1.0), ("attr", o.colour, 0.7), ("obj", o.shape, 0.3)])
        for _ in range(rng.randint(1, 2)):  # duplicates: a jittered box around the object
            jit = [rng.uniform(-0.25, 0.25) * (w if k % 2 == 0 else h) for k in range(4)]
            add((x1 + jit[0], y1 + jit[1], x2 + jit[2], y2 + jit[3]), o.shape, rng.uniform(0.2, 0.6),
                detected_attr(o), rng.uniform(0.2, 0.6), object_terms(o), noise_scale=2.0)
    while len(boxes) < num_boxes:  # background regions fill up to num_boxes
        name, colour = rng.choice(BACKGROUNDS), rng.choice(COLOURS)
        bw, bh = rng.uniform(0.2, 0.9) * scene.width, rng.uniform(0.15, 0.6) * scene.height
        bx, by = rng.uniform(0, scene.width - bw), rng.uniform(0, scene.height - bh)
        add((bx, by, bx + bw, by + bh), name, rng.uniform(0.2, 0.7), colour, rng.uniform(0.2, 0.6),
            [("obj", name, 1.0), ("attr", colour, 0.5)])

    order = list(range(len(boxes)))
    rng.shuffle(order)  # box order carries no information
    feats = features([terms[i] for i in order], np.asarray([noise[i] for i in order]), nprng)
    return {
        "img_id": scene.img_id,
        "img_h": scene.height,
        "img_w": scene.width,
        "num_boxes": len(order),
        "objects_id": np.asarray([DETECTOR_OBJECT_IDS[obj_names[i]] for i in order], dtype=np.int64),
        "objects_conf": np.asarray([obj_conf[i] for i in order], dtype=np.float32),
        "attrs_id": np.asarray([DETECTOR_ATTRIBUTE_IDS[attr_names[i]] for i in order], dtype=np.int64),
        "attrs_conf": np.asarray([attr_conf[i] for i in order], dtype=np.float32),
        "boxes": np.asarray([boxes[i] for i in order], dtype=np.float32),
        "features": feats,
    }
