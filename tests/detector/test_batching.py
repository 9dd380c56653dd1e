"""Batched extraction gives each image the boxes and features it gets alone.

Images of different sizes and aspect ratios go through ``FeatureExtractor.extract`` (the
path ``lxmert extract --batch N`` runs) one at a time and in batches, and the records are
compared. The model cuts every image out of the padded batch and runs images of one size
together, so an image whose size is unique in its batch is computed exactly as alone and
must come out bit-identical. Images that share a size share a backbone pass of N > 1, and
oneDNN chooses its convolution kernels by tensor shape, N included; two kernels may sum in
another order, which moves results by a few float32 ulps. For those the comparison is
exact for everything discrete (box counts, which boxes, class and attribute ids, the order
of boxes whose scores differ) and to float rounding for the numbers, with tolerances two
orders of magnitude tighter than the smallest effect padding had before.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lxmert.detector import DetectorConfig, FasterRCNN, FeatureExtractor, random_init_, to_model_input
from lxmert.detector.preprocess import batch_images

from support.detector import TINY, assert_same_record, image

torch.set_num_threads(1)


# (h, w) of decoded images: landscape, portrait, square, long and thin, odd sizes; after
# resizing they differ in both height and width, so every image but the largest is padded.
# The last one resizes to the first one's size: those two share a backbone pass.
SHAPES = [(120, 160), (90, 100), (200, 90), (77, 131), (150, 150), (61, 200), (240, 320)]

def extract_both(ex: FeatureExtractor, items: list, batch_sizes: tuple[int, ...]) -> tuple[list, dict]:
    single = [next(iter(ex.extract([it]))) for it in items]
    return single, {bs: list(ex.extract(items, batch_size=bs)) for bs in batch_sizes}


def assert_identical_record(a: dict, b: dict) -> None:
    for k, v in a.items():
        assert np.array_equal(v, b[k]) if isinstance(v, np.ndarray) else v == b[k], (a["img_id"], k)


def test_batched_extraction_equals_single():
    ex = FeatureExtractor.from_weights(None, DetectorConfig(**TINY), random_init=True, seed=0)
    items = [(f"img{i}", image(h, w, seed=i)) for i, (h, w) in enumerate(SHAPES)]
    sizes = [ex.prepare(im).size for _, im in items]
    assert len({h for h, _ in sizes}) > 2 and len({w for _, w in sizes}) > 2  # really mixed sizes
    assert sizes[0] == sizes[-1] and len(set(sizes)) == len(sizes) - 1
    single, batched = extract_both(ex, items, (2, 3, len(items)))  # 3: a last, partial batch of 1
    for bs, records in batched.items():
        assert [r["img_id"] for r in records] == [r["img_id"] for r in single]
        for i, (a, b) in enumerate(zip(single, records)):
            batch_sizes = sizes[i - i % bs : i - i % bs + bs]
            if batch_sizes.count(sizes[i]) == 1:  # alone with its size: computed exactly as alone
                assert_identical_record(a, b)
            else:
                assert_same_record(a, b)


def test_images_of_one_size_share_a_backbone_pass_and_padding_is_never_computed():
    cfg = DetectorConfig(**TINY)
    model = random_init_(FasterRCNN(cfg), seed=0).eval()
    preps = [to_model_input(image(h, w, i), cfg) for i, (h, w) in enumerate([(120, 160), (90, 100), (240, 320)])]
    calls: list[tuple[int, ...]] = []
    model.backbone.register_forward_hook(lambda _m, args, _out: calls.append(tuple(args[0].shape)))
    batch, sizes = batch_images(preps)
    outs = model(batch, sizes)
    (h0, w0), (h1, w1) = sizes[0], sizes[1]
    assert sizes[2] == (h0, w0) and (h1, w1) != (h0, w0)
    assert calls == [(2, 3, h0, w0), (1, 3, h1, w1)]  # no padded pixel goes through the backbone
    alone = model(preps[1].tensor[None], [preps[1].size])[0]
    assert torch.equal(outs[1].features, alone.features) and torch.equal(outs[1].boxes, alone.boxes)


def test_backbone_on_the_padded_batch_would_change_features():
    """Why the model cuts images out instead of running the backbone on the padded batch:
    zero padding of the input alone changes the smaller image's res4 map inside the image
    (bias + ReLU turn the padding non-zero after the first conv), far beyond the float
    rounding tolerated above."""
    cfg = DetectorConfig(**TINY)
    model = random_init_(FasterRCNN(cfg), seed=0).eval()
    big, small = to_model_input(image(200, 90, 1), cfg), to_model_input(image(120, 160, 2), cfg)
    batch, _ = batch_images([big, small])
    with torch.inference_mode():
        alone = model.backbone(small.tensor[None])[0]
        fh, fw = alone.shape[-2:]
        padded = model.backbone(batch)[1]
    assert padded.shape[-2:] != alone.shape[-2:]  # the small image really is padded
    scale = float(alone.abs().max())
    assert float((padded[:, :fh, :fw] - alone).abs().max()) > 1e-2 * scale
    outs = model(batch, [big.size, small.size])
    assert torch.equal(outs[1].features, model(small.tensor[None], [small.size])[0].features)


def test_padding_value_does_not_matter():
    """The model API takes any padded batch: what the padding holds never reaches a result."""
    cfg = DetectorConfig(**TINY)
    model = random_init_(FasterRCNN(cfg), seed=3).eval()
    preps = [to_model_input(image(h, w, i), cfg) for i, (h, w) in enumerate(SHAPES[:3])]
    batch, sizes = batch_images(preps)
    garbage = batch.clone()
    for i, (h, w) in enumerate(sizes):
        garbage[i, :, h:, :] = 1e4
        garbage[i, :, :, w:] = -1e4
    a, b = model(batch, sizes), model(garbage, sizes)
    assert batch.abs().max() < 1e3  # the caller's tensors are not modified in place
    for x, y in zip(a, b):
        assert torch.equal(x.boxes, y.boxes) and torch.equal(x.features, y.features)
        assert torch.equal(x.cls_probs, y.cls_probs)


def test_proposals_stay_inside_each_image_and_match_single():
    """The reported bug: proposals clipped to the padded canvas, not to each image."""
    cfg = DetectorConfig(**TINY)
    model = random_init_(FasterRCNN(cfg), seed=0).eval()
    preps = [to_model_input(image(h, w, i), cfg) for i, (h, w) in enumerate(SHAPES)]
    batch, sizes = batch_images(preps)
    outs = model(batch, sizes)
    for p, out in zip(preps, outs):
        h, w = p.size
        assert (out.boxes[:, 2] <= w).all() and (out.boxes[:, 3] <= h).all()
        alone = model(p.tensor[None], [p.size])[0]
        assert out.boxes.shape == alone.boxes.shape
        assert torch.allclose(out.boxes, alone.boxes, rtol=0, atol=1e-3)


def test_full_resnet101_batched_equals_single():
    """The real architecture (ResNet-101: 23 res4 blocks, 3 res5 blocks, 2048-d features,
    1601 classes) on small inputs: three images of different aspect ratios, one batch."""
    cfg = DetectorConfig(min_size=128, max_size=176, rpn_post_nms_topk=40, pooler_resolution=7)
    ex = FeatureExtractor.from_weights(None, cfg, random_init=True, seed=1)
    assert len(ex.model.backbone.res4) == 23 and len(ex.model.roi_heads.res5) == 3
    items = [("wide", image(96, 130, 1)), ("tall", image(140, 100, 2)), ("square", image(110, 110, 3))]
    single, batched = extract_both(ex, items, (3,))
    assert len({ex.prepare(im).size for _, im in items}) == 3  # three sizes: each computed as alone
    for a, b in zip(single, batched[3]):
        assert a["num_boxes"] == 36
        assert_identical_record(a, b)


def test_bad_image_sizes_are_refused():
    cfg = DetectorConfig(**TINY)
    model = FasterRCNN(cfg)
    x = torch.zeros(2, 3, 64, 64)
    with pytest.raises(ValueError, match="does not fit the padded batch"):
        model(x, [(64, 64), (65, 10)])
    with pytest.raises(ValueError, match="2 image sizes for a batch of 1"):
        model(x[:1], [(64, 64), (32, 32)])
