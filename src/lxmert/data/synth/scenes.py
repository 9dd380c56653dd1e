"""Scenes of the generated world: objects with a shape, colour, size, material and a box.

Everything else of the world (detections, sentences, pictures) is computed from a `Scene`,
so this module depends on nothing else of the package.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Sequence

__all__ = [
    "SHAPES", "COLOURS", "MATERIALS", "SIZES", "ATTRIBUTES", "ATTRIBUTE_SPACE", "MIN_GAP",
    "SceneObject", "Scene", "generate_scene", "relation",
]

# The vocabulary of the world. Every word is a whole word of the BERT uncased vocabulary,
# and every answer is also an answer of the release's 9500-answer pre-training table, so
# heads can be remapped between the world and real checkpoints by answer text.

SHAPES: tuple[str, ...] = ("ball", "block", "cylinder", "cone", "pyramid", "ring", "star", "disk")
COLOURS: tuple[str, ...] = ("red", "blue", "green", "yellow", "purple", "orange", "gray", "brown")
#: material answer word -> adjective used in sentences
MATERIALS: dict[str, str] = {"metal": "metal", "rubber": "rubber", "wood": "wooden", "glass": "glass"}
SIZES: tuple[str, ...] = ("small", "large")

#: The attributes of an object, in the canonical order in which phrases name them.
ATTRIBUTES: tuple[str, ...] = ("size", "colour", "material", "shape")
#: attribute -> every value it can take
ATTRIBUTE_SPACE: dict[str, tuple[str, ...]] = {
    "size": SIZES, "colour": COLOURS, "material": tuple(MATERIALS), "shape": SHAPES,
}
#: pixels between centres before "left of"/"above" is considered true
MIN_GAP = 15.0

# Every non-empty attribute subset in canonical order; the order is part of the world
# (it fixes which description a seeded choice picks), so it must not change.
_ALL_SUBSETS: tuple[tuple[str, ...], ...] = tuple(
    tuple(a for j, a in enumerate(ATTRIBUTES) if mask >> j & 1)
    for mask in range(1, 16)
)


@dataclass
class SceneObject:
    """One object; `box` is (x1, y1, x2, y2) in pixels of its scene's image."""

    shape: str
    colour: str
    size: str
    material: str
    box: tuple[float, float, float, float]

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
    """An image of `width` x `height` pixels holding `objects`."""

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
                for name in ATTRIBUTES:
                    key = (name, o.attr(name))
                    index[key] = index.get(key, 0) | (1 << k)
            self.__dict__["_index"] = index
        return index.get((attr, value), 0)

    def matching(self, **attrs: str) -> list[SceneObject]:
        """The objects having every `attr=value` given."""
        bits = (1 << len(self.objects)) - 1
        for k, v in attrs.items():
            bits &= self._bits(k, v)
        return [o for i, o in enumerate(self.objects) if bits >> i & 1]

    def count(self, **attrs: str) -> int:
        """How many objects have every `attr=value` given."""
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


def relation(a: SceneObject, b: SceneObject, rel: str) -> bool | None:
    """Truth of `a rel b` for rel in left/right/above/below; None when the centres are
    closer than `MIN_GAP` along that axis (too close to call it either way)."""
    if rel in ("left", "right"):
        gap = b.cx - a.cx if rel == "left" else a.cx - b.cx
    else:
        gap = b.cy - a.cy if rel == "above" else a.cy - b.cy
    if abs(gap) < MIN_GAP:
        return None
    return gap > 0
