"""Image loading and the detector's input transform (Caffe conventions).

The Caffe model was trained on BGR images with the per-channel means
``[102.9801, 115.9465, 122.7717]`` subtracted and no scaling, resized so the shorter side is
600 pixels unless that makes the longer side exceed 1000. The Hugging Face demo mixed up
RGB and BGR depending on where the image came from; here the channel order is fixed in one
place (:func:`to_model_input`) and tested.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lxmert.detector.config import DetectorConfig

__all__ = ["PreparedImage", "batch_images", "load_image", "resized_shape", "to_model_input"]


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to ``uint8 [H, W, 3]`` RGB, honouring EXIF orientation.

    (OpenCV's ``imread``, which the original pipeline used, also applies the EXIF
    orientation; grey-scale, palette and RGBA images are converted to RGB.)
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB"))
    except UnidentifiedImageError:
        raise ValueError(f"{path}: not a readable image") from None
    except FileNotFoundError:
        raise
    except OSError as err:  # truncated or corrupt file
        raise ValueError(f"{path}: cannot decode image ({err})") from None


def resized_shape(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """Shorter side to ``min_size``, capped so the longer side is at most ``max_size``."""
    scale = min_size / min(height, width)
    if max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


@dataclass
class PreparedImage:
    """One image ready for the network: ``tensor [3, h, w]`` BGR minus the pixel means.

    ``orig_size`` is the decoded image's (H, W); ``size`` the resized (h, w). Boxes found on
    the tensor map back with ``x * W / w`` and ``y * H / h``.
    """

    tensor: torch.Tensor
    size: tuple[int, int]
    orig_size: tuple[int, int]

    @property
    def scale_yx(self) -> tuple[float, float]:
        return self.orig_size[0] / self.size[0], self.orig_size[1] / self.size[1]


def to_model_input(image_rgb: np.ndarray, cfg: DetectorConfig) -> PreparedImage:
    """RGB ``uint8 [H, W, 3]`` -> resized, mean-subtracted BGR float tensor ``[3, h, w]``.

    Resizing is bilinear without antialiasing on half-pixel centres
    (``align_corners=False``), like OpenCV's ``INTER_LINEAR`` in the original and the
    demo's ``F.interpolate``.
    """
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {image_rgb.shape}")
    h, w = image_rgb.shape[:2]
    if h < 1 or w < 1:
        raise ValueError(f"empty image of shape {image_rgb.shape}")
    nh, nw = resized_shape(h, w, cfg.min_size, cfg.max_size)
    bgr = torch.from_numpy(np.ascontiguousarray(image_rgb[:, :, ::-1])).permute(2, 0, 1).float()
    if (nh, nw) != (h, w):
        bgr = F.interpolate(bgr[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
    mean = torch.tensor(cfg.pixel_mean, dtype=torch.float32).view(3, 1, 1)
    return PreparedImage(tensor=bgr - mean, size=(nh, nw), orig_size=(h, w))


def batch_images(images: list[PreparedImage]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Stack images, padding bottom/right with 0 (= the mean colour) to the largest size.

    A single image is not padded at all. The returned (h, w) per image are what
    :class:`~lxmert.detector.model.FasterRCNN` needs to cut every image back out, so the
    padding never reaches a result.
    """
    if not images:
        raise ValueError("no images to batch")
    hmax = max(im.tensor.shape[1] for im in images)
    wmax = max(im.tensor.shape[2] for im in images)
    out = images[0].tensor.new_zeros(len(images), 3, hmax, wmax)
    for i, im in enumerate(images):
        out[i, :, : im.tensor.shape[1], : im.tensor.shape[2]] = im.tensor
    return out, [im.size for im in images]
