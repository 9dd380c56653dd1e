"""Detector test helpers: a tiny configuration, smooth random pictures, and the comparison of
two records of one image (batched vs one at a time extraction)."""

from __future__ import annotations

import numpy as np

__all__ = ["assert_same_record", "image", "TINY", "FEATURE_RTOL", "BOX_ATOL", "PROB_ATOL"]

# Real layer widths (2048-d features, 1601 classes, 12 anchors), one block per stage and a
# small pooled grid so a forward pass takes well under a second.
TINY = dict(blocks=(1, 1, 1, 1), min_size=128, max_size=200, rpn_post_nms_topk=80, pooler_resolution=4)

# float rounding of shape-dependent conv kernels (see the module docstring)
FEATURE_RTOL = 1e-5  # relative to the largest feature of the image
BOX_ATOL = 1e-2  # pixels of the original image
PROB_ATOL = 1e-6



def assert_same_record(a: dict, b: dict) -> None:
    """Same boxes (as a set, coordinates to ``BOX_ATOL``) with the same ids, features and
    probabilities; their order may differ only among boxes whose scores tie.

    Ties are real: thin boxes that RoIPool quantises to the same bins get bit-identical
    features and scores, and the selection then keeps them in proposal order, which float
    rounding of the RPN's objectness can flip.
    """
    assert a["img_id"] == b["img_id"] and (a["img_h"], a["img_w"]) == (b["img_h"], b["img_w"])
    n = a["num_boxes"]
    assert n == b["num_boxes"], a["img_id"]
    dist = np.abs(a["boxes"][:, None, :] - b["boxes"][None, :, :]).max(-1)
    perm = dist.argmin(1)  # box i of `a` is box perm[i] of `b`
    assert (dist[np.arange(n), perm] <= BOX_ATOL).all(), (a["img_id"], dist.min(1).max())
    assert sorted(perm.tolist()) == list(range(n)), a["img_id"]
    conf = a["objects_conf"]
    for i in range(n):
        for j in range(i + 1, n):
            if perm[i] > perm[j]:  # order swapped: only allowed for tied scores
                assert abs(conf[i] - conf[j]) <= PROB_ATOL, (a["img_id"], i, j, conf[i], conf[j])
    for k in ("objects_id", "attrs_id"):
        assert np.array_equal(a[k], b[k][perm]), (a["img_id"], k)
    scale = float(np.abs(a["features"]).max())
    np.testing.assert_allclose(b["features"][perm], a["features"], rtol=0, atol=FEATURE_RTOL * scale,
                               err_msg=a["img_id"])
    for k in ("objects_conf", "attrs_conf"):
        np.testing.assert_allclose(b[k][perm], a[k], rtol=0, atol=PROB_ATOL, err_msg=f"{a['img_id']} {k}")


def image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random picture (blobs, not white noise), uint8 RGB."""
    rng = np.random.RandomState(seed)
    small = rng.rand(max(h // 8, 2), max(w // 8, 2), 3)
    big = np.kron(small, np.ones((8, 8, 1)))[:h, :w]
    big = np.pad(big, ((0, max(0, h - big.shape[0])), (0, max(0, w - big.shape[1])), (0, 0)), mode="edge")
    return (big * 255).astype(np.uint8)
