"""Configuration of the Visual Genome Faster R-CNN (bottom-up attention, LXMERT-SPEC §4).

One flat dataclass holds every number the detector and the extraction rule use, with the
defaults of the Caffe model as ported by the Hugging Face demo (``unc-nlp/frcnn-vg-finetuned``)
and of the release's ``generate_tsv.py`` (36 boxes, score threshold 0.2, per-class NMS 0.3).

Two file formats are read:

* our own JSON (``DetectorConfig.save`` / ``from_json_file``), field names as below;
* the demo's ``config.yaml`` (``from_frcnn_yaml``): every key that changes the network, the
  proposals or the box selection is mapped onto ours or, for a value the port does not
  implement, refused with the key named (``YAML_KEYS`` lists them), so
  ``lxmert extract --config config.yaml`` never runs something other than what the file says.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from lxmert.atomic import atomic_write_text

__all__ = ["YAML_KEYS", "DetectorConfig", "YamlKey"]

_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


@dataclass
class DetectorConfig:
    """Every setting of the detector and of the box-selection rule.

    Attributes are grouped as: backbone, RPN, RoI head, input, extraction. ``blocks``
    overrides the per-stage block counts (res2, res3, res4, res5) that ``depth`` implies;
    tests use it to build a shallow network with the real layer shapes.
    """

    # --- backbone: ResNet C4, caffe style --------------------------------------------
    depth: int = 101
    blocks: tuple[int, int, int, int] | None = None
    stem_channels: int = 64
    res2_channels: int = 256
    width_per_group: int = 64
    stride_in_1x1: bool = True  # MSRA/Caffe ResNets put the stride in the first 1x1 conv
    caffe_maxpool: bool = True  # max-pool 3x3/2, no padding, ceil mode (Caffe's pooling)
    bn_eps: float = 1e-5
    res5_dilation: int = 2  # res5 in the RoI head: first block stride 1, all conv2 dilated

    # --- RPN ---------------------------------------------------------------------------
    rpn_channels: int = 512
    anchor_sizes: tuple[float, ...] = (64.0, 128.0, 256.0, 512.0)
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    anchor_offset: float = 0.0
    rpn_pre_nms_topk: int = 6000
    rpn_post_nms_topk: int = 300
    rpn_nms_thresh: float = 0.7
    rpn_min_size: float = 0.0  # in resized-input pixels; boxes with a side <= this are dropped
    rpn_bbox_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    feature_stride: int = 16

    # --- RoI head ------------------------------------------------------------------------
    pooler_resolution: int = 14
    num_classes: int = 1600  # + 1 background
    num_attrs: int = 400  # + 1 "no attribute"
    background_last: bool = True  # the converted checkpoint keeps background at index 1600
    roi_bbox_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)

    # --- input -----------------------------------------------------------------------------
    pixel_mean: tuple[float, float, float] = (102.9801, 115.9465, 122.7717)  # BGR
    min_size: int = 600
    max_size: int = 1000

    # --- extraction (generate_tsv.py of bottom-up attention) ------------------------------
    score_thresh: float = 0.2
    nms_thresh: float = 0.3
    min_boxes: int = 36
    max_boxes: int = 36

    # ------------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        for name in ("anchor_sizes", "anchor_ratios", "rpn_bbox_weights", "roi_bbox_weights", "pixel_mean"):
            setattr(self, name, tuple(float(v) for v in getattr(self, name)))
        if self.blocks is not None:
            self.blocks = tuple(int(b) for b in self.blocks)  # type: ignore[assignment]
            if len(self.blocks) != 4 or min(self.blocks) < 1:
                raise ValueError(f"blocks must be 4 positive ints (res2..res5), got {self.blocks}")
        elif self.depth not in _DEPTHS:
            raise ValueError(f"depth must be one of {sorted(_DEPTHS)} (or give blocks=...), got {self.depth}")
        if self.res5_dilation not in (1, 2):
            raise ValueError(f"res5_dilation must be 1 or 2, got {self.res5_dilation}")
        if not 1 <= self.min_boxes <= self.max_boxes:
            raise ValueError(f"need 1 <= min_boxes <= max_boxes, got {self.min_boxes}, {self.max_boxes}")
        if self.max_boxes > self.rpn_post_nms_topk:
            raise ValueError(
                f"max_boxes={self.max_boxes} exceeds rpn_post_nms_topk={self.rpn_post_nms_topk}: "
                "boxes are chosen among the proposals"
            )
        if len(self.pixel_mean) != 3:
            raise ValueError(f"pixel_mean needs 3 values (B, G, R), got {self.pixel_mean}")
        for name in ("nms_thresh", "score_thresh", "rpn_nms_thresh"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.anchor_offset < 1.0:
            raise ValueError(f"anchor_offset must lie in [0, 1), got {self.anchor_offset}")
        for name in ("rpn_pre_nms_topk", "rpn_post_nms_topk", "min_size", "max_size", "pooler_resolution",
                     "rpn_channels", "num_classes", "num_attrs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def stage_blocks(self) -> tuple[int, int, int, int]:
        """Blocks in res2, res3, res4 (backbone) and res5 (RoI head)."""
        return self.blocks if self.blocks is not None else _DEPTHS[self.depth]  # type: ignore[return-value]

    @property
    def num_anchors(self) -> int:
        return len(self.anchor_sizes) * len(self.anchor_ratios)

    @property
    def res4_channels(self) -> int:
        return self.res2_channels * 4

    @property
    def head_channels(self) -> int:
        """Width of the pooled region feature (2048 for the real model)."""
        return self.res2_channels * 8

    # --- (de)serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "<dict>") -> "DetectorConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{source}: unknown detector config field(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(d))

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_json_file(cls, path: str | os.PathLike[str]) -> "DetectorConfig":
        with open(path, encoding="utf-8") as f:
            try:
                d = json.load(f)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: invalid JSON ({err})") from None
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a JSON object")
        return cls.from_dict(d, source=str(path))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **overrides: Any) -> "DetectorConfig":
        """Read ``*.json`` (ours) or ``*.yaml``/``*.yml`` (the demo's), then apply overrides."""
        p = str(path)
        if p.endswith((".yaml", ".yml")):
            cfg = cls.from_frcnn_yaml(p)
        else:
            cfg = cls.from_json_file(p)
        return dataclasses.replace(cfg, **overrides) if overrides else cfg

    @classmethod
    def from_frcnn_yaml(cls, path: str | os.PathLike[str]) -> "DetectorConfig":
        """Map the Hugging Face demo's ``config.yaml`` onto a :class:`DetectorConfig`.

        Every key listed in :data:`YAML_KEYS` is either honoured (mapped onto the field
        that does what the key says, and the code uses that field) or, for a value the
        port does not implement, refused with an error naming the file, the key and the
        value. Keys not listed (device, training settings, paths) do not change the
        features and are not read. Sections are looked up both at the top level and under
        ``MODEL`` because detectron2 nests them there while the demo's file flattens them.
        """
        try:
            import yaml  # PyYAML ships with transformers; not a hard dependency of lxmert
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise RuntimeError(
                f"reading {path} needs PyYAML (pip install 'lxmert[detector]'), or convert it to our JSON config"
            ) from err
        with open(path, encoding="utf-8") as f:
            try:
                raw = yaml.safe_load(f)
            except yaml.YAMLError as err:
                raise ValueError(f"{path}: invalid YAML ({err})") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        model = raw.get("MODEL") if isinstance(raw.get("MODEL"), dict) else {}

        def lookup(section: str, key: str) -> tuple[bool, Any]:
            if section == "":  # top-level keys of the demo's file (MIN/MAX_DETECTIONS)
                places = [raw, model]
            elif section == "MODEL":
                places = [model]
            else:
                places = [src[section] for src in (raw, model) if isinstance(src.get(section), dict)]
            for place in places:
                if key in place and place[key] is not None:
                    return True, place[key]
            return False, None

        out: dict[str, Any] = {}
        origin: dict[str, str] = {}  # field -> "KEY=value", to name the yaml key in later errors
        for entry in YAML_KEYS:
            found, value = lookup(entry.section, entry.key)
            if not found:
                continue
            name = f"{entry.section}.{entry.key}" if entry.section else entry.key
            try:
                mapped = entry.convert(value)
            except (TypeError, ValueError) as err:
                raise ValueError(f"{path}: {name}={value!r}: {err}") from None
            for field_name, field_value in mapped.items():
                out[field_name] = field_value
                origin[field_name] = f"{name}={value!r}"
        if out.get("rpn_channels") == -1:  # detectron2's "as wide as the RPN's input"
            out["rpn_channels"] = out.get("res2_channels", cls.res2_channels) * 4
        try:
            return cls(**out)
        except ValueError as err:
            named = [v for k, v in origin.items() if re.search(rf"\b{k}\b", str(err))]
            raise ValueError(f"{path}: {err}" + (f" (from {', '.join(named)})" if named else "")) from None


# --------------------------------------------------------------------------------------------
# The demo's config.yaml, key by key
# --------------------------------------------------------------------------------------------


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError("expected an integer")
    return v


def _float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError("expected a number")
    return float(v)


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("expected true or false")
    return v


def _floats(n: int | None = None) -> Callable[[Any], tuple[float, ...]]:
    def convert(v: Any) -> tuple[float, ...]:
        if not isinstance(v, (list, tuple)) or not v:
            raise ValueError("expected a list of numbers")
        out = tuple(_float(x) for x in v)
        if n is not None and len(out) != n:
            raise ValueError(f"expected {n} numbers, got {len(out)}")
        return out
    return convert


def _one_level(v: Any) -> tuple[float, ...]:
    # detectron2 writes one list per feature map: SIZES: [[64, 128, 256, 512]]
    if isinstance(v, list) and v and all(isinstance(x, list) for x in v):
        if len(v) != 1:
            raise ValueError(f"{len(v)} feature levels (an FPN setting); this detector has one (C4, stride 16)")
        v = v[0]
    return _floats()(v)


def _single_value(convert: Callable[[Any], Any], what: str) -> Callable[[Any], Any]:
    """A scalar, or a list whose entries are all equal (one value written as a list)."""
    def single(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            values = [convert(x) for x in v]
            if not values or any(x != values[0] for x in values):
                raise ValueError(f"several values ({what}) are not supported; give one")
            return values[0]
        return convert(v)
    return single


def _only(expected: Any, why: str, convert: Callable[[Any], Any]) -> Callable[[Any], dict[str, Any]]:
    """A key whose one supported value is ``expected``: checked, then mapped onto nothing."""
    def check(v: Any) -> dict[str, Any]:
        if convert(v) != expected:
            raise ValueError(f"not supported: {why}")
        return {}
    return check


def _to(field: str, convert: Callable[[Any], Any]) -> Callable[[Any], dict[str, Any]]:
    return lambda v: {field: convert(v)}


def _input_format(v: Any) -> dict[str, Any]:
    if not isinstance(v, str):
        raise ValueError("expected a string")
    if v.upper() != "BGR":
        raise ValueError(
            "not supported: the network takes BGR, the order the Caffe weights were trained on (detectron2's "
            "FORMAT names the order the model consumes). The demo's 'RGB' went through a double channel flip "
            "(utils.img_tensorize) and fed BGR for image files; set FORMAT: BGR or delete the key")
    return {}


def _nms_thresh_test(v: Any) -> dict[str, Any]:
    # the demo allows a list: thresholds tried in turn until MIN..MAX_DETECTIONS boxes survive
    if isinstance(v, list):
        if len(v) != 1:
            raise ValueError("a list of thresholds tried in turn (the demo's fall-back loop) is not supported; "
                             "give one threshold")
        v = v[0]
    return {"nms_thresh": _float(v)}


@dataclass(frozen=True)
class YamlKey:
    """One key of the demo's ``config.yaml`` and what it becomes here.

    ``convert`` takes the yaml value and returns the :class:`DetectorConfig` fields it sets
    (possibly none, for a key that is only checked), or raises ``ValueError`` saying why
    the value is refused.
    """

    section: str  # "" for a top-level key
    key: str
    convert: Callable[[Any], dict[str, Any]]
    meaning: str


#: Every key :meth:`DetectorConfig.from_frcnn_yaml` reads (docs/extraction.md lists them too).
YAML_KEYS: tuple[YamlKey, ...] = (
    YamlKey("RESNETS", "DEPTH", _to("depth", _int), "depth (50, 101, 152)"),
    YamlKey("RESNETS", "STEM_OUT_CHANNELS", _to("stem_channels", _int), "stem_channels"),
    YamlKey("RESNETS", "RES2_OUT_CHANNELS", _to("res2_channels", _int), "res2_channels"),
    YamlKey("RESNETS", "WIDTH_PER_GROUP", _to("width_per_group", _int), "width_per_group"),
    YamlKey("RESNETS", "NUM_GROUPS", _only(1, "grouped (ResNeXt) convolutions", _int), "must be 1"),
    YamlKey("RESNETS", "STRIDE_IN_1X1", _to("stride_in_1x1", _bool), "stride_in_1x1"),
    YamlKey("MODEL", "PIXEL_MEAN", _to("pixel_mean", _floats(3)), "pixel_mean (B, G, R)"),
    YamlKey("MODEL", "PIXEL_STD", _only((1.0, 1.0, 1.0), "the Caffe model takes unscaled pixels minus the mean",
                                        _floats(3)), "must be [1, 1, 1]"),
    YamlKey("MODEL", "MAX_POOL", _to("caffe_maxpool", _bool),
            "caffe_maxpool: true = 3x3/2 no padding, ceil rounding (Caffe); false = padding 1, floor"),
    YamlKey("ANCHOR_GENERATOR", "SIZES", _to("anchor_sizes", _one_level), "anchor_sizes (one level)"),
    YamlKey("ANCHOR_GENERATOR", "ASPECT_RATIOS", _to("anchor_ratios", _one_level), "anchor_ratios (one level)"),
    YamlKey("ANCHOR_GENERATOR", "OFFSET", _to("anchor_offset", _float), "anchor_offset"),
    YamlKey("RPN", "PRE_NMS_TOPK_TEST", _to("rpn_pre_nms_topk", _int), "rpn_pre_nms_topk"),
    YamlKey("RPN", "POST_NMS_TOPK_TEST", _to("rpn_post_nms_topk", _int), "rpn_post_nms_topk"),
    YamlKey("RPN", "NMS_THRESH", _to("rpn_nms_thresh", _float), "rpn_nms_thresh"),
    YamlKey("RPN", "BBOX_REG_WEIGHTS", _to("rpn_bbox_weights", _floats(4)), "rpn_bbox_weights"),
    YamlKey("PROPOSAL_GENERATOR", "HIDDEN_CHANNELS", _to("rpn_channels", _int), "rpn_channels (-1: res4 width)"),
    YamlKey("PROPOSAL_GENERATOR", "MIN_SIZE", _to("rpn_min_size", _float), "rpn_min_size"),
    YamlKey("ROI_HEADS", "NUM_CLASSES", _to("num_classes", _int), "num_classes"),
    YamlKey("ROI_HEADS", "NMS_THRESH_TEST", _nms_thresh_test,
            "nms_thresh: the per-class NMS of the 36-box selection (one value)"),
    YamlKey("ROI_HEADS", "SCORE_THRESH_TEST", _to("score_thresh", _float), "score_thresh of the selection"),
    YamlKey("ROI_BOX_HEAD", "NUM_ATTRS", _to("num_attrs", _int), "num_attrs"),
    YamlKey("ROI_BOX_HEAD", "POOLER_RESOLUTION", _to("pooler_resolution", _int), "pooler_resolution"),
    YamlKey("ROI_BOX_HEAD", "BBOX_REG_WEIGHTS", _to("roi_bbox_weights", _floats(4)), "roi_bbox_weights"),
    YamlKey("ROI_BOX_HEAD", "RES5HALVE", lambda v: {"res5_dilation": 1 if _bool(v) else 2},
            "res5_dilation: true = 1 (stride 2), false = 2 (stride 1, the VG model)"),
    YamlKey("INPUT", "MIN_SIZE_TEST", _to("min_size", _single_value(_int, "multi-scale testing")), "min_size"),
    YamlKey("INPUT", "MAX_SIZE_TEST", _to("max_size", _int), "max_size"),
    YamlKey("INPUT", "FORMAT", _input_format, "must be BGR"),
    YamlKey("", "MIN_DETECTIONS", _to("min_boxes", _int), "min_boxes of the selection"),
    YamlKey("", "MAX_DETECTIONS", _to("max_boxes", _int), "max_boxes of the selection"),
)
