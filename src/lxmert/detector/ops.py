"""Box operations in plain torch: IoU, NMS, box decoding, RoI max pooling.

torchvision's compiled ops are unavailable here, so these are written with tensor
operations only. Each follows the semantics of the op the Hugging Face port of the Caffe
detector called (``torchvision.ops.nms`` / ``RoIPool``, detectron2's ``Box2BoxTransform``),
because the converted weights were validated with exactly those:

* boxes are ``(x1, y1, x2, y2)`` in continuous coordinates, width ``x2 - x1`` (no Caffe
  ``+ 1``);
* NMS suppresses a box when its IoU with a kept, higher-scoring box is strictly greater than
  the threshold; equal scores keep the lower index first (stable order), which makes the
  result a pure function of the inputs;
* RoI pooling is Caffe's RoIPool (max over quantised bins, rounding the scaled box corners
  half away from zero; empty bins give 0), which is what the demo's ``ROIPooler`` used.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch

__all__ = [
    "apply_deltas",
    "box_area",
    "box_iou",
    "clip_boxes",
    "iter_roi_pool",
    "nms",
    "per_class_nms_max_score",
    "roi_pool",
]

# detectron2's clamp on dw/dh: no box grows beyond what turns 16 px into 1000 px.
_SCALE_CLAMP = math.log(1000.0 / 16)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU ``[len(a), len(b)]``; degenerate pairs (union 0) give NaN, never > t."""
    area_a, area_b = box_area(a), box_area(b)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, *, chunk: int = 1024) -> torch.Tensor:
    """Greedy non-maximum suppression; returns kept indices sorted by decreasing score.

    The pairwise "IoU > threshold" matrix is built in row chunks (6000 RPN boxes need a
    36 MB boolean matrix) and the greedy pass runs over numpy rows, touching only the boxes
    that survive, which keeps it in the millisecond range without a compiled kernel.
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(f"nms needs boxes [N, 4] and scores [N], got {tuple(boxes.shape)}, {tuple(scores.shape)}")
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order].float()
    over = np.empty((n, n), dtype=bool)
    for start in range(0, n, chunk):
        over[start : start + chunk] = (box_iou(b[start : start + chunk], b) > iou_threshold).cpu().numpy()
    removed = np.zeros(n, dtype=bool)
    keep: list[int] = []
    for i in range(n):
        if removed[i]:
            continue
        keep.append(i)
        removed[i + 1 :] |= over[i, i + 1 :]
    return order[torch.as_tensor(keep, dtype=torch.long, device=boxes.device)]


def per_class_nms_max_score(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """For each box, its best score over the classes in whose NMS it survives (0 if none).

    This is the selection rule of bottom-up attention's ``generate_tsv.py``: the *same*
    boxes (the proposals) are suppressed once per class with that class's scores, and each
    box keeps the maximum score among the classes that kept it. Because the boxes are shared,
    the overlap matrix is computed once and the greedy passes of all classes run together
    (one step per rank), instead of ``num_classes`` separate NMS calls.

    Args:
        boxes: ``[R, 4]``.
        scores: ``[R, C]`` per-class scores (background excluded).
    Returns:
        ``[R]`` max score over kept (box, class) pairs.
    """
    r, c = scores.shape
    if boxes.shape != (r, 4):
        raise ValueError(f"boxes {tuple(boxes.shape)} do not match scores {tuple(scores.shape)}")
    if r == 0:
        return scores.new_zeros(0)
    # Overlaps as bitsets: row i is a [words] uint64 vector whose bit j says "IoU(i, j) > t".
    over = (box_iou(boxes.float(), boxes.float()) > iou_threshold).cpu().numpy()
    words = (r + 63) // 64
    padded = np.zeros((r, words * 64), dtype=bool)
    padded[:, :r] = over
    over_bits = np.packbits(padded, axis=1, bitorder="little").view("<u8")  # [R, words]
    order = torch.sort(scores, dim=0, descending=True, stable=True).indices.cpu().numpy()  # [R, C]
    cls = np.arange(c)
    suppressed = np.zeros((c, words), dtype="<u8")
    kept = np.zeros((c, r), dtype=bool)
    one = np.uint64(1)
    for rank in range(r):
        cand = order[rank]  # [C]: the box at this rank, for every class
        bit = (suppressed[cls, cand >> 6] >> (cand & 63).astype(np.uint64)) & one
        live = bit == 0
        lc, lb = cls[live], cand[live]
        kept[lc, lb] = True
        suppressed[lc] |= over_bits[lb]
    kept_t = torch.from_numpy(kept.T.copy()).to(scores.device)
    return torch.where(kept_t, scores, scores.new_zeros(())).amax(dim=1)


def apply_deltas(
    deltas: torch.Tensor, boxes: torch.Tensor, weights: tuple[float, float, float, float]
) -> torch.Tensor:
    """Decode ``(dx, dy, dw, dh)`` deltas ``[N, 4k]`` relative to ``boxes [N, 4]`` (R-CNN)."""
    boxes = boxes.to(deltas.dtype)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx = deltas[:, 0::4] / wx
    dy = deltas[:, 1::4] / wy
    dw = (deltas[:, 2::4] / ww).clamp(max=_SCALE_CLAMP)
    dh = (deltas[:, 3::4] / wh).clamp(max=_SCALE_CLAMP)
    px = dx * widths[:, None] + ctr_x[:, None]
    py = dy * heights[:, None] + ctr_y[:, None]
    pw = torch.exp(dw) * widths[:, None]
    ph = torch.exp(dh) * heights[:, None]
    out = torch.stack((px - 0.5 * pw, py - 0.5 * ph, px + 0.5 * pw, py + 0.5 * ph), dim=-1)
    return out.reshape(deltas.shape)


def clip_boxes(boxes: torch.Tensor, height: float, width: float) -> torch.Tensor:
    """Clamp x to ``[0, width]`` and y to ``[0, height]`` (returns a new tensor)."""
    if not torch.isfinite(boxes).all():
        raise ValueError("box tensor contains inf or NaN (diverged regression?)")
    x = boxes[:, 0::2].clamp(0, width)
    y = boxes[:, 1::2].clamp(0, height)
    return torch.stack((x[:, 0], y[:, 0], x[:, 1], y[:, 1]), dim=1)


def _round_half_away(v: torch.Tensor) -> torch.Tensor:
    # C's round(), which torchvision's RoIPool uses; torch.round rounds half to even.
    return torch.sign(v) * torch.floor(v.abs() + 0.5)


def _bins(start: torch.Tensor, end: torch.Tensor, pooled: int, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Caffe RoIPool bin edges ``[K, pooled]`` along one axis, clipped to ``[0, limit]``."""
    length = (end - start + 1).clamp(min=1).to(torch.float32)
    size = length / pooled
    p = torch.arange(pooled, dtype=torch.float32, device=start.device)
    lo = torch.floor(p[None, :] * size[:, None]).long() + start[:, None]
    hi = torch.ceil((p[None, :] + 1) * size[:, None]).long() + start[:, None]
    return lo.clamp(0, limit), hi.clamp(0, limit)


def roi_pool(
    features: torch.Tensor,
    rois: torch.Tensor,
    output_size: int,
    spatial_scale: float,
    *,
    chunk: int = 64,
) -> torch.Tensor:
    """Caffe/torchvision RoIPool, vectorised over boxes and bins.

    Args:
        features: ``[N, C, H, W]``.
        rois: ``[K, 5]`` rows ``(batch_index, x1, y1, x2, y2)`` in input-image pixels.
        output_size: pooled height = width (14 for the VG detector).
        spatial_scale: 1 / feature stride.
    Returns:
        ``[K, C, output_size, output_size]``.

    See :func:`iter_roi_pool` for the method; this collects its chunks.
    """
    if features.ndim != 4 or rois.ndim != 2 or rois.shape[1] != 5:
        raise ValueError(f"roi_pool needs features [N,C,H,W] and rois [K,5], got {tuple(features.shape)}, {tuple(rois.shape)}")
    out = features.new_zeros(rois.shape[0], features.shape[1], output_size, output_size)
    s = 0
    for pooled in iter_roi_pool(features, rois, output_size, spatial_scale, chunk=chunk):
        out[s : s + len(pooled)] = pooled
        s += len(pooled)
    return out


def iter_roi_pool(
    features: torch.Tensor,
    rois: torch.Tensor,
    output_size: int,
    spatial_scale: float,
    *,
    chunk: int = 64,
) -> Iterator[torch.Tensor]:
    """:func:`roi_pool`, ``chunk`` boxes at a time: yields ``[<=chunk, C, P, P]`` in box order.

    Every bin is a max over an integer rectangle. A 2-D sparse table holds, for each power-of-
    two window ``2^a x 2^b``, the max over that window starting at every cell; the max over
    any rectangle is then the max of four (possibly overlapping) table lookups. The tables are
    stored channels-last so each lookup is a row gather of ``C`` contiguous values. The table
    is built once for all boxes, while the caller consumes (res5, say) one chunk at a time,
    which bounds the memory of the pooled maps without rebuilding the table per chunk.
    """
    if features.ndim != 4 or rois.ndim != 2 or rois.shape[1] != 5:
        raise ValueError(f"roi_pool needs features [N,C,H,W] and rois [K,5], got {tuple(features.shape)}, {tuple(rois.shape)}")
    n, c, h, w = features.shape
    k = rois.shape[0]
    if k == 0:
        return
    r = rois.to(torch.float32)
    scale = torch.tensor(spatial_scale, dtype=torch.float32)
    x1, y1, x2, y2 = (_round_half_away(r[:, i] * scale).long() for i in range(1, 5))
    hs, he = _bins(y1, y2, output_size, h)  # [K, P]
    ws, we = _bins(x1, x2, output_size, w)
    len_h, len_w = he - hs, we - ws
    levels_h = int(math.floor(math.log2(max(int(len_h.max()), 1)))) + 1
    levels_w = int(math.floor(math.log2(max(int(len_w.max()), 1)))) + 1

    # Sparse table T[a][b][n, y, x, :] = max over rows y..y+2^a-1, cols x..x+2^b-1.
    neg = torch.finfo(features.dtype).min
    base = features.permute(0, 2, 3, 1).contiguous()  # N, H, W, C
    rows = [base]
    for a in range(1, levels_h):
        prev, s = rows[-1], 1 << (a - 1)
        nxt = torch.full_like(prev, neg)
        nxt[:, : h - s] = torch.maximum(prev[:, : h - s], prev[:, s:])
        rows.append(nxt)
    table = []
    for t in rows:
        cols = [t]
        for b in range(1, levels_w):
            prev, s = cols[-1], 1 << (b - 1)
            nxt = torch.full_like(prev, neg)
            nxt[:, :, : w - s] = torch.maximum(prev[:, :, : w - s], prev[:, :, s:])
            cols.append(nxt)
        table.append(torch.stack(cols))
    flat = torch.stack(table).reshape(-1, c)  # [(A*B*N*H*W), C]

    def level(length: torch.Tensor) -> torch.Tensor:
        return torch.floor(torch.log2(length.clamp(min=1).to(torch.float32))).long()

    ah, aw = level(len_h), level(len_w)  # [K, P]
    hs2 = (he - (1 << ah)).clamp(min=0)
    ws2 = (we - (1 << aw)).clamp(min=0)
    batch = rois[:, 0].long()
    if batch.numel() and (int(batch.min()) < 0 or int(batch.max()) >= n):
        raise ValueError(f"roi batch index out of range [0, {n})")
    empty = (len_h <= 0)[:, :, None] | (len_w <= 0)[:, None, :]  # [K, P, P]

    def index(a, b, nn_, y, x):  # all broadcast to [K, P, P]
        return (((a * levels_w + b) * n + nn_) * h + y) * w + x

    for s in range(0, k, chunk):
        e = min(s + chunk, k)
        A = ah[s:e, :, None]
        B = aw[s:e, None, :]
        N_ = batch[s:e, None, None]
        Y0, Y1 = hs[s:e, :, None].clamp(max=h - 1), hs2[s:e, :, None]
        X0, X1 = ws[s:e, None, :].clamp(max=w - 1), ws2[s:e, None, :]
        m = flat[index(A, B, N_, Y0, X0)]
        m = torch.maximum(m, flat[index(A, B, N_, Y1, X0)])
        m = torch.maximum(m, flat[index(A, B, N_, Y0, X1)])
        m = torch.maximum(m, flat[index(A, B, N_, Y1, X1)])  # [k, P, P, C]
        m = m.masked_fill(empty[s:e, :, :, None], 0)
        yield m.permute(0, 3, 1, 2).contiguous()  # NCHW, the layout res5's convolutions were timed in
