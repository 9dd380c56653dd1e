"""What the server accepts: sizes, dimensions, lengths, and the error each refusal is.

Why here and not in the pipeline: the pipeline trusts its caller (a Python user passes
what they mean); a server must refuse, before any work is spent, what would exhaust it
(a 2 GB upload, a 40000 x 40000 PNG that decodes to 4.8 GB, a question the size of a
book) or what it cannot read (a text file named photo.jpg). Every refusal is a
`RequestError` carrying the HTTP status (4xx for the request's fault, 503 for a busy
server), a stable machine-readable `code` and one line for a person; the app turns it
into `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["Limits", "RequestError", "decode_image", "check_question", "parse_top_k"]


@dataclass(frozen=True)
class Limits:
    """The server's bounds on one request (the defaults suit photos and the demo world)."""

    #: bytes of a request body (an upload with its multipart framing)
    max_upload_bytes: int = 8 * 1024 * 1024
    #: pixels of an image's longer side, and of its area (checked from the header, before decoding)
    max_image_side: int = 4096
    max_image_pixels: int = 16_000_000
    #: pixels of an image's shorter side: the detector's backbone downsamples 16x
    min_image_side: int = 16
    #: longer side / shorter side (the detector resizes the shorter side to 600, capped at 1000)
    max_aspect_ratio: float = 8.0
    #: characters of a question (LXMERT reads at most 20 word pieces of it anyway)
    max_question_chars: int = 200
    #: answers a request may ask for
    max_top_k: int = 50

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value <= 0:
                raise ValueError(f"limit {name} must be > 0, got {value}")
        if self.min_image_side > self.max_image_side:
            raise ValueError(f"min_image_side {self.min_image_side} exceeds max_image_side {self.max_image_side}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RequestError(Exception):
    """A request the server refuses: HTTP `status`, a stable `code`, a one-line `message`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = int(status)
        self.code = code
        self.message = message

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def check_question(value: Any, limits: Limits, what: str = "question") -> str:
    """The question text, stripped; RequestError when missing, empty or too long."""
    if value is None:
        raise RequestError(400, "missing_question", f"no {what}: send a '{what}' field")
    if not isinstance(value, str):
        raise RequestError(400, "bad_question", f"the {what} must be a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise RequestError(400, "empty_question", f"the {what} is empty")
    if len(text) > limits.max_question_chars:
        raise RequestError(400, "question_too_long",
                         f"the {what} has {len(text)} characters; at most {limits.max_question_chars} are accepted")
    return text


def parse_top_k(value: Any, limits: Limits, default: int = 5) -> int:
    """`top_k` from a JSON number or a form string; RequestError unless 1 <= k <= max_top_k."""
    if value is None or value == "":
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        k = value
    elif isinstance(value, str) and value.strip().isdigit():
        k = int(value)
    else:
        raise RequestError(400, "bad_top_k", f"top_k must be an integer, got {value!r}")
    if not 1 <= k <= limits.max_top_k:
        raise RequestError(400, "bad_top_k", f"top_k must be between 1 and {limits.max_top_k}, got {k}")
    return k


def decode_image(data: bytes, limits: Limits, name: str = "the upload") -> np.ndarray:
    """An uploaded image file as RGB `uint8 [H, W, 3]` (EXIF orientation applied, as
    `lxmert.detector.load_image`), refusing non-images (415), images whose header
    declares too many pixels (413, before decoding) and odd shapes (400)."""
    if not data:
        raise RequestError(400, "empty_image", f"{name} is empty")
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            check_dimensions(height, width, limits, name)
            im.load()
            rgb = ImageOps.exif_transpose(im).convert("RGB")
            array = np.asarray(rgb)
    except RequestError:
        raise
    except UnidentifiedImageError:
        raise RequestError(415, "not_an_image", f"{name} is not an image file that can be read "
                                              "(PNG, JPEG, GIF, BMP, WebP, TIFF)") from None
    except Image.DecompressionBombError as err:
        raise RequestError(413, "image_too_large", f"{name} is too large to decode ({err})") from None
    except (OSError, SyntaxError, ValueError) as err:  # truncated or corrupt data
        raise RequestError(400, "bad_image", f"{name}: cannot decode the image ({err})") from None
    check_dimensions(array.shape[0], array.shape[1], limits, name)  # after the EXIF rotation
    return array


def check_dimensions(height: int, width: int, limits: Limits, name: str = "the image") -> None:
    """RequestError unless the image size is within `limits`."""
    long_side, short_side = max(height, width), min(height, width)
    if long_side > limits.max_image_side or height * width > limits.max_image_pixels:
        raise RequestError(413, "image_too_large",
                         f"{name} is {width} x {height} pixels; at most {limits.max_image_side} per side and "
                         f"{limits.max_image_pixels} in all are accepted")
    if short_side < limits.min_image_side:
        raise RequestError(400, "image_too_small",
                         f"{name} is {width} x {height} pixels; each side needs at least {limits.min_image_side}")
    if long_side / short_side > limits.max_aspect_ratio:
        raise RequestError(400, "bad_aspect_ratio",
                         f"{name} is {width} x {height} pixels; the longer side may be at most "
                         f"{limits.max_aspect_ratio:g} times the shorter")
