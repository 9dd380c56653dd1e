"""Codec for the bottom-up-attention region-feature TSV files.

The format (LXMERT-SPEC §4) is what the Caffe ``generate_tsv.py`` of bottom-up attention
wrote with Python's ``csv.DictWriter``: one image per line, ten tab-separated fields, no
header::

    img_id  img_h  img_w  objects_id  objects_conf  attrs_id  attrs_conf  num_boxes  boxes  features

``img_h``, ``img_w`` and ``num_boxes`` are decimal integers; the other array fields are the
standard base64 of the raw little-endian bytes: ids ``int64[n]``, confidences
``float32[n]``, boxes ``float32[n, 4]`` in pixels (x1, y1, x2, y2) and features
``float32[n, D]`` (D = 2048 for the released files; it is inferred from the base64 length,
so other detectors' dimensions work too).

A *record* is a plain dict with the field names above, holding numpy arrays. Decoding is
strict - every structural problem raises :class:`TsvFormatError` naming the file and line -
because a silently mis-decoded row (e.g. a truncated last line of an interrupted
extraction) would otherwise surface much later as garbage features in training.

Encoding is canonical (``base64.b64encode`` of the contiguous little-endian bytes), so a
record decoded from a file written by the original tools re-encodes to the same bytes.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from lxmert.atomic import atomic_open

__all__ = [
    "FIELDNAMES",
    "UTF8_BOM",
    "TsvFormatError",
    "b64_decoded_length",
    "decode_row",
    "encode_row",
    "iter_lines",
    "read_tsv",
    "split_fields",
    "split_header",
    "write_tsv",
]

FIELDNAMES: list[str] = [
    "img_id",
    "img_h",
    "img_w",
    "objects_id",
    "objects_conf",
    "attrs_id",
    "attrs_conf",
    "num_boxes",
    "boxes",
    "features",
]

#: Array fields: name -> (little-endian dtype, trailing shape excluding the box axis).
#: ``features`` has a trailing dimension that is inferred, so it is handled separately.
_ARRAY_FIELDS: dict[str, tuple[str, tuple[int, ...]]] = {
    "objects_id": ("<i8", ()),
    "objects_conf": ("<f4", ()),
    "attrs_id": ("<i8", ()),
    "attrs_conf": ("<f4", ()),
    "boxes": ("<f4", (4,)),
}
_FEATURE_DTYPE = "<f4"
#: The UTF-8 signature some editors put at the start of a file; not part of the first id.
UTF8_BOM = b"\xef\xbb\xbf"
_NATIVE = {"<i8": np.int64, "<f4": np.float32}


class TsvFormatError(ValueError):
    """A TSV row that cannot be decoded; the message names the file and the line.

    Attributes ``path``, ``lineno`` (1-based) and ``reason`` keep the parts apart so that
    callers which skip bad rows can report them as ``(file, line, reason)`` triples.
    """

    def __init__(self, path: str | os.PathLike[str] | None, lineno: int | None, msg: str):
        self.path = str(path) if path is not None else "<unknown>"
        self.lineno = lineno
        self.reason = msg
        where = self.path if lineno is None else f"{self.path}, line {lineno}"
        super().__init__(f"{where}: {msg}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Default exception pickling would call __init__(message) and fail; DataLoader
        # workers pickle exceptions back to the main process.
        return (type(self), (self.path, self.lineno, self.reason))


def _b64decode(text: bytes | memoryview) -> bytes:
    """Strict base64 decoding (no stray characters, correct padding), without copies.

    ``base64.b64decode`` copies a memoryview argument and validates with a regular
    expression; ``binascii.a2b_base64(strict_mode=True)`` (Python >= 3.11) does both in C.
    """
    if _STRICT_A2B:
        return binascii.a2b_base64(text, strict_mode=True)
    return base64.b64decode(bytes(text), validate=True)  # pragma: no cover - Python 3.10


try:
    binascii.a2b_base64(b"", strict_mode=True)
    _STRICT_A2B = True
except TypeError:  # pragma: no cover - Python 3.10
    _STRICT_A2B = False


def _b64_to_array(
    text: bytes | memoryview, dtype: str, count_per_box: int | None, n: int, field: str,
    path: Any, lineno: int | None,
) -> np.ndarray:
    """Decode one base64 field and check its byte length against ``n`` boxes."""
    try:
        raw = _b64decode(text)
    except (binascii.Error, ValueError) as err:
        raise TsvFormatError(path, lineno, f"field {field!r}: invalid base64 ({err})") from None
    itemsize = np.dtype(dtype).itemsize
    if count_per_box is not None:
        expected = n * count_per_box * itemsize
        if len(raw) != expected:
            raise TsvFormatError(
                path, lineno,
                f"field {field!r}: {len(raw)} bytes, expected {expected} for num_boxes={n} "
                f"({count_per_box} x {np.dtype(dtype).name} per box)",
            )
    # np.frombuffer over immutable bytes is read-only (and non-native on big-endian
    # hosts); hand callers a native, writable array (torch.from_numpy warns otherwise).
    return np.frombuffer(raw, dtype=dtype).astype(_NATIVE[dtype])


def _parse_int(text: bytes | memoryview, field: str, path: Any, lineno: int | None, minimum: int) -> int:
    text = bytes(text)
    try:
        value = int(text)
    except ValueError:
        raise TsvFormatError(
            path, lineno, f"field {field!r}: expected an integer, got {text[:40]!r}"
        ) from None
    if value < minimum:
        raise TsvFormatError(path, lineno, f"field {field!r}: must be >= {minimum}, got {value}")
    return value


def split_fields(line: bytes | str, *, path: Any = None, lineno: int | None = None) -> list[memoryview]:
    """The ten fields of a row as zero-copy memoryviews (line terminator ignored).

    A row carries ~400 KB of base64; ``bytes.rstrip``/``bytes.split`` would copy all of it
    twice before decoding starts.
    """
    if isinstance(line, str):
        line = line.encode("utf-8")
    end = len(line)
    while end and line[end - 1] in (10, 13):  # \n, \r
        end -= 1
    view = memoryview(line)
    fields: list[memoryview] = []
    start = 0
    for _ in range(len(FIELDNAMES) - 1):
        tab = line.find(b"\t", start, end)
        if tab < 0:
            break
        fields.append(view[start:tab])
        start = tab + 1
    fields.append(view[start:end])
    if len(fields) != len(FIELDNAMES) or line.find(b"\t", start, end) >= 0:
        got = line.count(b"\t", 0, end) + 1
        raise TsvFormatError(path, lineno, f"expected {len(FIELDNAMES)} tab-separated fields, got {got}")
    return fields


def split_header(
    line: bytes | str, *, path: Any = None, lineno: int | None = None
) -> tuple[str, int, int, int, list[memoryview]]:
    """Split a row and parse the cheap scalar fields, without decoding any base64.

    Returns ``(img_id, img_h, img_w, num_boxes, fields)`` where ``fields`` are the ten raw
    fields as memoryviews. Used by the store's first (counting) pass, which must not pay
    for base64.
    """
    fields = split_fields(line, path=path, lineno=lineno)
    try:
        img_id = bytes(fields[0]).decode("utf-8")
    except UnicodeDecodeError:
        raise TsvFormatError(path, lineno, "field 'img_id' is not valid UTF-8") from None
    if not img_id:
        raise TsvFormatError(path, lineno, "field 'img_id' is empty")
    img_h = _parse_int(fields[1], "img_h", path, lineno, 1)
    img_w = _parse_int(fields[2], "img_w", path, lineno, 1)
    num_boxes = _parse_int(fields[7], "num_boxes", path, lineno, 0)
    return img_id, img_h, img_w, num_boxes, fields


def b64_decoded_length(field: bytes | memoryview) -> int:
    """Byte length that a canonical (padded) base64 string decodes to (-1: impossible length)."""
    n = len(field)
    if n % 4:
        return -1
    pad = 2 if field[-2:] == b"==" else 1 if field[-1:] == b"=" else 0
    return n // 4 * 3 - pad


def decode_row(
    line: str | bytes,
    *,
    path: str | os.PathLike[str] | None = None,
    lineno: int | None = None,
    feat_dim: int | None = None,
    check_finite: bool = True,
) -> dict[str, Any]:
    """Decode one TSV line into a record dict.

    ``feat_dim`` pins the feature dimension (an error if the row disagrees); by default it
    is inferred from the base64 length divided by ``num_boxes``. With ``check_finite``
    (default) NaN or Inf in features, boxes or confidences is an error: such values come
    from a broken extraction and would poison every loss they touch.

    Raises :class:`TsvFormatError` (a ``ValueError``) naming ``path`` and ``lineno``.
    """
    img_id, img_h, img_w, n, fields = split_header(line, path=path, lineno=lineno)
    record: dict[str, Any] = {"img_id": img_id, "img_h": img_h, "img_w": img_w, "num_boxes": n}
    for name, (dtype, trailing) in _ARRAY_FIELDS.items():
        per_box = int(np.prod(trailing)) if trailing else 1
        arr = _b64_to_array(fields[FIELDNAMES.index(name)], dtype, per_box, n, name, path, lineno)
        record[name] = arr.reshape((n, *trailing))

    feats = _b64_to_array(fields[9], _FEATURE_DTYPE, None, n, "features", path, lineno)
    if n == 0:
        if feats.size:
            raise TsvFormatError(path, lineno, f"field 'features': {feats.size * 4} bytes for num_boxes=0")
        dim = feat_dim or 0
    else:
        if feats.size == 0 or feats.size % n:
            raise TsvFormatError(
                path, lineno,
                f"field 'features': {feats.size * 4} bytes is not a positive multiple of "
                f"num_boxes={n} x 4-byte floats",
            )
        dim = feats.size // n
        if feat_dim is not None and dim != feat_dim:
            raise TsvFormatError(
                path, lineno,
                f"field 'features': dimension {dim} (from {feats.size * 4} bytes / {n} boxes) "
                f"differs from expected {feat_dim}",
            )
    record["features"] = feats.reshape(n, dim)

    if check_finite:
        for name in ("features", "boxes", "objects_conf", "attrs_conf"):
            arr = record[name]
            if arr.size and not np.isfinite(arr).all():
                bad = np.flatnonzero(~np.isfinite(arr.reshape(-1)))
                raise TsvFormatError(
                    path, lineno,
                    f"field {name!r}: {bad.size} non-finite value(s) (NaN/Inf), first at flat index {int(bad[0])}",
                )
    return record


def _as_le(value: Any, dtype: str, shape: tuple[int, ...], name: str, img_id: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.shape != shape:
        raise ValueError(f"record {img_id!r}: field {name!r} has shape {arr.shape}, expected {shape}")
    return np.ascontiguousarray(arr, dtype=dtype)


def encode_row(record: Mapping[str, Any]) -> str:
    """Encode a record dict as one TSV line (no trailing newline).

    Arrays are cast to the on-disk dtypes (int64 / float32, little-endian); shapes must
    agree with ``num_boxes`` (a ``ValueError`` naming the image otherwise), so that a file
    written here always decodes.
    """
    missing = [k for k in FIELDNAMES if k not in record]
    if missing:
        raise ValueError(f"record {record.get('img_id')!r} lacks field(s) {missing}")
    img_id = str(record["img_id"])
    if not img_id or any(c in img_id for c in "\t\r\n"):
        raise ValueError(f"img_id {img_id!r} must be non-empty without tabs or newlines")
    n = int(record["num_boxes"])
    h, w = int(record["img_h"]), int(record["img_w"])
    if n < 0 or h < 1 or w < 1:
        raise ValueError(f"record {img_id!r}: need num_boxes >= 0 and img_h, img_w >= 1, got {n}, {h}, {w}")
    parts = [img_id, str(h), str(w)]
    for name in FIELDNAMES[3:7]:
        dtype, trailing = _ARRAY_FIELDS[name]
        parts.append(base64.b64encode(_as_le(record[name], dtype, (n, *trailing), name, img_id).tobytes()).decode("ascii"))
    parts.append(str(n))
    dtype, trailing = _ARRAY_FIELDS["boxes"]
    parts.append(base64.b64encode(_as_le(record["boxes"], dtype, (n, *trailing), "boxes", img_id).tobytes()).decode("ascii"))
    feats = np.asarray(record["features"])
    if feats.ndim != 2 or feats.shape[0] != n:
        raise ValueError(f"record {img_id!r}: field 'features' has shape {feats.shape}, expected ({n}, D)")
    parts.append(base64.b64encode(np.ascontiguousarray(feats, dtype=_FEATURE_DTYPE).tobytes()).decode("ascii"))
    return "\t".join(parts)


def iter_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, bytes]]:
    """Yield ``(lineno, raw_line)`` for the non-blank lines of a file, streaming.

    Lines are bytes *with* their terminator (``\n``, or the ``\r\n`` that
    ``csv.DictWriter`` writes by default), which :func:`decode_row` ignores: stripping
    would copy the ~400 KB line, and so would decoding it to ``str``. A UTF-8 byte-order
    mark at the start of the file is dropped (it would otherwise become part of the first
    image id, which then matches no question).
    """
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, start=1):
            if lineno == 1 and line.startswith(UTF8_BOM):
                line = line[len(UTF8_BOM):]
            if not is_blank(line):
                yield lineno, line


def is_blank(line: bytes) -> bool:
    """True for an empty or whitespace-only line (without copying long lines)."""
    return not line or line.isspace()


def read_tsv(
    path: str | os.PathLike[str], *, feat_dim: int | None = None, check_finite: bool = True
) -> Iterator[dict[str, Any]]:
    """Stream the records of a TSV file, one line at a time (constant memory).

    All rows must share one feature dimension (that of the first row unless ``feat_dim``
    is given). Blank lines are ignored; any other bad line raises :class:`TsvFormatError`.
    """
    dim = feat_dim
    for lineno, line in iter_lines(path):
        record = decode_row(line, path=path, lineno=lineno, feat_dim=dim, check_finite=check_finite)
        if dim is None and record["num_boxes"] > 0:
            dim = record["features"].shape[1]
        yield record


def write_tsv(
    path: str | os.PathLike[str], records: Iterable[Mapping[str, Any]], *, newline: str = "\n"
) -> int:
    """Write records to ``path`` atomically; returns the number of rows written.

    Rows go to a temporary file in the same directory which replaces ``path`` only once
    every row is written and flushed, so an interrupted writer never leaves a truncated
    TSV that looks complete. ``newline`` may be ``"\\r\\n"`` to reproduce files written by
    the original ``csv.DictWriter``.
    """
    if newline not in ("\n", "\r\n"):
        raise ValueError(f"newline must be '\\n' or '\\r\\n', got {newline!r}")
    count = 0
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        os.fchmod(f.fileno(), 0o644)  # mkstemp creates 0600; a TSV is ordinary shared data
        for record in records:
            f.write(encode_row(record))
            f.write(newline)
            count += 1
    return count
