"""The detector end to end on random weights: shapes, determinism, preprocessing, box
selection and the checkpoint key map (batching: test_detector_batching.py; the demo's
config.yaml: test_detector_config.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lxmert.detector import (
    DetectorConfig,
    FasterRCNN,
    FeatureExtractor,
    convert_frcnn_state_dict,
    export_frcnn_state_dict,
    load_frcnn_checkpoint,
    load_state_dict_strict,
    load_vocab,
    random_init_,
    select_boxes,
    to_model_input,
)
from lxmert.detector.model import DetectorOutput
from lxmert.detector.preprocess import PreparedImage, resized_shape

from support.detector import TINY, image

torch.set_num_threads(1)



@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    return FeatureExtractor.from_weights(None, DetectorConfig(**TINY), random_init=True, seed=0)


# ------------------------------------------------------------------------ shapes, determinism
def test_record_shapes_and_boxes_inside_image(extractor):
    rec = next(iter(extractor.extract([("img", image(90, 140))])))
    assert rec["num_boxes"] == 36 and (rec["img_h"], rec["img_w"]) == (90, 140)
    assert rec["features"].shape == (36, 2048) and rec["features"].dtype == np.float32
    assert rec["boxes"].shape == (36, 4)
    for k in ("objects_id", "attrs_id"):
        assert rec[k].shape == (36,) and rec[k].dtype == np.int64
    assert rec["objects_id"].max() < 1600 and rec["attrs_id"].max() < 400
    assert ((rec["objects_conf"] > 0) & (rec["objects_conf"] <= 1)).all()
    b = rec["boxes"]
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= 140).all() and (b[:, 3] <= 90).all()
    assert (b[:, 2] >= b[:, 0]).all() and (b[:, 3] >= b[:, 1]).all()
    assert np.isfinite(rec["features"]).all() and (rec["features"] >= 0).all()  # mean of ReLU maps


def test_deterministic_across_runs_and_constructions(extractor):
    img = image(100, 120, seed=4)
    a = next(iter(extractor.extract([("x", img)])))
    b = next(iter(extractor.extract([("x", img)])))
    other = FeatureExtractor.from_weights(None, DetectorConfig(**TINY), random_init=True, seed=0)
    c = next(iter(other.extract([("x", img)])))
    for k in ("boxes", "features", "objects_id", "attrs_conf"):
        assert np.array_equal(a[k], b[k]) and np.array_equal(a[k], c[k]), k
    third = FeatureExtractor.from_weights(None, DetectorConfig(**TINY), random_init=True, seed=1)
    d = next(iter(third.extract([("x", img)])))
    assert not np.array_equal(a["features"], d["features"])


def test_full_resnet101_small_input():
    """The real architecture (23 blocks in res4, 3 in res5, 14x14 pooling would be the same
    code path) on a small image; only the number of proposals is reduced."""
    cfg = DetectorConfig(min_size=128, max_size=160, rpn_post_nms_topk=40, pooler_resolution=7)
    ex = FeatureExtractor.from_weights(None, cfg, random_init=True)
    assert len(ex.model.backbone.res4) == 23 and len(ex.model.roi_heads.res5) == 3
    rec = next(iter(ex.extract([("big", image(96, 120))])))
    assert rec["features"].shape == (36, 2048) and np.isfinite(rec["features"]).all()
    assert rec["features"].std() > 0
    # res4 is stride 16: 128x160 input -> 8x10 map (caffe ceil-mode pooling included)
    feats = ex.model.backbone(torch.zeros(1, 3, 128, 160))
    assert feats.shape == (1, 1024, 8, 10)


def test_caffe_maxpool_shape():
    cfg = DetectorConfig(**TINY)
    m = FasterRCNN(cfg)
    x = torch.zeros(1, 3, 600, 1000)
    # conv 7x7/2 -> 300x500; pool 3x3/2 no pad ceil -> 150x250; then /2 /2 -> 38x63
    assert m.backbone.stem(x).shape[-2:] == (150, 250)
    # odd conv output (301x501): Caffe's unpadded ceil-mode pool gives 150x250 where
    # PyTorch's usual padded pool gives 151x251 - every later map would be misaligned
    cfg2 = DetectorConfig(**{**TINY, "caffe_maxpool": False})
    assert FasterRCNN(cfg2).backbone.stem(torch.zeros(1, 3, 601, 1001)).shape[-2:] == (151, 251)
    assert m.backbone.stem(torch.zeros(1, 3, 601, 1001)).shape[-2:] == (150, 250)


# ------------------------------------------------------------------------------ preprocessing
def test_bgr_order_and_mean_subtraction():
    cfg = DetectorConfig(min_size=20, max_size=40)
    red = np.zeros((20, 30, 3), dtype=np.uint8)
    red[..., 0] = 255  # RGB red
    t = to_model_input(red, cfg).tensor
    b, g, r = cfg.pixel_mean
    assert torch.allclose(t[2], torch.full((20, 30), 255 - r))  # red ends up in channel 2
    assert torch.allclose(t[0], torch.full((20, 30), -b))
    assert torch.allclose(t[1], torch.full((20, 30), -g))


def test_resize_rule():
    assert resized_shape(480, 640, 600, 1000) == (600, 800)
    assert resized_shape(640, 480, 600, 1000) == (800, 600)
    assert resized_shape(300, 1000, 600, 1000) == (300, 1000)  # long side caps the scale
    assert resized_shape(375, 500, 600, 1000) == (600, 800)
    p = to_model_input(image(375, 500), DetectorConfig())
    assert p.tensor.shape == (3, 600, 800) and p.orig_size == (375, 500)


def test_boxes_scaled_back_to_original_size(extractor):
    """Selection on a hand-made detector output: boxes go from resized to original pixels."""
    r, c = 40, extractor.cfg.num_classes
    boxes = torch.tensor([[10.0 * i, 5.0, 10.0 * i + 8, 25.0] for i in range(r)])
    cls = torch.full((r, c + 1), 1e-4)
    cls[:, 3] = torch.linspace(0.9, 0.1, r)  # one class, decreasing scores, boxes disjoint
    attr = torch.full((r, extractor.cfg.num_attrs + 1), 1e-3)
    attr[:, 7] = 0.5
    out = DetectorOutput(boxes=boxes, features=torch.arange(r, dtype=torch.float32)[:, None].repeat(1, 2048),
                         cls_probs=cls, attr_probs=attr)
    prep = PreparedImage(tensor=torch.zeros(3, 100, 400), size=(100, 400), orig_size=(50, 800))
    rec = extractor._record("x", prep, out)
    # 0.9..0.1 over 40 boxes: 35 pass 0.2, one short of 36, so the fill rule takes the 36 best
    assert rec["num_boxes"] == 36
    assert rec["features"][:, 0].tolist() == list(range(36))  # best first = proposal order here
    expect = boxes[:36].clone()
    expect[:, 0::2] *= 2.0  # 800 / 400
    expect[:, 1::2] *= 0.5  # 50 / 100
    assert np.allclose(rec["boxes"], expect.numpy())
    assert (rec["objects_id"] == 3).all() and (rec["attrs_id"] == 7).all()


# ------------------------------------------------------------------------------ box selection
def _cfg(**kw) -> DetectorConfig:
    return DetectorConfig(**{**TINY, **kw})


def test_select_boxes_fill_threshold_and_cap():
    r = 50
    boxes = torch.tensor([[20.0 * i, 0.0, 20.0 * i + 10, 10.0] for i in range(r)])  # disjoint
    scores = torch.zeros(r, 2)
    scores[:, 0] = torch.linspace(0.01, 0.99, r)  # increasing: the best box is last
    # more than max pass (>= 0.2: 40 boxes) -> the 36 best, best first
    keep, conf = select_boxes(boxes, scores, _cfg())
    assert keep.tolist() == list(range(49, 13, -1))
    # between min and max pass -> exactly those, in proposal order (the release's np.where)
    keep, _ = select_boxes(boxes, scores, _cfg(min_boxes=10, max_boxes=45))
    assert keep.tolist() == [i for i in range(r) if conf[i] >= 0.2]
    # fewer than min pass -> filled with the next best ones
    keep, _ = select_boxes(boxes, scores, _cfg(score_thresh=0.9))
    assert len(keep) == 36 and keep.tolist() == list(range(49, 13, -1))


def test_select_boxes_suppressed_boxes_come_last():
    # two identical boxes: the lower-scoring copy is suppressed in every class -> score 0
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10], [20.0, 0, 30, 10]])
    scores = torch.tensor([[0.5, 0.3], [0.4, 0.1], [0.05, 0.02]])
    keep, conf = select_boxes(boxes, scores, _cfg(min_boxes=3, max_boxes=3, rpn_post_nms_topk=3))
    assert conf.tolist() == pytest.approx([0.5, 0.0, 0.05])
    assert keep.tolist() == [0, 2, 1]


# ---------------------------------------------------------------------------------- key map
EXPECTED_CHECKPOINT_SHAPES = {
    # names and shapes of the demo's pytorch_model.bin for the full model
    "backbone.stem.conv1.weight": (64, 3, 7, 7),
    "backbone.stem.conv1.norm.running_var": (64,),
    "backbone.res2.0.shortcut.weight": (256, 64, 1, 1),
    "backbone.res2.0.conv1.weight": (64, 64, 1, 1),
    "backbone.res3.0.conv1.weight": (128, 256, 1, 1),
    "backbone.res4.22.conv3.norm.bias": (1024,),
    "backbone.res4.0.conv2.weight": (256, 256, 3, 3),
    "proposal_generator.anchor_generator.cell_anchors.0": (12, 4),
    "proposal_generator.rpn_head.conv.weight": (512, 1024, 3, 3),
    "proposal_generator.rpn_head.objectness_logits.weight": (12, 512, 1, 1),
    "proposal_generator.rpn_head.anchor_deltas.weight": (48, 512, 1, 1),
    "roi_heads.res5.0.shortcut.weight": (2048, 1024, 1, 1),
    "roi_heads.res5.2.conv3.weight": (2048, 512, 1, 1),
    "roi_heads.box_predictor.cls_score.weight": (1601, 2048),
    "roi_heads.box_predictor.bbox_pred.weight": (6400, 2048),
    "roi_heads.box_predictor.cls_embedding.weight": (1601, 256),
    "roi_heads.box_predictor.fc_attr.weight": (512, 2304),
    "roi_heads.box_predictor.attr_score.weight": (401, 512),
    "backbone.res4.3.conv1.norm.num_batches_tracked": (),
}


def test_full_model_checkpoint_names_and_shapes():
    sd = export_frcnn_state_dict(FasterRCNN(DetectorConfig()))
    for key, shape in EXPECTED_CHECKPOINT_SHAPES.items():
        assert key in sd, key
        assert tuple(sd[key].shape) == shape, key
    assert "backbone.res4.23.conv1.weight" not in sd and "roi_heads.res5.3.conv1.weight" not in sd
    n_params = sum(v.numel() for k, v in sd.items() if not k.endswith("num_batches_tracked"))
    assert 60e6 < n_params < 70e6  # R-101 C4 + RPN + heads


def test_key_map_round_trip_through_file(tmp_path):
    cfg = DetectorConfig(**TINY)
    src = random_init_(FasterRCNN(cfg), seed=5)
    with torch.no_grad():  # anchors from the checkpoint must win over the config's
        src.proposal_generator.anchor_generator.cell_anchors.add_(0.25)
    ckpt = export_frcnn_state_dict(src)
    assert not any(k.startswith("module.") for k in ckpt)
    path = tmp_path / "pytorch_model.bin"
    torch.save(ckpt, path)
    dst = FasterRCNN(cfg)
    load_state_dict_strict(dst, load_frcnn_checkpoint(path))
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k
    img = to_model_input(image(100, 130), cfg)
    a = src(img.tensor[None], [img.size])[0]
    b = dst(img.tensor[None], [img.size])[0]
    assert torch.equal(a.features, b.features) and torch.equal(a.boxes, b.boxes)


def test_key_map_aliases_and_prefix():
    sd = {
        "module.roi_heads.box_predictor.attr_linear1.weight": torch.zeros(1),
        "roi_heads.box_predictor.attr_linear2.bias": torch.zeros(1),
        "roi_heads.box_predictor.cls_embed.weight": torch.zeros(1),
        "backbone.stem.conv1.norm.num_batches_tracked": torch.tensor(0),
    }
    assert sorted(convert_frcnn_state_dict(sd)) == [
        "roi_heads.box_predictor.attr_score.bias",
        "roi_heads.box_predictor.cls_embedding.weight",
        "roi_heads.box_predictor.fc_attr.weight",
    ]


def test_bad_checkpoints_name_keys_and_shapes(tmp_path):
    cfg = DetectorConfig(**TINY)
    good = convert_frcnn_state_dict(export_frcnn_state_dict(FasterRCNN(cfg)))
    bad = dict(good)
    del bad["backbone.res2.0.conv1.weight"]
    bad["roi_heads.box_predictor.cls_score.weight"] = torch.zeros(1600, 2048)
    bad["roi_heads.box_head.fc6.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError) as err:
        load_state_dict_strict(FasterRCNN(cfg), bad, source="ckpt.bin")
    msg = str(err.value)
    assert "ckpt.bin" in msg
    assert "backbone.res2.0.conv1.weight (64, 64, 1, 1)" in msg
    assert "cls_score.weight: checkpoint (1600, 2048) vs model (1601, 2048)" in msg
    assert "roi_heads.box_head.fc6.weight (3, 3)" in msg
    # anchors may be absent: they are generated from the config then
    no_anchor = {k: v for k, v in good.items() if "cell_anchors" not in k}
    load_state_dict_strict(FasterRCNN(cfg), no_anchor)
    with pytest.raises(FileNotFoundError, match="frcnn-vg-finetuned"):
        load_frcnn_checkpoint(tmp_path / "missing.bin")
    (tmp_path / "junk.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.bin"):
        load_frcnn_checkpoint(tmp_path / "junk.bin")


def test_vocab_loading(tmp_path):
    p = tmp_path / "objects_vocab.txt"
    p.write_text("yolk\nsky,skies\nman\n")
    assert load_vocab(p, expected=3) == ["yolk", "sky", "man"]
    with pytest.raises(ValueError, match="3 names, expected 1600"):
        load_vocab(p, expected=1600)
    p.write_text("a\n\nb\n")
    with pytest.raises(ValueError, match="line 2"):
        load_vocab(p)


def test_config_json_and_demo_yaml(tmp_path):
    cfg = DetectorConfig(**TINY)
    cfg.save(tmp_path / "c.json")
    assert DetectorConfig.from_file(tmp_path / "c.json") == cfg
    (tmp_path / "bad.json").write_text('{"depht": 50}')
    with pytest.raises(ValueError, match="depht"):
        DetectorConfig.from_file(tmp_path / "bad.json")
    (tmp_path / "config.yaml").write_text(
        "MODEL:\n  MAX_POOL: true\n  PIXEL_MEAN: [102.9801, 115.9465, 122.7717]\n"
        "RESNETS:\n  DEPTH: 101\n  STRIDE_IN_1X1: true\n"
        "ANCHOR_GENERATOR:\n  SIZES: [[64, 128, 256, 512]]\n  ASPECT_RATIOS: [[0.5, 1.0, 2.0]]\n"
        "RPN:\n  PRE_NMS_TOPK_TEST: 6000\n  POST_NMS_TOPK_TEST: 300\n  NMS_THRESH: 0.7\n"
        "PROPOSAL_GENERATOR:\n  HIDDEN_CHANNELS: 512\n  MIN_SIZE: 0\n"
        "ROI_HEADS:\n  NUM_CLASSES: 1600\n"
        "ROI_BOX_HEAD:\n  NUM_ATTRS: 400\n  POOLER_RESOLUTION: 14\n  RES5HALVE: false\n"
        "INPUT:\n  MIN_SIZE_TEST: 600\n  MAX_SIZE_TEST: 1000\n"
    )
    assert DetectorConfig.from_file(tmp_path / "config.yaml") == DetectorConfig()


def test_load_image_errors_name_the_file(tmp_path):
    from PIL import Image

    from lxmert.detector import load_image

    p = tmp_path / "ok.png"
    Image.fromarray(np.zeros((5, 7), dtype=np.uint8)).save(p)  # grey-scale -> RGB
    assert load_image(p).shape == (5, 7, 3)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ValueError, match="bad.jpg"):
        load_image(bad)
    full = tmp_path / "full.jpg"
    Image.fromarray(image(64, 64)).save(full)
    (tmp_path / "cut.jpg").write_bytes(full.read_bytes()[:200])
    with pytest.raises(ValueError, match="cut.jpg"):
        load_image(tmp_path / "cut.jpg")


def test_folded_conv_norm_equals_conv_then_batchnorm():
    from lxmert.detector.backbone import ConvNorm

    g = torch.Generator().manual_seed(0)
    conv = ConvNorm(6, 5, 3, stride=2, padding=2, dilation=2)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
        n = conv.norm
        n.weight.copy_(torch.randn(5, generator=g))
        n.bias.copy_(torch.randn(5, generator=g))
        n.running_mean.copy_(torch.randn(5, generator=g))
        n.running_var.copy_(torch.rand(5, generator=g) + 0.5)
    x = torch.randn(2, 6, 11, 9, generator=g)
    plain = torch.nn.functional.conv2d(x, conv.weight, None, 2, 2, 2)
    ref = (plain - n.running_mean[:, None, None]) / torch.sqrt(n.running_var[:, None, None] + n.eps) \
        * n.weight[:, None, None] + n.bias[:, None, None]
    assert torch.allclose(conv(x), ref, atol=1e-5)
    assert torch.allclose(n(plain), ref, atol=1e-5)
