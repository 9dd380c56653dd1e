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

    Takes the maps of images that all have the map's size (:class:`FasterRCNN` groups them
    so): anchors over padding would otherwise compete for the top-k and, once clipped to
    the image, displace real proposals.
    """

    def __init__(self, cfg: DetectorConfig):
        super().__init__()
        self.cfg = cfg
        self.anchor_generator = AnchorGenerator(cfg)
        self.rpn_head = RPNHead(cfg)

    def forward(self, features: torch.Tensor, image_sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
        """Proposals ``[R_i, 4]`` per image, in input pixels, clipped to ``image_sizes[i]``."""
        cfg = self.cfg
        logits, deltas = self.rpn_head(features)
        n, a, h, w = logits.shape
        if self.anchor_generator.cell_anchors.shape[0] != a:
            raise ValueError(f"{self.anchor_generator.cell_anchors.shape[0]} cell anchors but the RPN head predicts {a}")
        if len(image_sizes) != n:
            raise ValueError(f"{len(image_sizes)} image sizes for {n} feature maps")
        anchors = self.anchor_generator(h, w)  # [H*W*A, 4]
        logits = logits.permute(0, 2, 3, 1).reshape(n, -1)  # N, H*W*A
        deltas = deltas.view(n, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4)
        proposals = []
        for i, (ih, iw) in enumerate(image_sizes):
            k = min(cfg.rpn_pre_nms_topk, logits.shape[1])
            # stable sort: ties resolve by position
            top = torch.sort(logits[i], descending=True, stable=True).indices[:k]
            boxes = apply_deltas(deltas[i, top], anchors[top], cfg.rpn_bbox_weights)
            boxes = clip_boxes(boxes, ih, iw)
            scores = logits[i, top]
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

    Every image runs through RoI pooling, res5 and the predictors on its own, in the chunks
    of proposals it would have alone, so its features and probabilities come from tensors of
    the shapes a lone image has; batching several images into one res5 call would not save
    work anyway (the cost is per proposal and the chunks bound the call size).
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

    def forward(self, features: torch.Tensor,
                boxes: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(pooled features, class logits, attribute logits)`` per image of ``features``."""
        if len(boxes) != features.shape[0]:
            raise ValueError(f"{len(boxes)} box sets for {features.shape[0]} feature maps")
        outs = []
        for i, b in enumerate(boxes):
            pooled = self.pooled_features(features[i : i + 1], b)
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
        is the one it gets alone (to float rounding), whatever the padding holds: images are
        cut out of the batch and those of one size run through the backbone and the RPN
        together, so no layer ever reads padding. (Running the backbone on the padded batch
        would not do: its first conv adds a bias that the ReLU keeps, so the padding turns
        non-zero and every later 3x3 conv and the pool read it at the image's edge, where a
        lone image reads zeros; the RPN would also place anchors over the padding.)
        Outputs come in input order.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, H, W], got {tuple(images.shape)}")
        if len(image_sizes) != images.shape[0]:
            raise ValueError(f"{len(image_sizes)} image sizes for a batch of {images.shape[0]}")
        height, width = images.shape[-2:]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (h, w) in enumerate(image_sizes):
            h, w = int(h), int(w)
            if not (1 <= h <= height and 1 <= w <= width):
                raise ValueError(f"image size {(h, w)} does not fit the padded batch {(height, width)}")
            groups.setdefault((h, w), []).append(i)
        outs: list[DetectorOutput | None] = [None] * len(image_sizes)
        for (h, w), members in groups.items():
            # one size: a plain batch without padding, the shapes a lone image has but for N
            x = images[members, :, :h, :w].contiguous()
            feats = self.backbone(x)
            proposals = self.proposal_generator(feats, [(h, w)] * len(members))
            for i, b, (pooled, cl, al) in zip(members, proposals, self.roi_heads(feats, proposals)):
                outs[i] = DetectorOutput(
                    boxes=b, features=pooled, cls_probs=F.softmax(cl, dim=-1), attr_probs=F.softmax(al, dim=-1),
                    box_deltas=self.roi_heads.box_predictor.bbox_pred(pooled) if with_box_deltas else None,
                )
        return outs  # type: ignore[return-value]

    def regressed_boxes(self, out: DetectorOutput) -> torch.Tensor:
        """Class-specific refined boxes ``[R, num_classes, 4]`` (needs ``with_box_deltas``)."""
        if out.box_deltas is None:
            raise ValueError("run forward(..., with_box_deltas=True) to get box deltas")
        boxes = apply_deltas(out.box_deltas, out.boxes, self.cfg.roi_bbox_weights)
        return boxes.view(len(out.boxes), -1, 4)
