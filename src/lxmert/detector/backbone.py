"""ResNet C4 backbone of the VG detector, with detectron2's module names.

The module tree (``stem.conv1``, ``res2.0.conv1``, ``res2.0.shortcut``, each conv owning a
``norm`` child) mirrors the converted-Caffe checkpoint so its keys load with an almost
empty key map (see :mod:`lxmert.detector.weights`).

Caffe specifics kept on purpose: the stride of a downsampling block sits in its first 1x1
conv (``stride_in_1x1``), batch norm is frozen into a per-channel affine map, and the stem's
max-pool has no padding but rounds the output size up (``ceil_mode``), which Caffe's
pooling layer does and PyTorch's default does not; with the wrong pooling every later
feature map is shifted by one pixel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lxmert.detector.config import DetectorConfig

__all__ = ["Bottleneck", "ConvNorm", "FrozenBatchNorm2d", "ResNetC4", "Stem", "make_stage"]


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics: ``y = (x - mean) / sqrt(var + eps) * weight + bias``.

    All four tensors are buffers (the detector is never trained here), so they travel with
    the state dict under the names batch norm uses, and no ``num_batches_tracked`` exists.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        return x * scale[None, :, None, None].to(x.dtype) + shift[None, :, None, None].to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class ConvNorm(nn.Conv2d):
    """A bias-free convolution followed by its frozen batch norm (child named ``norm``).

    The forward pass folds the batch norm into the convolution (weight scaled per output
    channel, shift as the bias), which saves one full read and write of every activation
    map: 20-25 % of the backbone's time on CPU. The weights stay unfolded in the state dict,
    so loading and exporting checkpoints is unaffected; folding costs a pass over the
    weights per call, negligible next to the convolutions.
    """

    def __init__(self, cin: int, cout: int, kernel: int, *, stride: int = 1, padding: int = 0,
                 dilation: int = 1, eps: float = 1e-5):
        super().__init__(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation, bias=False)
        self.norm = FrozenBatchNorm2d(cout, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.norm
        scale = n.weight * torch.rsqrt(n.running_var + n.eps)
        weight = (self.weight * scale[:, None, None, None]).to(x.dtype)
        bias = (n.bias - n.running_mean * scale).to(x.dtype)
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 residual block; projection shortcut when the width changes."""

    def __init__(self, cin: int, bottleneck: int, cout: int, *, stride: int = 1, dilation: int = 1,
                 stride_in_1x1: bool = True, eps: float = 1e-5):
        super().__init__()
        self.shortcut = ConvNorm(cin, cout, 1, stride=stride, eps=eps) if cin != cout else None
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = ConvNorm(cin, bottleneck, 1, stride=s1, eps=eps)
        self.conv2 = ConvNorm(bottleneck, bottleneck, 3, stride=s3, padding=dilation, dilation=dilation, eps=eps)
        self.conv3 = ConvNorm(bottleneck, cout, 1, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        out = out + (self.shortcut(x) if self.shortcut is not None else x)
        return F.relu_(out)


def make_stage(num_blocks: int, cin: int, bottleneck: int, cout: int, *, first_stride: int,
               dilation: int = 1, stride_in_1x1: bool = True, eps: float = 1e-5) -> nn.Sequential:
    blocks = []
    for i in range(num_blocks):
        blocks.append(Bottleneck(cin if i == 0 else cout, bottleneck, cout,
                                 stride=first_stride if i == 0 else 1, dilation=dilation,
                                 stride_in_1x1=stride_in_1x1, eps=eps))
    return nn.Sequential(*blocks)


class Stem(nn.Module):
    """7x7/2 conv + frozen BN + ReLU + 3x3/2 max-pool (stride 4 overall)."""

    def __init__(self, cfg: DetectorConfig):
        super().__init__()
        self.conv1 = ConvNorm(3, cfg.stem_channels, 7, stride=2, padding=3, eps=cfg.bn_eps)
        self.caffe_maxpool = cfg.caffe_maxpool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.conv1(x))
        if self.caffe_maxpool:
            return F.max_pool2d(x, kernel_size=3, stride=2, padding=0, ceil_mode=True)
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class ResNetC4(nn.Module):
    """Stem + res2..res4; returns the stride-16 ``res4`` map (1024 channels for R-101)."""

    def __init__(self, cfg: DetectorConfig):
        super().__init__()
        self.stem = Stem(cfg)
        n2, n3, n4, _ = cfg.stage_blocks
        w, c = cfg.width_per_group, cfg.res2_channels
        kw = dict(stride_in_1x1=cfg.stride_in_1x1, eps=cfg.bn_eps)
        self.res2 = make_stage(n2, cfg.stem_channels, w, c, first_stride=1, **kw)
        self.res3 = make_stage(n3, c, w * 2, c * 2, first_stride=2, **kw)
        self.res4 = make_stage(n4, c * 2, w * 4, c * 4, first_stride=2, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res4(self.res3(self.res2(self.stem(x))))


def make_res5(cfg: DetectorConfig) -> nn.Sequential:
    """The RoI head's res5: for the VG model stride 1 and dilation 2 in every 3x3 conv.

    The Caffe model keeps the 14x14 pooled grid at full resolution through res5 (the
    detectron2 default would halve it to 7x7); the mean over that 14x14 map is the
    2048-d region feature.
    """
    w, c = cfg.width_per_group, cfg.res2_channels
    dil = cfg.res5_dilation
    return make_stage(cfg.stage_blocks[3], c * 4, w * 8, c * 8, first_stride=1 if dil == 2 else 2,
                      dilation=dil, stride_in_1x1=cfg.stride_in_1x1, eps=cfg.bn_eps)
