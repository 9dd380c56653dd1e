"""ResNet C4 backbone of the VG detector, with detectron2's module names.

The module tree (``stem.conv1``, ``res2.0.conv1``, ``res2.0.shortcut``, each conv owning a
``norm`` child) mirrors the converted-Caffe checkpoint so its keys load with an almost
empty key map (see :mod:`lxmert.detector.weights`).

Caffe specifics kept on purpose: the stride of a downsampling block sits in its first 1x1
conv (``stride_in_1x1``), batch norm is frozen into a per-channel affine map, and the stem's
max-pool has no padding but rounds the output size up (``ceil_mode``), which Caffe's
pooling layer does and PyTorch's default does not; with the wrong pooling every later
feature map is shifted by one pixel.

Padded batches: images of different sizes share one canvas, padded bottom/right. Zero
input padding alone would not make a padded image's maps equal to its maps computed alone:
the first conv adds its bias and the ReLU keeps it, so the padded area turns non-zero and
every later 3x3 conv and the max-pool read those values at the image border where the image
alone reads zero padding; the error then spreads inward by each layer's receptive field.
Given the images' sizes, the backbone therefore zeroes the area outside each image before
every operation that mixes neighbouring positions (:func:`zero_outside`), with the valid
size tracked layer by layer (:func:`conv_output_size`, :func:`pool_output_size`), which
makes the padded area read exactly like the zero padding of a lone image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lxmert.detector.config import DetectorConfig

__all__ = [
    "Bottleneck",
    "ConvNorm",
    "FrozenBatchNorm2d",
    "ResNetC4",
    "Sizes",
    "Stem",
    "conv_output_size",
    "make_stage",
    "pool_output_size",
    "zero_outside",
]

#: (height, width) per image of a batch: the part of each map that belongs to the image.
Sizes = list[tuple[int, int]]


def conv_output_size(n: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """Length of a convolution's output along one axis (PyTorch's formula)."""
    return (n + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def pool_output_size(n: int, kernel: int, stride: int, padding: int, *, ceil_mode: bool) -> int:
    """Length of a max-pool's output along one axis, ceil mode included.

    In ceil mode the last window may hang over the end, but must start inside the input
    (or its left padding); PyTorch and Caffe drop a window that would start beyond it.
    """
    span = n + 2 * padding - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= n + padding:
        out -= 1
    return out


def zero_outside(x: torch.Tensor, sizes: Sizes | None) -> torch.Tensor:
    """Zero, in place, every map of image ``i`` outside its top-left ``sizes[i]`` region.

    Only the padded strips are written, so this costs nothing for an unpadded image and
    little otherwise. Returns ``x``.
    """
    if sizes is None:
        return x
    height, width = x.shape[-2:]
    for i, (h, w) in enumerate(sizes):
        if h < height:
            x[i, :, h:, :] = 0
        if w < width:
            x[i, :, :h, w:] = 0
    return x


def _needs_mask(x: torch.Tensor, sizes: Sizes | None) -> Sizes | None:
    # None when no image of the batch is padded: the single-image path then does no work
    if sizes is None:
        return None
    if len(sizes) != x.shape[0]:
        raise ValueError(f"{len(sizes)} image sizes for a batch of {x.shape[0]}")
    height, width = x.shape[-2:]
    for h, w in sizes:
        if not (1 <= h <= height and 1 <= w <= width):
            raise ValueError(f"image size {(h, w)} does not fit the padded batch {(height, width)}")
    return list(sizes) if any((h, w) != (height, width) for h, w in sizes) else None


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

    def output_sizes(self, sizes: Sizes) -> Sizes:
        """The valid (h, w) of each image after this convolution."""
        k, s, p, d = self.kernel_size, self.stride, self.padding, self.dilation
        return [(conv_output_size(h, k[0], s[0], p[0], d[0]), conv_output_size(w, k[1], s[1], p[1], d[1]))  # type: ignore[index]
                for h, w in sizes]


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

    def forward(self, x: torch.Tensor, sizes: Sizes | None = None) -> torch.Tensor:
        """``sizes``: valid (h, w) per image of a padded batch at the block's input, or None.

        Only ``conv2`` mixes neighbouring positions (the 1x1 convs, their strides included,
        read one position each), so its input is the one place to re-zero the padding;
        the block's output keeps garbage in the padded area, which the next spatial
        operation's own masking removes.
        """
        out = F.relu_(self.conv1(x))
        if sizes is not None:
            zero_outside(out, self.conv1.output_sizes(sizes))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        out = out + (self.shortcut(x) if self.shortcut is not None else x)
        return F.relu_(out)

    def output_sizes(self, sizes: Sizes) -> Sizes:
        return self.conv3.output_sizes(self.conv2.output_sizes(self.conv1.output_sizes(sizes)))


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

    def forward(self, x: torch.Tensor, sizes: Sizes | None = None) -> torch.Tensor:
        """``sizes``: valid (h, w) per image of a padded batch, or None (see the module doc).

        The max-pool may take its maximum over the zeroed padding where a lone image's
        pool would skip the positions (window hanging over the edge): the same result,
        because the values are ReLU outputs and so never below zero.
        """
        x = F.relu_(self.conv1(x))
        if sizes is not None:
            zero_outside(x, self.conv1.output_sizes(sizes))
        if self.caffe_maxpool:
            return F.max_pool2d(x, kernel_size=3, stride=2, padding=0, ceil_mode=True)
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)

    def output_sizes(self, sizes: Sizes) -> Sizes:
        k, s, p, ceil = (3, 2, 0, True) if self.caffe_maxpool else (3, 2, 1, False)
        return [(pool_output_size(h, k, s, p, ceil_mode=ceil), pool_output_size(w, k, s, p, ceil_mode=ceil))
                for h, w in self.conv1.output_sizes(sizes)]


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

    def forward(self, x: torch.Tensor, image_sizes: Sizes | None = None) -> torch.Tensor:
        """The ``res4`` map of a batch ``[N, 3, H, W]``.

        ``image_sizes`` are the unpadded (h, w) of the images of a padded batch: inside each
        image's valid region (:meth:`output_sizes`) the result then equals that image's map
        computed alone, and outside it the map is zero. None means no image is padded.
        """
        sizes = _needs_mask(x, image_sizes)
        if sizes is None:
            return self.res4(self.res3(self.res2(self.stem(x))))
        # the caller's batch is left untouched; the padding value it used does not matter
        x = zero_outside(x.clone(), sizes)
        x = self.stem(x, sizes)
        sizes = self.stem.output_sizes(sizes)
        for stage in (self.res2, self.res3, self.res4):
            for block in stage:
                x = block(x, sizes)
                sizes = block.output_sizes(sizes)
        return zero_outside(x, sizes)

    def output_sizes(self, image_sizes: Sizes) -> Sizes:
        """The valid (h, w) of each image's ``res4`` map: the map it would have alone."""
        sizes = self.stem.output_sizes(list(image_sizes))
        for stage in (self.res2, self.res3, self.res4):
            for block in stage:
                sizes = block.output_sizes(sizes)
        return sizes


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
