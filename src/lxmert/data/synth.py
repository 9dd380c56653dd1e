"""A generated world in the original file formats, for tests, demos and debugging.

`generate_world(out_dir, SynthConfig(...))` writes, in the layouts of the LXMERT release
(see docs/data.md for every field)::

    OUT/features/{train,val,test}_obj36.tsv   bottom-up-attention TSV, 36 boxes per image
    OUT/lxmert/mscoco_train.json               pre-training data (train images)
    OUT/lxmert/mscoco_minival.json             pre-training validation (val images)
    OUT/lxmert/all_ans.json                    pre-training answer table [{ans, dsets}]
    OUT/vqa/{train,minival,test}.json          + trainval_{ans2label,label2ans}.json
    OUT/gqa/{train,valid,testdev}.json         + trainval_{ans2label,label2ans}.json
    OUT/nlvr2/{train,valid,test}.json
    OUT/vocab.txt                              BERT uncased vocab (every word of the world is in it)

so that every loader of the package runs exactly as it would on the real data.

The world: each image is a scene of 3-6 objects, each with a shape, a colour, a size, a
material and a position. A simulated detector returns 36 boxes per image - the objects,
parts of them, jittered duplicates and background regions - with VG-style object and
attribute ids and confidences. Region features are a FIXED random function of the box's
true label and attributes plus noise: the function depends only on `feature_seed`, never on
the split or on `seed`, so what a model learns about features carries over between splits
and between worlds.

Language describes the scenes (captions, region descriptions, VQA- and GQA-style
questions, NLVR2-style statements about image pairs). Answers are balanced per question
template (colour answers uniform over colours, yes/no questions half yes, counts spread
over the counts present), so a text-only model cannot do much better than chance: both
language and vision are needed. `text_prior_baseline` measures exactly that.

Splits use disjoint images; only train and val images appear in the pre-training json, so
no fine-tuning test question (VQA test, GQA testdev, NLVR2 test) is ever pre-trained on.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from lxmert.utils import atomic_write_text

__all__ = [
    "SynthConfig",
    "WorldSummary",
    "SceneObject",
    "Scene",
    "generate_world",
    "generate_scene",
    "text_prior_baseline",
    "SHAPES",
    "COLOURS",
    "MATERIALS",
    "SIZES",
    "DETECTOR_OBJECT_IDS",
    "DETECTOR_ATTRIBUTE_IDS",
    "NLVR2_KINDS",
    "VQA_ANSWERS",
    "GQA_ANSWERS",
]

# --------------------------------------------------------------------------------------
# The vocabulary of the world. Every word is a whole word of the BERT uncased vocabulary,
# and every answer is also an answer of the release's 9500-answer pre-training table, so
# heads can be remapped between the world and real checkpoints by answer text.

SHAPES: tuple[str, ...] = ("ball", "block", "cylinder", "cone", "pyramid", "ring", "star", "disk")
COLOURS: tuple[str, ...] = ("red", "blue", "green", "yellow", "purple", "orange", "gray", "brown")
#: material answer word -> adjective used in sentences
MATERIALS: dict[str, str] = {"metal": "metal", "rubber": "rubber", "wood": "wooden", "glass": "glass"}
SIZES: tuple[str, ...] = ("small", "large")
PARTS: tuple[str, ...] = ("top", "edge", "side", "corner")
BACKGROUNDS: tuple[str, ...] = ("floor", "wall", "table", "shadow")
COUNT_ANSWERS: tuple[str, ...] = tuple(str(i) for i in range(7))
YES_NO: tuple[str, ...] = ("yes", "no")
SIDES: tuple[str, ...] = ("left", "right")
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven")

# Detector label spaces: ids below 1600 (objects) and 400 (attributes) like the Visual
# Genome detector. The ids are arbitrary but fixed, spread over the range on purpose so
# that nothing relies on them being small or contiguous.
DETECTOR_OBJECT_IDS: dict[str, int] = {
    name: 37 + 97 * k for k, name in enumerate(SHAPES + PARTS + BACKGROUNDS)
}
DETECTOR_ATTRIBUTE_IDS: dict[str, int] = {
    name: 11 + 23 * k for k, name in enumerate(COLOURS + tuple(MATERIALS) + SIZES)
}

VQA_ANSWERS: tuple[str, ...] = COLOURS + tuple(MATERIALS) + SHAPES + SIZES + YES_NO + COUNT_ANSWERS
GQA_ANSWERS: tuple[str, ...] = COLOURS + tuple(MATERIALS) + SHAPES + SIZES + YES_NO + SIDES

_ATTRIBUTES = ("size", "colour", "material", "shape")
_ATTRIBUTE_SPACE = {"size": SIZES, "colour": COLOURS, "material": tuple(MATERIALS), "shape": SHAPES}
_MIN_GAP = 15.0  # pixels between centres before "left of"/"above" is considered true


@dataclass
class SynthConfig:
    """Size and difficulty of a generated world.

    `images` is the total over the splits; `val_fraction` and `test_fraction` of them (at
    least one image each) go to val and test. The per-image counts set how many sentences
    of each kind an image carries; `nlvr2_per_image` sentences per image, each shown with
    `nlvr2_pairs_per_sentence` image pairs (labels computed per pair).
    """

    images: int = 1000
    seed: int = 0
    feat_dim: int = 2048
    num_boxes: int = 36
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    captions_per_image: int = 5
    vg_per_image: int = 3
    vqa_per_image: int = 5
    gqa_per_image: int = 5
    nlvr2_per_image: float = 1.0
    nlvr2_pairs_per_sentence: int = 2
    min_objects: int = 3
    max_objects: int = 6
    feature_noise: float = 0.5
    detector_label_noise: float = 0.1
    annotator_accuracy: tuple[float, float] = (0.75, 1.0)
    feature_seed: int = 9595
    #: how concepts map to feature channels: "dense" (each concept a dense random direction
    #: over all channels) or "channels" (each concept owns its own block of channels, like
    #: the concept-selective units of a CNN's last layer); see `FeatureFunction`.
    feature_code: str = "dense"
    #: NLVR2 statement kinds drawn (uniformly, repeats weight a kind); empty = all kinds of
    #: `NLVR2_KINDS` equally (the default world). E.g. ("side", "both", "one") keeps only the
    #: grounded existence statements ("the left image contains a red ball.").
    nlvr2_kinds: tuple[str, ...] = ()

    def validate(self) -> None:
        if self.images < 3:
            raise ValueError(f"images must be >= 3 (one per split at least), got {self.images}")
        if self.feat_dim < 1:
            raise ValueError(f"feat_dim must be >= 1, got {self.feat_dim}")
        if not 1 <= self.min_objects <= self.max_objects <= 6:
            raise ValueError(
                f"need 1 <= min_objects <= max_objects <= 6, got {self.min_objects}, {self.max_objects}"
            )
        max_needed = self.max_objects * 5  # object + up to 2 parts + up to 2 duplicates
        if self.num_boxes < max_needed:
            raise ValueError(f"num_boxes must be >= {max_needed} for {self.max_objects} objects, got {self.num_boxes}")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 0.5:
                raise ValueError(f"{name} must be in [0, 0.5), got {value}")
        lo, hi = self.annotator_accuracy
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"annotator_accuracy must satisfy 0 < lo <= hi <= 1, got {self.annotator_accuracy}")
        for name in ("captions_per_image", "vg_per_image", "vqa_per_image", "gqa_per_image",
                     "nlvr2_pairs_per_sentence"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.nlvr2_per_image < 0:
            raise ValueError("nlvr2_per_image must be >= 0")
        if self.feature_code not in FEATURE_CODES:
            raise ValueError(f"feature_code must be one of {FEATURE_CODES}, got {self.feature_code!r}")
        unknown = [k for k in self.nlvr2_kinds if k not in NLVR2_KINDS]
        if unknown:
            raise ValueError(f"unknown nlvr2_kinds {unknown}; choose from {NLVR2_KINDS}")

    def split_sizes(self) -> dict[str, int]:
        n_val = max(1, round(self.images * self.val_fraction))
        n_test = max(1, round(self.images * self.test_fraction))
        n_train = self.images - n_val - n_test
        if n_train < 1:
            raise ValueError(f"{self.images} images leave no training images")
        return {"train": n_train, "val": n_val, "test": n_test}


# --------------------------------------------------------------------------------------
# Scenes


@dataclass
class SceneObject:
    shape: str
    colour: str
    size: str
    material: str
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels

    @property
    def cx(self) -> float:
        return (self.box[0] + self.box[2]) / 2

    @property
    def cy(self) -> float:
        return (self.box[1] + self.box[3]) / 2

    def attr(self, name: str) -> str:
        return getattr(self, name)

    def phrase(self, attrs: Sequence[str], noun: str | None = None) -> str:
        """Noun phrase naming `attrs` in the canonical order size, colour, material, shape."""
        words = []
        for name in ("size", "colour", "material"):
            if name in attrs:
                value = self.attr(name)
                words.append(MATERIALS[value] if name == "material" else value)
        if "shape" in attrs:
            words.append(self.shape)
        else:
            words.append(noun or "object")
        return " ".join(words)


@dataclass
class Scene:
    img_id: str
    width: int
    height: int
    objects: list[SceneObject]

    def unique_subsets(self, target: SceneObject) -> list[tuple[str, ...]]:
        """Every attribute subset (canonical order) whose values pick out `target` alone; cached."""
        cache = self.__dict__.setdefault("_unique", {})
        key = id(target)
        if key not in cache:
            cache[key] = [subset for subset in _ALL_SUBSETS
                          if len(self.matching(**{a: target.attr(a) for a in subset})) == 1]
        return cache[key]

    def _bits(self, attr: str, value: str) -> int:
        """Bit set of the objects having `attr == value` (built once per scene)."""
        index = self.__dict__.get("_index")
        if index is None:
            index = {}
            for k, o in enumerate(self.objects):
                for name in _ATTRIBUTES:
                    key = (name, o.attr(name))
                    index[key] = index.get(key, 0) | (1 << k)
            self.__dict__["_index"] = index
        return index.get((attr, value), 0)

    def matching(self, **attrs: str) -> list[SceneObject]:
        bits = (1 << len(self.objects)) - 1
        for k, v in attrs.items():
            bits &= self._bits(k, v)
        return [o for i, o in enumerate(self.objects) if bits >> i & 1]

    def count(self, **attrs: str) -> int:
        bits = (1 << len(self.objects)) - 1
        for k, v in attrs.items():
            bits &= self._bits(k, v)
        return bin(bits).count("1")


def generate_scene(img_id: str, rng: random.Random, min_objects: int = 3, max_objects: int = 6) -> Scene:
    """A scene of `min_objects..max_objects` non-overlapping objects with random attributes.

    Attributes are drawn independently and uniformly, which is what makes answers about
    one attribute carry no information about another.
    """
    width = rng.randrange(480, 641, 8)
    height = rng.randrange(360, 481, 8)
    wanted = rng.randint(min_objects, max_objects)
    objects: list[SceneObject] = []
    tries = 0
    while len(objects) < wanted and tries < 200:
        tries += 1
        size = rng.choice(SIZES)
        side = rng.uniform(40, 62) if size == "small" else rng.uniform(80, 112)
        shape = rng.choice(SHAPES)
        aspect = {"cylinder": 1.3, "cone": 1.25, "pyramid": 1.1, "disk": 0.55, "ring": 0.8}.get(shape, 1.0)
        w, h = side / math.sqrt(aspect), side * math.sqrt(aspect)
        cx = rng.uniform(w / 2 + 4, width - w / 2 - 4)
        cy = rng.uniform(max(h / 2 + 4, height * 0.25), height - h / 2 - 4)
        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        if any(_overlap(box, o.box) > 0.05 for o in objects):
            continue
        objects.append(SceneObject(shape, rng.choice(COLOURS), size, rng.choice(tuple(MATERIALS)), box))
    return Scene(img_id, width, height, objects)


def _overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over the smaller box's area."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller


def _relation(a: SceneObject, b: SceneObject, rel: str) -> bool | None:
    """Truth of `a rel b`; None when the objects are too close to call it either way."""
    if rel in ("left", "right"):
        gap = b.cx - a.cx if rel == "left" else a.cx - b.cx
    else:
        gap = b.cy - a.cy if rel == "above" else a.cy - b.cy
    if abs(gap) < _MIN_GAP:
        return None
    return gap > 0


_REL_PHRASE = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}
_OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}

# --------------------------------------------------------------------------------------
# Detector simulation and features


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


def _detector_record(scene: Scene, rng: random.Random, nprng: np.random.Generator,
                     features: FeatureFunction, cfg: SynthConfig) -> dict[str, Any]:
    """The 36 boxes a bottom-up-attention detector would report for `scene`."""
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
        if rng.random() < cfg.detector_label_noise:
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
    while len(boxes) < cfg.num_boxes:  # background regions fill up to num_boxes
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


# --------------------------------------------------------------------------------------
# Language. Each generator returns None when the scene does not support it; callers then
# try another template.

_ALL_SUBSETS: tuple[tuple[str, ...], ...] = tuple(
    tuple(a for j, a in enumerate(("size", "colour", "material", "shape")) if mask >> j & 1)
    for mask in range(1, 16)
)
_DESC_SUBSETS: tuple[tuple[str, ...], ...] = (
    ("shape",), ("colour", "shape"), ("size", "shape"), ("material", "shape"),
    ("size", "colour", "shape"), ("colour", "material", "shape"), ("size", "material", "shape"),
    ("size", "colour", "material", "shape"),
)


def _allowed_subsets(exclude: frozenset[str]) -> tuple[tuple[str, ...], ...]:
    """Description subsets usable when `exclude` attributes must not be named."""
    out = []
    for subset in _DESC_SUBSETS:
        if "shape" in exclude:
            subset = tuple(a for a in subset if a != "shape")
            if not subset:
                continue
        if not exclude.intersection(subset):
            out.append(subset)
    return tuple(dict.fromkeys(out))


_ALLOWED = {frozenset(ex): _allowed_subsets(frozenset(ex))
            for ex in ((), ("size",), ("colour",), ("material",), ("shape",))}


def _unique_description(scene: Scene, target: SceneObject, rng: random.Random,
                        exclude: Iterable[str] = (), noun: str = "object") -> str | None:
    """A random description that picks out `target` alone, never naming `exclude` attributes."""
    key = frozenset(exclude)
    allowed = _ALLOWED.get(key) or _allowed_subsets(key)
    unique = set(scene.unique_subsets(target))
    usable = [subset for subset in allowed if subset in unique]
    if not usable:
        return None
    return target.phrase(rng.choice(usable), noun)


class AnswerBalancer:
    """Keeps each question family's answers near-uniform over a whole split.

    A template enumerates every question it could ask about a scene, each with its answer;
    the balancer picks, among the answers on offer, the one this family has produced
    least so far (ties broken at random), then a random question with that answer. Without
    it the distribution would follow the scenes (a count of 0 is possible in nearly every
    scene, 5 rarely; "same colour?" is mostly "no") and a text-only model could exploit it.
    Families are keyed finely (e.g. the counted attribute) so that no question string
    predicts its answer either.
    """

    def __init__(self) -> None:
        self.counts: dict[str, Counter] = defaultdict(Counter)

    def pick(self, family: str, candidates: Sequence[tuple[Any, str]], rng: random.Random) -> tuple[Any, str] | None:
        if not candidates:
            return None
        by_answer: dict[str, list[Any]] = defaultdict(list)
        for item, answer in candidates:
            by_answer[answer].append(item)
        seen = self.counts[family]
        fewest = min(seen[a] for a in by_answer)
        answer = rng.choice(sorted(a for a in by_answer if seen[a] == fewest))
        seen[answer] += 1
        return rng.choice(by_answer[answer]), answer


# A VQA template returns (family, [((sentence, answer_type, question_type), answer), ...]).
_VqaCandidates = tuple[str, list[tuple[tuple[str, str, str], str]]]
# A GQA template returns (family, [(sentence, answer), ...]).
_GqaCandidates = tuple[str, list[tuple[str, str]]]


def _q_query(scene: Scene, rng: random.Random) -> _VqaCandidates:
    attr = rng.choice(_ATTRIBUTES)
    out = []
    for target in scene.objects:
        desc = _unique_description(scene, target, rng, exclude=[attr], noun=rng.choice(("object", "thing")))
        if desc is None:
            continue
        if attr == "colour":
            q = (f"what color is the {desc}?", "other", "what color is the")
        elif attr == "material":
            q = (f"what is the {desc} made of?", "other", "what is the")
        elif attr == "size":
            q = (f"what size is the {desc}?", "other", "what")
        else:
            q = (f"what shape is the {desc}?", "other", "what")
        out.append((q, target.attr(attr)))
    return f"query:{attr}", out


def _random_description_attrs(rng: random.Random) -> tuple[str, ...]:
    return rng.choice((("shape",), ("colour", "shape"), ("material", "shape"), ("size", "shape"),
                       ("colour", "material", "shape")))


def _q_exist(scene: Scene, rng: random.Random) -> _VqaCandidates:
    subset = _random_description_attrs(rng)
    plural = rng.random() < 0.5
    options = [{a: o.attr(a) for a in subset} for o in scene.objects]
    options += [{a: rng.choice(_ATTRIBUTE_SPACE[a]) for a in subset} for _ in range(6)]
    out = []
    for values in options:
        phrase = _phrase_from_values(values)
        if plural:
            q = (f"are there any {_plural(phrase)}?", "yes/no", "are there any")
        else:
            q = (f"is there {_article(phrase)} {phrase}?", "yes/no", "is there a")
        out.append((q, "yes" if scene.count(**values) else "no"))
    return f"exist:{'+'.join(subset)}", out


def _article(phrase: str) -> str:
    return "an" if phrase[:1] in ("a", "e", "i", "o", "u") else "a"


def _a(phrase: str) -> str:
    return f"{_article(phrase)} {phrase}"


def _phrase_from_values(values: dict[str, str], noun: str = "object") -> str:
    words = [values[a] if a != "material" else MATERIALS[values[a]]
             for a in ("size", "colour", "material") if a in values]
    words.append(values.get("shape", noun))
    return " ".join(words)


def _plural(phrase: str) -> str:
    return phrase + "s"


def _q_count(scene: Scene, rng: random.Random) -> _VqaCandidates:
    attr = rng.choice(_ATTRIBUTES)
    out = []
    for value in _ATTRIBUTE_SPACE[attr]:
        noun = rng.choice(("objects", "things"))
        if attr == "shape":
            phrase = f"{value}s"
        elif attr == "material":
            phrase = f"{MATERIALS[value]} {noun}"
        else:
            phrase = f"{value} {noun}"
        out.append(((f"how many {phrase} are there?", "number", "how many"), str(scene.count(**{attr: value}))))
    return f"count:{attr}", out


_VQA_TEMPLATES: tuple[Callable[[Scene, random.Random], _VqaCandidates], ...] = (
    _q_query, _q_query, _q_exist, _q_count,
)


def _g_relate_query(scene: Scene, rng: random.Random) -> _GqaCandidates:
    attr = rng.choice(("colour", "material", "shape"))
    what = {"colour": "what color is", "material": "what material is", "shape": "what shape is"}[attr]
    out = []
    for ref in scene.objects:
        for rel in _REL_PHRASE:
            related = [o for o in scene.objects if o is not ref and _relation(o, ref, rel)]
            ambiguous = [o for o in scene.objects if o is not ref and _relation(o, ref, rel) is None]
            if len(related) != 1 or ambiguous:
                continue
            ref_desc = _unique_description(scene, ref, rng)
            if ref_desc is None:
                continue
            noun = rng.choice(("object", "thing"))
            out.append((f"{what} the {noun} {_REL_PHRASE[rel]} the {ref_desc}?", related[0].attr(attr)))
    return f"relate:{attr}", out


def _g_verify_relation(scene: Scene, rng: random.Random) -> _GqaCandidates:
    out = []
    for a in scene.objects:
        for b in scene.objects:
            if a is b:
                continue
            rel = rng.choice(tuple(_REL_PHRASE))
            truth = _relation(a, b, rel)
            if truth is None:
                continue
            da, db = _unique_description(scene, a, rng), _unique_description(scene, b, rng)
            if da is None or db is None:
                continue
            out.append((f"is the {da} {_REL_PHRASE[rel]} the {db}?", "yes" if truth else "no"))
    return "verify-relation", out


def _g_same_attribute(scene: Scene, rng: random.Random) -> _GqaCandidates:
    attr = rng.choice(("colour", "material", "shape"))
    out = []
    for i, a in enumerate(scene.objects):
        for b in scene.objects[i + 1:]:
            if rng.random() < 0.5:
                a, b = b, a
            da = _unique_description(scene, a, rng, exclude=[attr])
            db = _unique_description(scene, b, rng, exclude=[attr])
            if da is None or db is None:
                continue
            if attr == "colour":
                q = f"do the {da} and the {db} have the same color?"
            elif attr == "material":
                q = f"are the {da} and the {db} made of the same material?"
            else:
                q = f"do the {da} and the {db} have the same shape?"
            out.append((q, "yes" if a.attr(attr) == b.attr(attr) else "no"))
    return f"same:{attr}", out


def _g_choose(scene: Scene, rng: random.Random) -> _GqaCandidates:
    attr = rng.choice(("colour", "material", "size", "shape"))
    out = []
    for target in scene.objects:
        desc = _unique_description(scene, target, rng, exclude=[attr])
        if desc is None:
            continue
        answer = target.attr(attr)
        options = [answer, rng.choice([v for v in _ATTRIBUTE_SPACE[attr] if v != answer])]
        rng.shuffle(options)
        if attr == "material":
            q = f"is the {desc} made of {options[0]} or {options[1]}?"
        elif attr == "shape":
            q = f"is the {desc} a {options[0]} or a {options[1]}?"
        else:
            q = f"is the {desc} {options[0]} or {options[1]}?"
        out.append((q, answer))
    return f"choose:{attr}", out


def _g_same_colour_query(scene: Scene, rng: random.Random) -> _GqaCandidates:
    attr = rng.choice(("shape", "material"))
    out = []
    for ref in scene.objects:
        others = [o for o in scene.objects if o is not ref and o.colour == ref.colour]
        if len(others) != 1:
            continue
        desc = _unique_description(scene, ref, rng)
        if desc is None:
            continue
        if attr == "shape":
            out.append((f"what shape is the object that has the same color as the {desc}?", others[0].shape))
        else:
            out.append((f"what is the object with the same color as the {desc} made of?", others[0].material))
    return f"same-colour:{attr}", out


def _g_side(scene: Scene, rng: random.Random) -> _GqaCandidates:
    out = []
    for target in scene.objects:
        if abs(target.cx - scene.width / 2) < _MIN_GAP:
            continue
        desc = _unique_description(scene, target, rng)
        if desc is None:
            continue
        out.append((f"on which side of the image is the {desc}?", "left" if target.cx < scene.width / 2 else "right"))
    return "side", out


_GQA_TEMPLATES: tuple[Callable[[Scene, random.Random], _GqaCandidates], ...] = (
    _g_relate_query, _g_relate_query, _g_relate_query, _g_verify_relation, _g_same_attribute,
    _g_choose, _g_same_colour_query, _g_side,
)


def _caption(scene: Scene, rng: random.Random) -> str:
    objs = scene.objects
    kind = rng.randrange(6)
    full = ("size", "colour", "material", "shape")
    if kind == 0 and len(objs) >= 2:
        for _ in range(5):
            a, b = rng.sample(objs, 2)
            rel = rng.choice(tuple(_REL_PHRASE))
            if _relation(a, b, rel):
                return f"{_a(a.phrase(full))} {_REL_PHRASE[rel]} {_a(b.phrase(('colour', 'shape')))}."
    if kind == 1:
        picked = rng.sample(objs, min(3, len(objs)))
        parts = [_a(o.phrase(('colour', 'shape'))) for o in picked]
        return (", ".join(parts[:-1]) + " and " + parts[-1] + ".") if len(parts) > 1 else parts[0] + "."
    if kind == 2:
        o = rng.choice(objs)
        return f"{_a(o.phrase(('size', 'shape')))} made of {o.material} next to other objects."
    if kind == 3:
        return f"{_NUMBER_WORDS[len(objs)]} objects on the floor, one of them {_a(rng.choice(objs).phrase(('colour', 'material', 'shape')))}."
    if kind == 4:
        colour = rng.choice(objs).colour
        n = scene.count(colour=colour)
        noun = "object" if n == 1 else "objects"
        return f"a picture with {_NUMBER_WORDS[n]} {colour} {noun}."
    o = rng.choice(objs)
    side = "left" if o.cx < scene.width / 2 else "right"
    return f"{_a(o.phrase(full))} on the {side} side of the picture."


def _region_description(scene: Scene, rng: random.Random) -> str:
    o = rng.choice(scene.objects)
    kind = rng.randrange(3)
    if kind == 0:
        return o.phrase(("colour", "shape"))
    if kind == 1:
        return o.phrase(("size", "material", "shape"))
    others = [b for b in scene.objects if b is not o and _relation(o, b, "left")]
    if others:
        return f"{o.phrase(('colour', 'shape'))} left of {rng.choice(others).phrase(('shape',))}"
    return f"{o.phrase(('colour', 'shape'))} on the floor"


def _annotate(answer: str, space: Sequence[str], rng: random.Random, accuracy: tuple[float, float]) -> list[str]:
    """Ten simulated annotators: each right with a per-question probability, else a plausible mistake."""
    p = rng.uniform(*accuracy)
    wrong = [a for a in space if a != answer]
    out = []
    for _ in range(10):
        if rng.random() < p or not wrong:
            out.append(answer)
        elif answer in COUNT_ANSWERS and rng.random() < 0.7:  # counting mistakes are off by one
            k = int(answer) + rng.choice((-1, 1))
            out.append(str(min(max(k, 0), 6)))
        else:
            out.append(rng.choice(wrong))
    return out


def vqa_soft_label(answers: Sequence[str]) -> dict[str, float]:
    """The bottom-up-attention preprocessing the release reused: 0/1/2/3/>=4 votes -> 0/.3/.6/.9/1."""
    counts = Counter(answers)
    return {ans: min(1.0, round(0.3 * n, 1)) for ans, n in counts.items()}


def _answer_space(answer: str) -> tuple[str, ...]:
    for space in (YES_NO, COUNT_ANSWERS, COLOURS, tuple(MATERIALS), SHAPES, SIZES, SIDES):
        if answer in space:
            return space
    raise AssertionError(f"answer {answer!r} belongs to no answer space")


# --------------------------------------------------------------------------------------
# NLVR2 statements about (left image, right image)


#: The statement kinds, in the order of `_nlvr2_statement`'s cases: existence in one named
#: image, in both, in exactly one; a total count; a comparison of counts; "each image ...".
NLVR2_KINDS: tuple[str, ...] = ("side", "both", "one", "count", "more", "each")


def _nlvr2_statement(left: Scene, right: Scene, rng: random.Random,
                     kinds: Sequence[str] = ()) -> tuple[str, Callable[[Scene, Scene], bool]]:
    kind = NLVR2_KINDS.index(rng.choice(kinds)) if kinds else rng.randrange(len(NLVR2_KINDS))
    attrs = _random_description_attrs(rng)
    source = rng.choice(left.objects + right.objects)
    values = {a: source.attr(a) for a in attrs}
    if rng.random() < 0.3:  # sometimes a description that may be absent from both images
        values = {a: rng.choice(_ATTRIBUTE_SPACE[a]) for a in attrs}
    phrase = _phrase_from_values(values)
    article = _article(phrase)
    has = lambda s: s.count(**values) > 0  # noqa: E731
    if kind == 0:
        side = rng.choice(SIDES)
        pick = (lambda l, r: has(l)) if side == "left" else (lambda l, r: has(r))
        return f"the {side} image contains {article} {phrase}.", pick
    if kind == 1:
        return f"both images contain {article} {phrase}.", lambda l, r: has(l) and has(r)
    if kind == 2:
        return f"exactly one image contains {article} {phrase}.", lambda l, r: has(l) != has(r)
    if kind == 3:
        shape = source.shape
        n = left.count(shape=shape) + right.count(shape=shape) + rng.choice((-1, 0, 0, 1))
        n = min(max(n, 1), 7)
        noun = shape if n == 1 else f"{shape}s"
        return (f"there {'is' if n == 1 else 'are'} exactly {_NUMBER_WORDS[min(n, 7)]} {noun} in the images.",
                lambda l, r: l.count(shape=shape) + r.count(shape=shape) == n)
    if kind == 4:
        colour = source.colour
        side = rng.choice(SIDES)
        other = "right" if side == "left" else "left"
        more = (lambda l, r: l.count(colour=colour) > r.count(colour=colour)) if side == "left" else \
            (lambda l, r: r.count(colour=colour) > l.count(colour=colour))
        return f"the {side} image has more {colour} objects than the {other} image.", more
    colour = source.colour
    n = rng.choice((1, 2))
    noun = "object" if n == 1 else "objects"
    return (f"each image contains at least {_NUMBER_WORDS[n]} {colour} {noun}.",
            lambda l, r: l.count(colour=colour) >= n and r.count(colour=colour) >= n)


# --------------------------------------------------------------------------------------
# The world


@dataclass
class WorldSummary:
    """What `generate_world` wrote: paths, counts and how long it took."""

    out_dir: str
    config: dict[str, Any]
    images: dict[str, int]
    files: dict[str, int] = field(default_factory=dict)  # path relative to out_dir -> entries
    seconds: float = 0.0
    store: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


_SPLIT_FILES = {
    # our split -> (vqa file, gqa file, nlvr2 file, pre-training json or None)
    "train": ("train", "train", "train", "mscoco_train"),
    "val": ("minival", "valid", "valid", "mscoco_minival"),
    "test": ("test", "testdev", "test", None),
}


def _image_id(split: str, index: int) -> str:
    return f"synth_{split}_{index:06d}"


def generate_world(out_dir: str | Path, config: SynthConfig | None = None, *,
                   build_store: bool = False, store_dtype: str = "float32",
                   progress: bool = True, overwrite: bool = False) -> WorldSummary:
    """Write a complete generated world under `out_dir` (see the module docstring).

    Deterministic: the same config gives byte-identical files. With `build_store` the
    three TSV files are also imported into one memory-mapped store at
    `out_dir/features/store` (what the datasets read). Refuses to write into a directory
    that already holds a world unless `overwrite`.
    """
    cfg = config or SynthConfig()
    cfg.validate()
    out = Path(out_dir)
    if (out / "synth.json").exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a generated world (synth.json); pass overwrite=True / --overwrite")
    start = time.perf_counter()
    sizes = cfg.split_sizes()
    features = FeatureFunction(cfg.feat_dim, cfg.feature_seed, cfg.feature_noise, cfg.feature_code)
    summary = WorldSummary(out_dir=str(out), config=asdict(cfg), images=dict(sizes))

    from lxmert.features.tsv import write_tsv

    scenes: dict[str, list[Scene]] = {}
    for split_index, (split, n) in enumerate(sizes.items()):
        scenes[split] = [
            generate_scene(_image_id(split, i), random.Random(f"scene:{cfg.seed}:{split}:{i}"),
                           cfg.min_objects, cfg.max_objects)
            for i in range(n)
        ]
        nprng = np.random.default_rng([cfg.seed, 1, split_index])

        def records(split=split, nprng=nprng) -> Iterator[dict[str, Any]]:
            items = scenes[split]
            if progress:
                from tqdm import tqdm
                items = tqdm(items, desc=f"synth {split} features", unit="img", leave=False)
            for i, scene in enumerate(items):
                yield _detector_record(scene, random.Random(f"detector:{cfg.seed}:{split}:{i}"), nprng, features, cfg)

        rel = f"features/{split}_obj36.tsv"
        summary.files[rel] = write_tsv(out / rel, records())

    vqa_index = 0
    gqa_index = 0
    vqa_all: dict[str, list[dict]] = {}
    gqa_all: dict[str, list[dict]] = {}
    for split, scene_list in scenes.items():
        vqa_name, gqa_name, nlvr2_name, pretrain_name = _SPLIT_FILES[split]
        vqa_entries: list[dict] = []
        gqa_entries: list[dict] = []
        pretrain_entries: list[dict] = []
        vqa_balance, gqa_balance = AnswerBalancer(), AnswerBalancer()
        for i, scene in enumerate(scene_list):
            rng = random.Random(f"text:{cfg.seed}:{split}:{i}")
            captions = _distinct(_caption, scene, rng, cfg.captions_per_image)
            regions = _distinct(_region_description, scene, rng, cfg.vg_per_image)
            vqa_here = []
            for _ in range(cfg.vqa_per_image):
                picked = _ask(_VQA_TEMPLATES, scene, rng, vqa_balance)
                if picked is None:
                    continue
                (sent, answer_type, question_type), answer = picked
                raw = _annotate(answer, _answer_space(answer), rng, cfg.annotator_accuracy)
                vqa_index += 1
                entry = {
                    "answer_type": answer_type,
                    "img_id": scene.img_id,
                    "label": vqa_soft_label(raw),
                    "question_id": vqa_index,
                    "question_type": question_type,
                    "sent": sent,
                    "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1}
                                for k, a in enumerate(raw)],
                    "multiple_choice_answer": Counter(raw).most_common(1)[0][0],
                }
                vqa_here.append(entry)
            gqa_here = []
            for _ in range(cfg.gqa_per_image):
                picked = _ask(_GQA_TEMPLATES, scene, rng, gqa_balance)
                if picked is None:
                    continue
                sent, answer = picked
                gqa_index += 1
                gqa_here.append({"img_id": scene.img_id, "label": {answer: 1.0},
                                 "question_id": f"{gqa_index:08d}", "sent": sent})
            vqa_entries.extend(vqa_here)
            gqa_entries.extend(gqa_here)
            if pretrain_name is not None:
                pretrain_entries.append({
                    "img_id": scene.img_id,
                    "labelf": {"vqa": [e["label"] for e in vqa_here], "gqa": [e["label"] for e in gqa_here]},
                    "sentf": {"mscoco": captions, "vg": regions, "vqa": [e["sent"] for e in vqa_here],
                              "gqa": [e["sent"] for e in gqa_here]},
                })
        vqa_all[vqa_name] = vqa_entries
        gqa_all[gqa_name] = gqa_entries
        _write_json(out / "vqa" / f"{vqa_name}.json", vqa_entries, summary, out)
        _write_json(out / "gqa" / f"{gqa_name}.json", gqa_entries, summary, out)
        if pretrain_name is not None:
            _write_json(out / "lxmert" / f"{pretrain_name}.json", pretrain_entries, summary, out)
        nlvr2 = _nlvr2_split(scene_list, split, nlvr2_name, cfg)
        _write_json(out / "nlvr2" / f"{nlvr2_name}.json", nlvr2, summary, out)

    # The answer tables: every answer a template or an annotator can produce (the fixed
    # answer spaces), plus, as a safety net, any answer the labels actually carry, so that
    # no loader ever drops a label of the world's own questions.
    tables = {
        "vqa": set(VQA_ANSWERS) | {a for entries in vqa_all.values() for e in entries for a in e["label"]},
        "gqa": set(GQA_ANSWERS) | {a for entries in gqa_all.values() for e in entries for a in e["label"]},
    }
    for name, answers in tables.items():
        ordered = sorted(answers)
        _write_json(out / name / "trainval_ans2label.json", {a: k for k, a in enumerate(ordered)}, summary, out)
        _write_json(out / name / "trainval_label2ans.json", ordered, summary, out)
    dsets: dict[str, list[str]] = defaultdict(list)
    for name, answers in tables.items():
        for a in sorted(answers):
            dsets[a].append(name)
    _write_json(out / "lxmert" / "all_ans.json", [{"ans": a, "dsets": dsets[a]} for a in sorted(dsets)], summary, out)

    from lxmert.text import packaged_vocab_path

    (out).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(packaged_vocab_path(), out / "vocab.txt.tmp")
    (out / "vocab.txt.tmp").replace(out / "vocab.txt")

    if build_store:
        from lxmert.features.build import build_store as _build_store

        store_dir = out / "features" / "store"
        if store_dir.exists():
            shutil.rmtree(store_dir)
        _build_store([out / f"features/{s}_obj36.tsv" for s in sizes], store_dir, dtype=store_dtype,
                     progress=progress)
        summary.store = str(store_dir)
    summary.seconds = round(time.perf_counter() - start, 3)
    atomic_write_text(out / "synth.json", summary.to_json() + "\n")
    return summary


def _distinct(make: Callable[[Scene, random.Random], str], scene: Scene, rng: random.Random, n: int) -> list[str]:
    """`n` sentences from `make`, without repeats where the scene allows (a few tries)."""
    out: list[str] = []
    for _ in range(4 * n):
        if len(out) == n:
            break
        sent = make(scene, rng)
        if sent not in out:
            out.append(sent)
    while len(out) < n:
        out.append(make(scene, rng))
    return out


def _ask(templates: Sequence[Callable], scene: Scene, rng: random.Random, balancer: AnswerBalancer,
         tries: int = 20) -> Any:
    """One balanced question from a random template that has something to ask about `scene`."""
    for _ in range(tries):
        family, candidates = rng.choice(templates)(scene, rng)
        picked = balancer.pick(family, candidates, rng)
        if picked is not None:
            return picked
    return None


def _nlvr2_split(scenes: list[Scene], split: str, file_name: str, cfg: SynthConfig) -> list[dict]:
    """Sentences about image pairs, each shown with several pairs; labels balanced per sentence.

    As in NLVR2, where each sentence was written to be true of some image pairs and false
    of others, every sentence here gets as many true as false pairs (one more of either
    for an odd count, alternating), so the sentence alone says nothing about the label.
    A statement for which no true (or no false) pair turns up among random pairs is
    replaced by another.
    """
    if len(scenes) < 2 or cfg.nlvr2_pairs_per_sentence == 0:
        return []
    rng = random.Random(f"nlvr2:{cfg.seed}:{split}")
    n_sentences = max(1, round(len(scenes) * cfg.nlvr2_per_image))
    k = cfg.nlvr2_pairs_per_sentence
    entries: list[dict] = []
    extra_true = True  # which label gets the odd pair out, alternating over sentences
    for set_id in range(n_sentences):
        wanted = [True] * (k // 2) + [False] * (k // 2)
        if k % 2:
            wanted.append(extra_true)
            extra_true = not extra_true
        rng.shuffle(wanted)
        for _ in range(20):
            seed_pair = rng.sample(scenes, 2)
            sent, truth = _nlvr2_statement(seed_pair[0], seed_pair[1], rng, cfg.nlvr2_kinds)
            pairs = []
            for want in wanted:
                for _ in range(100):
                    candidate = rng.sample(scenes, 2)
                    if truth(*candidate) == want:
                        pairs.append(candidate)
                        break
                else:
                    break
            if len(pairs) == len(wanted):
                break
        else:  # a tiny split where no statement can be balanced: keep the last one, truthfully labelled
            pairs = [rng.sample(scenes, 2) for _ in wanted]
        for pair_id, (left, right) in enumerate(pairs):
            entries.append({
                "identifier": f"{file_name}-{set_id}-{pair_id}-0",
                "img0": left.img_id,
                "img1": right.img_id,
                "label": int(truth(left, right)),
                "sent": sent,
                "uid": f"nlvr2_{file_name}_{len(entries)}",
            })
    return entries


def _write_json(path: Path, data: Any, summary: WorldSummary, root: Path) -> None:
    atomic_write_text(path, json.dumps(data, separators=(",", ":")) + "\n")
    summary.files[str(path.relative_to(root))] = len(data)


# --------------------------------------------------------------------------------------
# How much can a model get from the text alone?


def text_prior_baseline(train: Sequence[dict], evaluate: Sequence[dict]) -> dict[str, float]:
    """Accuracy of text-only guessers on `evaluate` (VQA/GQA-style entries with `label`).

    `question`: the most frequent training answer for the identical question string
    (falling back to the question-type majority); `majority`: the overall most frequent
    training answer. Scores are the label score of the guess (VQA soft score, GQA 0/1).
    A balanced world keeps both far below what a model that looks at the image reaches.
    """
    def best(label: dict[str, float]) -> str:
        return max(label.items(), key=lambda kv: kv[1])[0] if label else ""

    def template(sent: str) -> str:
        return " ".join(sent.split()[:2])

    by_question: dict[str, Counter] = defaultdict(Counter)
    by_template: dict[str, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    for e in train:
        answer = best(e.get("label", {}))
        by_question[e["sent"]][answer] += 1
        by_template[template(e["sent"])][answer] += 1
        overall[answer] += 1
    if not overall or not evaluate:
        raise ValueError("text_prior_baseline needs non-empty train and evaluate entries")
    majority = overall.most_common(1)[0][0]
    score_q = score_m = 0.0
    for e in evaluate:
        label = e.get("label", {})
        counts = by_question.get(e["sent"]) or by_template.get(template(e["sent"])) or overall
        score_q += label.get(counts.most_common(1)[0][0], 0.0)
        score_m += label.get(majority, 0.0)
    n = len(evaluate)
    return {"question": score_q / n, "majority": score_m / n, "n": float(n)}
