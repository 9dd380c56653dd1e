"""Box ops of the detector against slow, obviously-correct references."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lxmert.detector.ops import apply_deltas, box_iou, clip_boxes, nms, per_class_nms_max_score, roi_pool

torch.set_num_threads(1)


# ---------------------------------------------------------------------------------- helpers
def iou_scalar(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else math.nan


def nms_bruteforce(boxes: torch.Tensor, scores: torch.Tensor, t: float) -> list[int]:
    """The textbook greedy definition: visit by (score desc, index asc), keep a box unless
    it overlaps an already kept box by more than t."""
    iou = box_iou(boxes, boxes)  # shared IoU values: this checks the greedy logic
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    keep: list[int] = []
    for i in order:
        if all(not bool(iou[i, j] > t) for j in keep):
            keep.append(i)
    return keep


boxes_st = st.lists(
    st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(1, 30), st.integers(1, 30)),
    min_size=0, max_size=30,
)


def to_boxes(raw) -> torch.Tensor:
    if not raw:
        return torch.zeros(0, 4)
    t = torch.tensor(raw, dtype=torch.float32)
    return torch.stack([t[:, 0], t[:, 1], t[:, 0] + t[:, 2], t[:, 1] + t[:, 3]], dim=1)


# -------------------------------------------------------------------------------------- IoU
def test_box_iou_matches_scalar_formula():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(20, 2, generator=g) * 50
    wh = torch.rand(20, 2, generator=g) * 30 + 0.5
    b = torch.cat([xy, xy + wh], dim=1)
    got = box_iou(b, b).double()
    ref = torch.tensor([[iou_scalar(p.tolist(), q.tolist()) for q in b] for p in b], dtype=torch.float64)
    assert torch.allclose(got, ref, atol=1e-6)
    assert torch.allclose(torch.diagonal(got), torch.ones(20, dtype=torch.float64))


# -------------------------------------------------------------------------------------- NMS
@settings(max_examples=150, deadline=None)
@given(raw=boxes_st, data=st.data(), t=st.sampled_from([0.0, 0.3, 0.5, 0.7, 0.95]))
def test_nms_matches_bruteforce(raw, data, t):
    boxes = to_boxes(raw)
    # few distinct scores, so ties occur and the tie rule (lower index first) is exercised
    scores = torch.tensor(data.draw(st.lists(st.integers(0, 4), min_size=len(raw), max_size=len(raw))),
                          dtype=torch.float32)
    got = nms(boxes, scores, t, chunk=7).tolist()  # small chunk: the chunked path is used
    assert got == nms_bruteforce(boxes, scores, t)


def test_nms_empty_and_bad_shapes():
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0
    with pytest.raises(ValueError, match="boxes"):
        nms(torch.zeros(3, 5), torch.zeros(3), 0.5)


@settings(max_examples=40, deadline=None)
@given(raw=boxes_st.filter(lambda r: len(r) > 0), data=st.data())
def test_per_class_nms_max_score_matches_class_loop(raw, data):
    boxes = to_boxes(raw)
    c = data.draw(st.integers(1, 6))
    scores = torch.tensor(
        data.draw(st.lists(st.lists(st.integers(0, 9), min_size=c, max_size=c), min_size=len(raw), max_size=len(raw))),
        dtype=torch.float32) / 10
    ref = torch.zeros(len(raw))
    for k in range(c):  # the release's loop: one NMS per class, keep the max kept score
        keep = torch.tensor(nms_bruteforce(boxes, scores[:, k], 0.3), dtype=torch.long)
        ref[keep] = torch.maximum(ref[keep], scores[keep, k])
    assert torch.equal(per_class_nms_max_score(boxes, scores, 0.3), ref)


def test_per_class_nms_many_boxes_bitset_words():
    # > 64 boxes: overlaps span several 64-bit words
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(150, 2, generator=g) * 100
    b = torch.cat([xy, xy + torch.rand(150, 2, generator=g) * 40 + 1], dim=1)
    s = torch.rand(150, 5, generator=g)
    ref = torch.zeros(150)
    for k in range(5):
        keep = nms(b, s[:, k], 0.3)
        ref[keep] = torch.maximum(ref[keep], s[keep, k])
    assert torch.equal(per_class_nms_max_score(b, s, 0.3), ref)


# ------------------------------------------------------------------------- deltas, clipping
def test_apply_deltas_identity_and_known_shift():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 20.0], [5.0, 5.0, 7.0, 9.0]])
    assert torch.allclose(apply_deltas(torch.zeros(2, 8), anchors, (1, 1, 1, 1)), anchors.repeat(1, 2))
    # dx = 0.5 shifts by half the width; dw = log 2 doubles the width around the centre
    d = torch.tensor([[0.5, 0.0, math.log(2.0), 0.0]])
    out = apply_deltas(d, anchors[:1], (1, 1, 1, 1))
    assert torch.allclose(out, torch.tensor([[0.0, 0.0, 20.0, 20.0]]))
    # weights divide the deltas (RoI head uses 10, 10, 5, 5)
    assert torch.allclose(apply_deltas(d * torch.tensor([10.0, 10, 5, 5]), anchors[:1], (10, 10, 5, 5)), out)


def test_clip_boxes_and_nonfinite():
    b = torch.tensor([[-5.0, -1.0, 50.0, 30.0]])
    assert clip_boxes(b, 20, 40).tolist() == [[0.0, 0.0, 40.0, 20.0]]
    with pytest.raises(ValueError, match="inf or NaN"):
        clip_boxes(torch.tensor([[0.0, 0.0, float("inf"), 1.0]]), 10, 10)


# ---------------------------------------------------------------------------------- RoIPool
def roi_pool_loop(feat: torch.Tensor, rois: torch.Tensor, p: int, scale: float) -> torch.Tensor:
    """Caffe's RoIPool written as the original nested loops (one box, one bin at a time)."""
    n, c, h, w = feat.shape
    out = torch.zeros(len(rois), c, p, p)
    rnd = lambda v: math.floor(abs(v) + 0.5) * (1 if v >= 0 else -1)  # C round()
    for k, (bi, x1, y1, x2, y2) in enumerate(rois.tolist()):
        sx, sy = rnd(x1 * scale), rnd(y1 * scale)
        ex, ey = rnd(x2 * scale), rnd(y2 * scale)
        rh, rw = max(ey - sy + 1, 1), max(ex - sx + 1, 1)
        bh, bw = rh / p, rw / p
        for ph in range(p):
            for pw in range(p):
                hs = min(max(math.floor(ph * bh) + sy, 0), h)
                he = min(max(math.ceil((ph + 1) * bh) + sy, 0), h)
                ws = min(max(math.floor(pw * bw) + sx, 0), w)
                we = min(max(math.ceil((pw + 1) * bw) + sx, 0), w)
                if he > hs and we > ws:
                    out[k, :, ph, pw] = feat[int(bi), :, hs:he, ws:we].amax(dim=(1, 2))
    return out


@pytest.mark.parametrize("p", [3, 7])
def test_roi_pool_matches_per_box_loop(p):
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(2, 5, 9, 13, generator=g)
    stride = 16.0
    rois = [
        [0, 0.0, 0.0, 13 * 16.0, 9 * 16.0],  # whole map
        [1, 10.0, 20.0, 60.0, 40.0],  # small: bins of one cell, repeated cells
        [0, 100.0, 50.0, 230.0, 160.0],  # runs past the right/bottom edges
        [1, -30.0, -20.0, 40.0, 30.0],  # negative corner (round half away from zero)
        [0, 8.0, 8.0, 8.0, 8.0],  # point box
        [1, 300.0, 200.0, 400.0, 300.0],  # fully outside: all bins empty -> 0
        [0, 24.0, 40.0, 200.0, 56.0],  # thin
    ]
    rois_t = torch.tensor(rois)
    got = roi_pool(feat, rois_t, p, 1 / stride, chunk=3)
    ref = roi_pool_loop(feat, rois_t, p, 1 / stride)
    assert torch.equal(got, ref)
    assert torch.equal(got[5], torch.zeros_like(got[5]))


def test_roi_pool_random_boxes_match_loop():
    g = torch.Generator().manual_seed(3)
    feat = torch.randn(1, 4, 17, 11, generator=g)
    xy = torch.rand(25, 2, generator=g) * torch.tensor([11 * 16.0, 17 * 16.0])
    wh = torch.rand(25, 2, generator=g) * 150
    rois = torch.cat([torch.zeros(25, 1), xy, xy + wh], dim=1)
    assert torch.equal(roi_pool(feat, rois, 14, 1 / 16), roi_pool_loop(feat, rois, 14, 1 / 16))


def test_roi_pool_bad_batch_index():
    with pytest.raises(ValueError, match="batch index"):
        roi_pool(torch.zeros(1, 2, 4, 4), torch.tensor([[1.0, 0, 0, 8, 8]]), 2, 1 / 16)
