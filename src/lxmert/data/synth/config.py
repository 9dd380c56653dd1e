"""`SynthConfig`: the size, difficulty and outputs of a generated world."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from lxmert.data.synth.detector import FEATURE_CODES
from lxmert.data.synth.nlvr2 import NLVR2_KINDS

__all__ = ["SynthConfig", "PICTURE_CHOICES"]

#: `SynthConfig.pictures`: which images get a rendered PNG (WORLD/images/<img_id>.png).
PICTURE_CHOICES: tuple[str, ...] = ("none", "test", "all")


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
    #: which images are rendered to WORLD/images/<img_id>.png: "none", the "test" split
    #: (what a demo server shows) or "all". Rendering changes no other file, and any image
    #: of a world can still be rendered later on demand (`render_world_image`).
    pictures: str = "none"

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
        if self.pictures not in PICTURE_CHOICES:
            raise ValueError(f"pictures must be one of {PICTURE_CHOICES}, got {self.pictures!r}")

    def split_sizes(self) -> dict[str, int]:
        n_val = max(1, round(self.images * self.val_fraction))
        n_test = max(1, round(self.images * self.test_fraction))
        n_train = self.images - n_val - n_test
        if n_train < 1:
            raise ValueError(f"{self.images} images leave no training images")
        return {"train": n_train, "val": n_val, "test": n_test}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SynthConfig:
        """The config recorded in a world's synth.json (json lists back to tuples).

        Keys added after a world was written take their defaults, which reproduce what the
        older code wrote; an unknown key is refused (a newer world or not a config).
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown SynthConfig key(s) {unknown}")
        kwargs = dict(values)
        for name in ("annotator_accuracy", "nlvr2_kinds"):
            if name in kwargs:
                kwargs[name] = tuple(kwargs[name])
        return cls(**kwargs)
