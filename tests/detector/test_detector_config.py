"""The demo's config.yaml: every key ``from_frcnn_yaml`` reads is honoured or refused.

One table row per key: a supported value and the config it must produce, one or more
unsupported values and the key the error must name. A last group checks that the newly
honoured keys change what the extractor does, not only the config object.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lxmert.detector import DetectorConfig, FasterRCNN, FeatureExtractor, select_boxes
from lxmert.detector.config import YAML_KEYS

from support.detector import TINY

torch.set_num_threads(1)


def load(tmp_path, text: str, **overrides) -> DetectorConfig:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return DetectorConfig.from_file(path, **overrides)


def yaml(section: str, key: str, value: str) -> str:
    return f"{key}: {value}\n" if not section else f"{section}:\n  {key}: {value}\n"


# (section, key, yaml value, {field: expected}); every key of YAML_KEYS appears at least once
SUPPORTED = [
    ("RESNETS", "DEPTH", "50", {"depth": 50}),
    ("RESNETS", "STEM_OUT_CHANNELS", "32", {"stem_channels": 32}),
    ("RESNETS", "RES2_OUT_CHANNELS", "128", {"res2_channels": 128}),
    ("RESNETS", "WIDTH_PER_GROUP", "32", {"width_per_group": 32}),
    ("RESNETS", "NUM_GROUPS", "1", {}),
    ("RESNETS", "STRIDE_IN_1X1", "false", {"stride_in_1x1": False}),
    ("MODEL", "PIXEL_MEAN", "[100, 110, 120]", {"pixel_mean": (100.0, 110.0, 120.0)}),
    ("MODEL", "PIXEL_STD", "[1.0, 1.0, 1.0]", {}),
    ("MODEL", "MAX_POOL", "false", {"caffe_maxpool": False}),
    ("ANCHOR_GENERATOR", "SIZES", "[[32, 64]]", {"anchor_sizes": (32.0, 64.0)}),
    ("ANCHOR_GENERATOR", "SIZES", "[32, 64]", {"anchor_sizes": (32.0, 64.0)}),
    ("ANCHOR_GENERATOR", "ASPECT_RATIOS", "[[1.0]]", {"anchor_ratios": (1.0,)}),
    ("ANCHOR_GENERATOR", "OFFSET", "0.5", {"anchor_offset": 0.5}),
    ("RPN", "PRE_NMS_TOPK_TEST", "1000", {"rpn_pre_nms_topk": 1000}),
    ("RPN", "POST_NMS_TOPK_TEST", "100", {"rpn_post_nms_topk": 100}),
    ("RPN", "NMS_THRESH", "0.5", {"rpn_nms_thresh": 0.5}),
    ("RPN", "BBOX_REG_WEIGHTS", "[2, 2, 1, 1]", {"rpn_bbox_weights": (2.0, 2.0, 1.0, 1.0)}),
    ("PROPOSAL_GENERATOR", "HIDDEN_CHANNELS", "256", {"rpn_channels": 256}),
    ("PROPOSAL_GENERATOR", "HIDDEN_CHANNELS", "-1", {"rpn_channels": 1024}),
    ("PROPOSAL_GENERATOR", "MIN_SIZE", "4", {"rpn_min_size": 4.0}),
    ("ROI_HEADS", "NUM_CLASSES", "80", {"num_classes": 80}),
    ("ROI_HEADS", "NMS_THRESH_TEST", "0.6", {"nms_thresh": 0.6}),
    ("ROI_HEADS", "NMS_THRESH_TEST", "[0.5]", {"nms_thresh": 0.5}),
    ("ROI_HEADS", "SCORE_THRESH_TEST", "0.1", {"score_thresh": 0.1}),
    ("ROI_BOX_HEAD", "NUM_ATTRS", "10", {"num_attrs": 10}),
    ("ROI_BOX_HEAD", "POOLER_RESOLUTION", "7", {"pooler_resolution": 7}),
    ("ROI_BOX_HEAD", "BBOX_REG_WEIGHTS", "[1, 1, 1, 1]", {"roi_bbox_weights": (1.0, 1.0, 1.0, 1.0)}),
    ("ROI_BOX_HEAD", "RES5HALVE", "true", {"res5_dilation": 1}),
    ("ROI_BOX_HEAD", "RES5HALVE", "false", {"res5_dilation": 2}),
    ("INPUT", "MIN_SIZE_TEST", "800", {"min_size": 800}),
    ("INPUT", "MIN_SIZE_TEST", "[800, 800]", {"min_size": 800}),
    ("INPUT", "MAX_SIZE_TEST", "1333", {"max_size": 1333}),
    ("INPUT", "FORMAT", "BGR", {}),
    ("", "MIN_DETECTIONS", "10", {"min_boxes": 10}),
    ("", "MAX_DETECTIONS", "50", {"max_boxes": 50}),
]

# (section, key, yaml value, text the error must contain besides "SECTION.KEY=value")
REFUSED = [
    ("RESNETS", "DEPTH", "34", "depth must be one of"),
    ("RESNETS", "DEPTH", "'101'", "expected an integer"),
    ("RESNETS", "STEM_OUT_CHANNELS", "64.5", "expected an integer"),
    ("RESNETS", "RES2_OUT_CHANNELS", "[256]", "expected an integer"),
    ("RESNETS", "WIDTH_PER_GROUP", "true", "expected an integer"),
    ("RESNETS", "NUM_GROUPS", "32", "grouped (ResNeXt)"),
    ("RESNETS", "STRIDE_IN_1X1", "'false'", "expected true or false"),
    ("MODEL", "PIXEL_MEAN", "[100, 110]", "expected 3 numbers"),
    ("MODEL", "PIXEL_STD", "[57.4, 57.1, 58.4]", "unscaled pixels"),
    ("MODEL", "MAX_POOL", "1", "expected true or false"),
    ("ANCHOR_GENERATOR", "SIZES", "[[32], [64], [128]]", "3 feature levels"),
    ("ANCHOR_GENERATOR", "ASPECT_RATIOS", "[]", "expected a list of numbers"),
    ("ANCHOR_GENERATOR", "OFFSET", "1.5", "anchor_offset must lie in [0, 1)"),
    ("RPN", "PRE_NMS_TOPK_TEST", "0", "rpn_pre_nms_topk must be >= 1"),
    ("RPN", "POST_NMS_TOPK_TEST", "20", "exceeds rpn_post_nms_topk=20"),
    ("RPN", "NMS_THRESH", "1.5", "rpn_nms_thresh must lie in [0, 1]"),
    ("RPN", "BBOX_REG_WEIGHTS", "[1, 1]", "expected 4 numbers"),
    ("PROPOSAL_GENERATOR", "HIDDEN_CHANNELS", "0", "rpn_channels must be >= 1"),
    ("PROPOSAL_GENERATOR", "MIN_SIZE", "small", "expected a number"),
    ("ROI_HEADS", "NUM_CLASSES", "0", "num_classes must be >= 1"),
    ("ROI_HEADS", "NMS_THRESH_TEST", "[0.3, 0.4, 0.5]", "fall-back loop"),
    ("ROI_HEADS", "NMS_THRESH_TEST", "2.0", "nms_thresh must lie in [0, 1]"),
    ("ROI_HEADS", "SCORE_THRESH_TEST", "-0.1", "score_thresh must lie in [0, 1]"),
    ("ROI_BOX_HEAD", "NUM_ATTRS", "0", "num_attrs must be >= 1"),
    ("ROI_BOX_HEAD", "POOLER_RESOLUTION", "0", "pooler_resolution must be >= 1"),
    ("ROI_BOX_HEAD", "BBOX_REG_WEIGHTS", "[1, 1, 1, x]", "expected a number"),
    ("ROI_BOX_HEAD", "RES5HALVE", "yes please", "expected true or false"),
    ("INPUT", "MIN_SIZE_TEST", "[600, 800]", "multi-scale testing"),
    ("INPUT", "MAX_SIZE_TEST", "0", "max_size must be >= 1"),
    ("INPUT", "FORMAT", "RGB", "the network takes BGR"),
    ("", "MIN_DETECTIONS", "0", "need 1 <= min_boxes <= max_boxes"),
    ("", "MIN_DETECTIONS", "50", "need 1 <= min_boxes <= max_boxes"),
    ("", "MAX_DETECTIONS", "500", "exceeds rpn_post_nms_topk"),
]


def test_every_key_is_tested():
    keys = {(e.section, e.key) for e in YAML_KEYS}
    assert {(s, k) for s, k, *_ in SUPPORTED} == keys
    assert {(s, k) for s, k, *_ in REFUSED} == keys


@pytest.mark.parametrize("section,key,value,expected", SUPPORTED, ids=[f"{r[1]}={r[2]}" for r in SUPPORTED])
def test_supported_value_is_honoured(tmp_path, section, key, value, expected):
    cfg = load(tmp_path, yaml(section, key, value))
    default = DetectorConfig()
    for name, want in expected.items():
        assert getattr(cfg, name) == want, name
    changed = {f for f in default.to_dict() if getattr(cfg, f) != getattr(default, f)}
    assert changed == {f for f, v in expected.items() if v != getattr(default, f)}


@pytest.mark.parametrize("section,key,value,reason", REFUSED, ids=[f"{r[1]}={r[2]}" for r in REFUSED])
def test_unsupported_value_is_refused_naming_the_key(tmp_path, section, key, value, reason):
    with pytest.raises(ValueError) as err:
        load(tmp_path, yaml(section, key, value))
    msg = str(err.value)
    assert "config.yaml" in msg
    assert (f"{section}.{key}=" if section else f"{key}=") in msg
    assert reason in msg
    assert "\n" not in msg  # one line for the CLI


def test_sections_nested_under_model_and_absent_keys(tmp_path):
    """detectron2 nests sections under MODEL, the demo flattens them; both are read, and
    keys left out (or null) keep the defaults."""
    nested = load(tmp_path, "MODEL:\n  ROI_HEADS:\n    NMS_THRESH_TEST: 0.5\n  DEVICE: cuda\n"
                            "RPN:\n  NMS_THRESH: null\nSOLVER:\n  BASE_LR: 0.02\n")
    assert nested == DetectorConfig(nms_thresh=0.5)


def test_cli_prints_one_line_naming_the_key(tmp_path, capsys):
    from PIL import Image

    from lxmert.cli import main

    Image.fromarray(np.zeros((40, 50, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "config.yaml").write_text("INPUT:\n  FORMAT: RGB\n")
    assert main(["extract", str(tmp_path / "a.png"), "--random-init", "--config", str(tmp_path / "config.yaml"),
                 "--out", str(tmp_path / "s"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "INPUT.FORMAT='RGB'" in err and "Traceback" not in err


# ------------------------------------------------------------- honoured keys change behaviour
def test_nms_and_score_thresholds_change_the_selection(tmp_path):
    # box 1 overlaps box 0 with IoU 0.5: suppressed at the release's 0.3, kept at 0.6
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 5], [20.0, 0, 30, 10], [40.0, 0, 50, 10]])
    scores = torch.tensor([[0.9, 0.0], [0.8, 0.0], [0.15, 0.0], [0.05, 0.0]])
    kw = dict(min_boxes=1, max_boxes=4, rpn_post_nms_topk=4)
    default = select_boxes(boxes, scores, DetectorConfig(**kw))[0].tolist()
    assert default == [0]
    loose_nms = load(tmp_path, "ROI_HEADS:\n  NMS_THRESH_TEST: 0.6\n", **kw)
    assert select_boxes(boxes, scores, loose_nms)[0].tolist() == [0, 1]
    low_score = load(tmp_path, "ROI_HEADS:\n  SCORE_THRESH_TEST: 0.1\n", **kw)
    assert select_boxes(boxes, scores, low_score)[0].tolist() == [0, 2]


def test_min_max_detections_change_the_number_of_boxes(tmp_path):
    img = (np.random.RandomState(0).rand(90, 120, 3) * 255).astype(np.uint8)
    counts = {}
    for text in ("INPUT:\n  FORMAT: BGR\n", "MIN_DETECTIONS: 5\nMAX_DETECTIONS: 10\n", "MIN_DETECTIONS: 50\nMAX_DETECTIONS: 60\n"):
        cfg = load(tmp_path, text, **TINY)
        ex = FeatureExtractor.from_weights(None, cfg, random_init=True, seed=0)
        counts[text] = next(iter(ex.extract([("x", img)])))["num_boxes"]
    # random weights: no box reaches 0.2, so the fill rule gives exactly MIN_DETECTIONS
    assert list(counts.values()) == [36, 5, 50]


def test_max_pool_switch_changes_the_network(tmp_path):
    caffe = FasterRCNN(load(tmp_path, "MODEL:\n  MAX_POOL: true\n", **TINY))
    padded = FasterRCNN(load(tmp_path, "MODEL:\n  MAX_POOL: false\n", **TINY))
    x = torch.zeros(1, 3, 601, 1001)
    assert caffe.backbone.stem(x).shape[-2:] == (150, 250)
    assert padded.backbone.stem(x).shape[-2:] == (151, 251)
