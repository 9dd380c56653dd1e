"""The Visual Genome Faster R-CNN (ResNet-101 C4) of bottom-up attention, in plain torch.

``FasterRCNN`` = ``backbone`` (stem, res2-res4, stride 16) -> ``proposal_generator`` (RPN:
anchors, decoding, clipping, top-k, NMS) -> ``roi_heads`` (RoIPool 14x14 on res4, res5
with dilation 2, mean pool to 2048, class / box / attribute predictors). Submodule and
parameter names are those of the converted-Caffe checkpoint of the Hugging Face demo.

The forward pass stops at what feature extraction needs: proposals, per-proposal class and
attribute probabilities and the pooled features. Box regression (``bbox_pred``) is kept so
the weights load and :meth:`FasterRCNN.regressed_boxes` can decode detections, but
extraction uses the proposal boxes themselves, as the release did.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lxmert.detector.backbone import ResNetC4, make_res5
from lxmert.detector.config import DetectorConfig
from lxmert.detector.ops import apply_deltas, clip_boxes, iter_roi_pool, nms

__all__ = ["AnchorGenerator", "DetectorOutput", "FasterRCNN", "RPN", "RPNHead", "Res5ROIHeads", "BoxPredictor"]


def cell_anchors(sizes: tuple[float, ...], ratios: tuple[float, ...]) -> torch.Tensor:
    """Anchors centred on (0, 0), size-major (detectron2 order): ``[len(sizes)*len(ratios), 4]``.

    ``ratio`` is height / width and every anchor of one size has area ``size**2``.
    """
    rows = []
    for size in sizes:
        for ratio in ratios:
            w = (size * size / ratio) ** 0.5
            h = ratio * w
            rows.append([-w / 2, -h / 2, w / 2, h / 2])
    return torch.tensor(rows, dtype=torch.float32)


class AnchorGenerator(nn.Module):
    """Tiles the cell anchors over the feature grid (one cell every ``stride`` pixels).

    ``cell_anchors`` is a buffer: the converted checkpoint stores the 12 anchors it was
    trained with (key ``...cell_anchors.0``) and loading them makes the anchor order and
    exact coordinates those of the weights rather than of this formula.
    """

    def __init__(self, cfg: DetectorConfig):
        super().__init__()
        self.stride = cfg.feature_stride
        self.offset = cfg.anchor_offset
        self.register_buffer("cell_anchors", cell_anchors(cfg.anchor_sizes, cfg.anchor_ratios))

    def forward(self, height: int, width: int) -> torch.Tensor:
        """All anchors ``[height * width * A, 4]``, location-major then anchor."""
        dev = self.cell_anchors.device
        xs = torch.arange(width, device=dev, dtype=torch.float32) * self.stride + self.offset * self.stride
        ys = torch.arange(height, device=dev, dtype=torch.float32) * self.stride + self.offset * self.stride
        sy, sx = torch.meshgrid(ys, xs, indexing="ij")
        shifts = torch.stack((sx, sy, sx, sy), dim=-1).reshape(-1, 1, 4)
        return (shifts + self.cell_anchors[None]).reshape(-1, 4)


class RPNHead(nn.Module):
    """3x3 conv (512) + ReLU, then 1x1 convs to A objectness logits and 4A box deltas."""

    def __init__(self, cfg: DetectorConfig):
        super().__init__()
        a = cfg.num_anchors
        self.conv = nn.Conv2d(cfg.res4_channels, cfg.rpn_channels, 3, padding=1)
        self.objectness_logits = nn.Conv2d(cfg.rpn_channels, a, 1)
        self.anchor_deltas = nn.Conv2d(cfg.rpn_channels, a * 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = F.relu(self.conv(x))
        return self.objectness_logits(t), self.anchor_deltas(t)


class RPN(nn.Module):
    """Region proposals: decode every anchor, keep the top ``pre_nms_topk`` by objectness,
    clip to the image, drop boxes with a side <= ``min_size``, NMS, keep ``post_nms_topk``.

    In a padded batch each image's proposals come from its own part of the feature grid
    (``feature_sizes``): anchors over the padding would otherwise compete for the top-k and,
    once clipped to the image, displace real proposals.
    """

    def __init__(self, cfg: DetectorConfig):
        super().__init__()
        self.cfg = cfg
        self.anchor_generator = AnchorGenerator(cfg)
        self.rpn_head = RPNHead(cfg)

    def forward(self, features: torch.Tensor, image_sizes: list[tuple[int, int]],
                feature_sizes: list[tuple[int, int]] | None = None) -> list[torch.Tensor]:
        """Proposals ``[R_i, 4]`` per image, in input pixels, clipped to ``image_sizes[i]``.

        ``feature_sizes`` are each image's valid (h, w) on the feature grid (None: the whole
        grid, the case of unpadded images); the padding of ``features`` must be zero.
        """
        cfg = self.cfg
        logits, deltas = self.rpn_head(features)
        n, a, h, w = logits.shape
        if self.anchor_generator.cell_anchors.shape[0] != a:
            raise ValueError(f"{self.anchor_generator.cell_anchors.shape[0]} cell anchors but the RPN head predicts {a}")
        if feature_sizes is None:
            feature_sizes = [(h, w)] * n
        if len(image_sizes) != n or len(feature_sizes) != n:
            raise ValueError(f"{len(image_sizes)} image sizes and {len(feature_sizes)} feature sizes for {n} images")
        deltas = deltas.view(n, a, 4, h, w)
        anchors_by_grid: dict[tuple[int, int], torch.Tensor] = {}
        proposals = []
        for i, ((ih, iw), (fh, fw)) in enumerate(zip(image_sizes, feature_sizes)):
            if (fh, fw) not in anchors_by_grid:
                anchors_by_grid[(fh, fw)] = self.anchor_generator(fh, fw)  # [fh*fw*A, 4]
            anchors = anchors_by_grid[(fh, fw)]
            # location-major then anchor: the order a lone image's flattened map has
            logits_i = logits[i, :, :fh, :fw].permute(1, 2, 0).reshape(-1)
            deltas_i = deltas[i, :, :, :fh, :fw].permute(2, 3, 0, 1).reshape(-1, 4)
            k = min(cfg.rpn_pre_nms_topk, logits_i.shape[0])
            # stable sort: ties resolve by position
            top = torch.sort(logits_i, descending=True, stable=True).indices[:k]
            boxes = apply_deltas(deltas_i[top], anchors[top], cfg.rpn_bbox_weights)
            boxes = clip_boxes(boxes, ih, iw)
            scores = logits_i[top]
            wh = boxes[:, 2:] - boxes[:, :2]
            ok = (wh > cfg.rpn_min_size).all(dim=1)
            boxes, scores = boxes[ok], scores[ok]
            keep = nms(boxes, scores, cfg.rpn_nms_thresh)[: cfg.rpn_post_nms_topk]
            proposals.append(boxes[keep])
        return proposals


class BoxPredictor(nn.Module):
    """Class scores (1601), class-specific box deltas (1600 x 4) and the attribute head.

    The attribute head embeds the arg-max class (background included, as in the Caffe
    prototxt's ArgMax over ``cls_prob``), concatenates it to the region feature and scores
    401 attributes through a 512-wide hidden layer.
    """

    def __init__(self, cfg: DetectorConfig):
        super().__init__()
        d = cfg.head_channels
        emb = d // 8  # 256 for the real model
        self.cls_score = nn.Linear(d, cfg.num_classes + 1)
        self.bbox_pred = nn.Linear(d, cfg.num_classes * 4)
        self.cls_embedding = nn.Embedding(cfg.num_classes + 1, emb)
        self.fc_attr = nn.Linear(d + emb, d // 4)
        self.attr_score = nn.Linear(d // 4, cfg.num_attrs + 1)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cls_logits = self.cls_score(feats)
        emb = self.cls_embedding(cls_logits.argmax(dim=-1))
        attr_logits = self.attr_score(F.relu(self.fc_attr(torch.cat([feats, emb], dim=-1))))
        return cls_logits, attr_logits


class Res5ROIHeads(nn.Module):
    """RoIPool 14x14 on res4 -> res5 -> mean over the 14x14 grid -> predictors.

    Every image of a batch is pooled from its own valid part of the feature map and runs
    through res5 and the predictors in its own chunks, so its features and probabilities
    are computed from exactly the tensors, of exactly the shapes, it would have alone;
    batching several images into one res5 call would not save work anyway (the cost is
    per proposal and the chunks bound the call size).
    """

    def __init__(self, cfg: DetectorConfig):
        super().__init__()
        self.cfg = cfg
        self.res5 = make_res5(cfg)
        self.box_predictor = BoxPredictor(cfg)

    def pooled_features(self, features: torch.Tensor, boxes: torch.Tensor, *, chunk: int = 32) -> torch.Tensor:
        """The 2048-d feature of every box of one image; ``features`` is its ``[1, C, h, w]`` map."""
        if features.shape[0] != 1:
            raise ValueError(f"pooled_features takes one image's map [1, C, h, w], got {tuple(features.shape)}")
        rois = torch.cat([boxes.new_zeros(len(boxes), 1), boxes], dim=1)
        out = []
        # res5 on 300 boxes x 14 x 14 is the heaviest step; chunks bound peak memory
        for x in iter_roi_pool(features, rois, self.cfg.pooler_resolution, 1.0 / self.cfg.feature_stride,
                               chunk=chunk):
            out.append(self.res5(x).mean(dim=(2, 3)))
        if not out:
            return features.new_zeros(0, self.cfg.head_channels)
        return torch.cat(out)

    def forward(self, features: torch.Tensor, boxes: list[torch.Tensor],
                feature_sizes: list[tuple[int, int]] | None = None) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(pooled features, class logits, attribute logits)`` per image.

        ``feature_sizes`` are the valid (h, w) of each image on ``features`` (None: all of it).
        """
        n, _, h, w = features.shape
        if feature_sizes is None:
            feature_sizes = [(h, w)] * n
        if len(boxes) != n or len(feature_sizes) != n:
            raise ValueError(f"{len(boxes)} box sets and {len(feature_sizes)} feature sizes for {n} images")
        outs = []
        for i, (b, (fh, fw)) in enumerate(zip(boxes, feature_sizes)):
            pooled = self.pooled_features(features[i : i + 1, :, :fh, :fw], b)
            cls_logits, attr_logits = self.box_predictor(pooled)
            outs.append((pooled, cls_logits, attr_logits))
        return outs


@dataclass
class DetectorOutput:
    """Per-image results in resized-input coordinates (before scaling back).

    ``cls_probs [R, 1601]`` and ``attr_probs [R, 401]`` are softmaxes over all classes
    (background / "no attribute" included); ``features [R, 2048]`` come from the proposal
    boxes ``boxes [R, 4]``.
    """

    boxes: torch.Tensor
    features: torch.Tensor
    cls_probs: torch.Tensor
    attr_probs: torch.Tensor
    box_deltas: torch.Tensor | None = None


class FasterRCNN(nn.Module):
    """Backbone + RPN + Res5 RoI heads of the bottom-up-attention detector."""

    def __init__(self, cfg: DetectorConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or DetectorConfig()
        self.backbone = ResNetC4(cfg)
        self.proposal_generator = RPN(cfg)
        self.roi_heads = Res5ROIHeads(cfg)

    @torch.inference_mode()
    def forward(self, images: torch.Tensor, image_sizes: list[tuple[int, int]], *,
                with_box_deltas: bool = False) -> list[DetectorOutput]:
        """Run on a batch of preprocessed images ``[N, 3, H, W]`` (padded bottom/right).

        ``image_sizes`` are the unpadded (height, width) of each image. Each image's result
        is the one it gets alone, whatever the padding holds: the backbone keeps the padding
        at zero layer by layer, proposals come from the image's own feature grid and are
        clipped to the image, and RoI pooling reads only the image's part of the map.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, H, W], got {tuple(images.shape)}")
        if len(image_sizes) != images.shape[0]:
            raise ValueError(f"{len(image_sizes)} image sizes for a batch of {images.shape[0]}")
        image_sizes = [(int(h), int(w)) for h, w in image_sizes]
        feats = self.backbone(images, image_sizes)
        feature_sizes = self.backbone.output_sizes(image_sizes)
        if self.backbone.output_sizes([tuple(images.shape[-2:])]) != [tuple(feats.shape[-2:])]:
            raise RuntimeError(  # the size arithmetic must track the layers it models
                f"backbone size bookkeeping predicts {self.backbone.output_sizes([tuple(images.shape[-2:])])} "
                f"for a {tuple(images.shape[-2:])} input, the map is {tuple(feats.shape[-2:])}")
        proposals = self.proposal_generator(feats, image_sizes, feature_sizes)
        heads = self.roi_heads(feats, proposals, feature_sizes)
        outs = []
        for b, (pooled, cl, al) in zip(proposals, heads):
            outs.append(DetectorOutput(
                boxes=b, features=pooled, cls_probs=F.softmax(cl, dim=-1), attr_probs=F.softmax(al, dim=-1),
                box_deltas=self.roi_heads.box_predictor.bbox_pred(pooled) if with_box_deltas else None,
            ))
        return outs

    def regressed_boxes(self, out: DetectorOutput) -> torch.Tensor:
        """Class-specific refined boxes ``[R, num_classes, 4]`` (needs ``with_box_deltas``)."""
        if out.box_deltas is None:
            raise ValueError("run forward(..., with_box_deltas=True) to get box deltas")
        boxes = apply_deltas(out.box_deltas, out.boxes, self.cfg.roi_bbox_weights)
        return boxes.view(len(out.boxes), -1, 4)
