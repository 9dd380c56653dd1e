"""Configuration of the Visual Genome Faster R-CNN (bottom-up attention, LXMERT-SPEC §4).

One flat dataclass holds every number the detector and the extraction rule use, with the
defaults of the Caffe model as ported by the Hugging Face demo (``unc-nlp/frcnn-vg-finetuned``)
and of the release's ``generate_tsv.py`` (36 boxes, score threshold 0.2, per-class NMS 0.3).

Two file formats are read:

* our own JSON (``DetectorConfig.save`` / ``from_json_file``), field names as below;
* the demo's ``config.yaml`` (``from_frcnn_yaml``): the handful of fields that change the
  network or the proposals are mapped onto ours, so a user who downloaded the demo's
  checkpoint can pass its config unchanged (``lxmert extract --config config.yaml``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any, Mapping

from lxmert.atomic import atomic_write_text

__all__ = ["DetectorConfig"]

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

        Only fields that change the computation are read; the rest (device, training
        settings) are ignored. Deliberately *not* read: ``MODEL.MAX_POOL`` (the Caffe
        network pooled with ceil rounding and no padding, whatever the demo's switch says)
        and ``INPUT.FORMAT`` (the network takes BGR; the demo's RGB/BGR handling was buggy). Sections are looked up both at the top level and under
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

        def section(name: str) -> dict[str, Any]:
            for src in (raw, raw.get("MODEL") or {}):
                if isinstance(src.get(name), dict):
                    return src[name]
            return {}

        def first_level(v: Any) -> Any:
            # detectron2 writes per-feature-map lists: SIZES: [[64, 128, 256, 512]]
            return v[0] if isinstance(v, list) and v and isinstance(v[0], list) else v

        out: dict[str, Any] = {}
        model = raw.get("MODEL") or {}
        resnets, rpn, anchors = section("RESNETS"), section("RPN"), section("ANCHOR_GENERATOR")
        heads, box_head, prop = section("ROI_HEADS"), section("ROI_BOX_HEAD"), section("PROPOSAL_GENERATOR")
        inp = section("INPUT")
        pairs = [
            (resnets, "DEPTH", "depth", int),
            (resnets, "STEM_OUT_CHANNELS", "stem_channels", int),
            (resnets, "RES2_OUT_CHANNELS", "res2_channels", int),
            (resnets, "WIDTH_PER_GROUP", "width_per_group", int),
            (resnets, "STRIDE_IN_1X1", "stride_in_1x1", bool),
            (model, "PIXEL_MEAN", "pixel_mean", tuple),
            (anchors, "SIZES", "anchor_sizes", lambda v: tuple(first_level(v))),
            (anchors, "ASPECT_RATIOS", "anchor_ratios", lambda v: tuple(first_level(v))),
            (anchors, "OFFSET", "anchor_offset", float),
            (rpn, "PRE_NMS_TOPK_TEST", "rpn_pre_nms_topk", int),
            (rpn, "POST_NMS_TOPK_TEST", "rpn_post_nms_topk", int),
            (rpn, "NMS_THRESH", "rpn_nms_thresh", float),
            (rpn, "BBOX_REG_WEIGHTS", "rpn_bbox_weights", tuple),
            (prop, "HIDDEN_CHANNELS", "rpn_channels", int),
            (prop, "MIN_SIZE", "rpn_min_size", float),
            (heads, "NUM_CLASSES", "num_classes", int),
            (box_head, "NUM_ATTRS", "num_attrs", int),
            (box_head, "POOLER_RESOLUTION", "pooler_resolution", int),
            (box_head, "BBOX_REG_WEIGHTS", "roi_bbox_weights", tuple),
            (inp, "MAX_SIZE_TEST", "max_size", int),
        ]
        for src, key, name, conv in pairs:
            if key in src and src[key] is not None:
                try:
                    out[name] = conv(src[key])
                except (TypeError, ValueError) as err:
                    raise ValueError(f"{path}: {key}={src[key]!r} is not usable for {name} ({err})") from None
        if "MIN_SIZE_TEST" in inp:
            v = inp["MIN_SIZE_TEST"]
            out["min_size"] = int(v[0] if isinstance(v, (list, tuple)) else v)
        if box_head.get("RES5HALVE") is True:
            out["res5_dilation"] = 1
        if out.get("rpn_channels") == -1:
            out["rpn_channels"] = cls().res4_channels if "res2_channels" not in out else out["res2_channels"] * 4
        return cls(**out)
