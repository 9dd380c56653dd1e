"""The on-disk layout of a feature store: file names, array specs, the manifest and its checks.

A store is a directory of flat little-endian arrays described by ``manifest.json``::

    manifest.json   format/version, counts, dtypes, shapes, CRC-32 of every file, sources
    ids.json        image ids in row order (the index img_id -> row)
    features.bin    [N, M, D] float16 or float32, rows zero-padded past num_boxes
    boxes.bin       [N, M, 4] float32, pixels (x1, y1, x2, y2)
    obj_ids.bin     [N, M] int64      obj_conf.bin   [N, M] float32
    attr_ids.bin    [N, M] int64      attr_conf.bin  [N, M] float32
    num_boxes.bin   [N] int32         img_h.bin / img_w.bin  [N] int32

``M`` is the box capacity (the largest ``num_boxes`` seen, or the ``max_boxes`` given at
import). Raw files rather than ``.npy``: rows skipped while decoding change N after the
files are written, which a ``.npy`` header would have to be rewritten for.

This module knows the layout only; it neither imports TSVs (:mod:`lxmert.features.build`)
nor reads rows (:mod:`lxmert.features.store`). :func:`read_manifest` validates every key a
reader relies on, so a damaged manifest is refused with the store's path and the key at
fault instead of surfacing later as a bare ``KeyError``.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = [
    "MAX_ROW_BYTES",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "FP16_MAX",
    "INDEX",
    "INT32_MAX",
    "MANIFEST",
    "PER_BOX",
    "PER_IMAGE",
    "STORE_DTYPES",
    "TSV_FIELD",
    "StoreFormatError",
    "array_specs",
    "parse_index",
    "read_manifest",
    "row_nbytes",
]

PathLike = str | os.PathLike[str]

FORMAT_NAME = "lxmert-feature-store"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
INDEX = "ids.json"
FP16_MAX = float(np.finfo(np.float16).max)  # 65504.0
INT32_MAX = int(np.iinfo(np.int32).max)

#: storage dtype name -> on-disk dtype of ``features.bin``
STORE_DTYPES = {"float16": "<f2", "float32": "<f4"}
#: arrays with one entry per box slot, and with one entry per image
PER_BOX = ("features", "boxes", "obj_ids", "obj_conf", "attr_ids", "attr_conf")
PER_IMAGE = ("num_boxes", "img_h", "img_w")
#: store array name -> TSV record field
TSV_FIELD = {
    "boxes": "boxes",
    "obj_ids": "objects_id",
    "obj_conf": "objects_conf",
    "attr_ids": "attrs_id",
    "attr_conf": "attrs_conf",
}


class StoreFormatError(ValueError):
    """A feature store that cannot be read as one; the message names the file and, for
    manifest problems, the key (``arrays.features.dtype``)."""

    def __init__(self, path: PathLike, msg: str, key: str | None = None):
        self.path = str(path)
        self.key = key
        self.reason = msg
        where = self.path if key is None else f"{self.path}: key {key!r}"
        super().__init__(f"{where}: {msg}")

    def __reduce__(self) -> tuple[Any, ...]:
        # DataLoader workers pickle exceptions back to the main process.
        return (type(self), (self.path, self.reason, self.key))


def array_specs(dtype: str, max_boxes: int, feat_dim: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    """On-disk dtype and per-image shape of every array of a store."""
    m = max_boxes
    return {
        "features": (STORE_DTYPES[dtype], (m, feat_dim)),
        "boxes": ("<f4", (m, 4)),
        "obj_ids": ("<i8", (m,)),
        "obj_conf": ("<f4", (m,)),
        "attr_ids": ("<i8", (m,)),
        "attr_conf": ("<f4", (m,)),
        "num_boxes": ("<i4", ()),
        "img_h": ("<i4", ()),
        "img_w": ("<i4", ()),
    }


#: Largest padded image (all arrays) a store is built or read with: 1 GiB is over 200,000
#: boxes of 2048 float16 features, far beyond any detector's output, so a larger size is a
#: mistyped flag (`--max-boxes 1e9`), refused before anything is allocated.
MAX_ROW_BYTES = 2**30


def row_nbytes(dtype: str, max_boxes: int, feat_dim: int) -> int:
    """Bytes one image takes across all array files (what the importer buffers per row)."""
    return sum(int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize
               for dt, shape in array_specs(dtype, max_boxes, feat_dim).values())


# --------------------------------------------------------------------------------------
# manifest validation
# --------------------------------------------------------------------------------------

_HEX8 = re.compile(r"[0-9a-f]{8}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _Checker:
    """Checks one manifest; every failure names the manifest file and the dotted key."""

    def __init__(self, mpath: Path):
        self.mpath = mpath

    def fail(self, key: str, msg: str) -> StoreFormatError:
        return StoreFormatError(self.mpath, msg, key)

    def get(self, obj: dict[str, Any], key: str, where: str, ok: Callable[[Any], bool], what: str) -> Any:
        full = f"{where}.{key}" if where else key
        if key not in obj:
            raise self.fail(full, "missing (damaged store; re-import it)")
        value = obj[key]
        if not ok(value):
            raise self.fail(full, f"expected {what}, got {value!r:.80}")
        return value

    def opt(self, obj: dict[str, Any], key: str, ok: Callable[[Any], bool], what: str) -> None:
        if key in obj and not ok(obj[key]):
            raise self.fail(key, f"expected {what}, got {obj[key]!r:.80}")


def _plain_name(v: Any) -> bool:
    # File names only: a manifest must not point a reader outside its directory.
    return isinstance(v, str) and bool(v) and v not in (".", "..") and "/" not in v and "\\" not in v


def _source_ok(s: Any) -> bool:
    return (isinstance(s, dict) and isinstance(s.get("path"), str) and _is_int(s.get("rows"))
            and _is_int(s.get("size")) and isinstance(s.get("crc32"), str))


def _skipped_ok(s: Any) -> bool:
    return (isinstance(s, list) and len(s) == 3 and isinstance(s[0], str) and _is_int(s[1])
            and isinstance(s[2], str))


def _labels_ok(v: Any) -> bool:
    if not isinstance(v, dict):
        return False
    for key in ("obj_id_min", "obj_id_max", "attr_id_min", "attr_id_max"):
        if not _is_int(v.get(key)):
            return False
    return all(v.get(k) is None or (_is_int(v.get(k)) and v[k] >= 1)
               for k in ("num_object_labels", "num_attr_labels"))


def validate_manifest(manifest: Any, mpath: Path) -> None:
    """Raise :class:`StoreFormatError` naming ``mpath`` and the key for any malformed entry.

    Checks types and ranges of every key that readers use, and that each array entry has
    exactly the dtype, shape and byte count the layout implies (files are not touched).
    """
    c = _Checker(mpath)
    if not isinstance(manifest, dict):
        raise StoreFormatError(mpath, f"not a {FORMAT_NAME} manifest (a JSON object expected, "
                               f"got {type(manifest).__name__})")
    if manifest.get("format") != FORMAT_NAME:
        raise c.fail("format", f"not a {FORMAT_NAME} manifest (got {manifest.get('format')!r:.80})")
    if not _is_int(manifest.get("version")) or manifest["version"] != FORMAT_VERSION:
        raise c.fail("version", f"store format version {manifest.get('version')!r}, this lxmert reads "
                     f"version {FORMAT_VERSION}; re-import the TSV files")
    pos = lambda v: _is_int(v) and v >= 1  # noqa: E731
    n = c.get(manifest, "num_images", "", pos, "an integer >= 1")
    m = c.get(manifest, "max_boxes", "", pos, "an integer >= 1")
    d = c.get(manifest, "feat_dim", "", pos, "an integer >= 1")
    dtype = c.get(manifest, "dtype", "", lambda v: v in STORE_DTYPES, f"one of {sorted(STORE_DTYPES)}")
    arrays = c.get(manifest, "arrays", "", lambda v: isinstance(v, dict), "an object")
    for name, (dt, shape) in array_specs(dtype, m, d).items():
        where = f"arrays.{name}"
        meta = c.get(arrays, name, "arrays", lambda v: isinstance(v, dict), "an object")
        c.get(meta, "file", where, _plain_name, "a file name inside the store")
        c.get(meta, "dtype", where, lambda v, dt=dt: v == dt, f"{dt!r} for dtype={dtype}")
        want = [n, *shape]
        c.get(meta, "shape", where, lambda v, w=want: isinstance(v, list) and v == w,
              f"{want} (num_images, max_boxes, feat_dim)")
        nbytes = n * int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize
        c.get(meta, "bytes", where, lambda v, b=nbytes: _is_int(v) and v == b, f"{nbytes}")
        c.get(meta, "crc32", where, lambda v: isinstance(v, str) and bool(_HEX8.fullmatch(v)),
              "8 hex digits")
    index = c.get(manifest, "index", "", lambda v: isinstance(v, dict), "an object")
    c.get(index, "file", "index", _plain_name, "a file name inside the store")
    c.get(index, "bytes", "index", lambda v: _is_int(v) and v >= 2, "an integer >= 2")
    c.get(index, "crc32", "index", lambda v: isinstance(v, str) and bool(_HEX8.fullmatch(v)), "8 hex digits")
    # optional keys (older stores may lack the newer ones); readers and `info` use them
    c.opt(manifest, "newline", lambda v: v in ("\n", "\r\n"), "'\\n' or '\\r\\n'")
    c.opt(manifest, "sources", lambda v: isinstance(v, list) and all(map(_source_ok, v)),
          "a list of {path, size, crc32, rows} objects")
    c.opt(manifest, "skipped", lambda v: isinstance(v, list) and all(map(_skipped_ok, v)),
          "a list of [file, line, reason]")
    for key in ("truncated_rows", "clipped_values"):
        c.opt(manifest, key, lambda v: _is_int(v) and v >= 0, "an integer >= 0")
    c.opt(manifest, "clip_fp16", lambda v: isinstance(v, bool), "true or false")
    c.opt(manifest, "created", lambda v: isinstance(v, str), "a string")
    c.opt(manifest, "labels", _labels_ok,
          "{obj_id_min, obj_id_max, attr_id_min, attr_id_max: int, num_object_labels, num_attr_labels: int or null}")
    c.opt(manifest, "max_boxes_from", lambda v: v is None or (isinstance(v, list) and len(v) == 2
                                                              and isinstance(v[0], str) and _is_int(v[1])),
          "[file, line] or null")


def read_manifest(path: Path) -> dict[str, Any]:
    """Load and validate a store's manifest and stat its files (no data is read).

    What it guarantees: ``path`` is a directory with a :data:`MANIFEST` of this format and
    version whose keys all have valid types and values (:func:`validate_manifest`), and
    every array file and the index exist with exactly the byte counts the manifest's
    shapes imply. What it does not check: file contents (CRC-32) and values; that is
    :func:`lxmert.features.check.verify_checksums` / :func:`~lxmert.features.check.check_store`,
    which read the whole store.
    """
    if not path.exists():
        raise FileNotFoundError(f"feature store not found: {path}")
    if not path.is_dir():
        hint = " (looks like a TSV: import it with `lxmert features import`)" if path.suffix == ".tsv" else ""
        raise StoreFormatError(path, f"not a feature store directory{hint}")
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise StoreFormatError(
            path, f"has no {MANIFEST}: it is not a complete feature store (an interrupted "
            "import leaves such a directory; delete it and run `lxmert features import` again)"
        )
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StoreFormatError(mpath, f"unreadable manifest ({err})") from None
    validate_manifest(manifest, mpath)
    for name, meta in manifest["arrays"].items():
        if name not in PER_BOX + PER_IMAGE:
            continue
        f = path / meta["file"]
        size = f.stat().st_size if f.is_file() else None
        if size != meta["bytes"]:
            raise StoreFormatError(
                f, f"{'missing' if size is None else f'{size} bytes'}, expected {meta['bytes']} "
                "(truncated or altered store; re-import it)"
            )
    ipath = path / manifest["index"]["file"]
    if not ipath.is_file() or ipath.stat().st_size != manifest["index"]["bytes"]:
        raise StoreFormatError(ipath, "missing or of the wrong size (damaged store; re-import it)")
    return manifest


def parse_index(raw: bytes, manifest: dict[str, Any], ipath: Path) -> tuple[list[str] | None, list[str]]:
    """Decode ``ids.json`` and check it: CRC-32 as recorded, a JSON list of ``num_images``
    unique non-empty strings. Returns ``(ids or None when unusable, problems)``."""
    problems: list[str] = []
    if f"{zlib.crc32(raw):08x}" != manifest["index"]["crc32"]:
        problems.append(f"{ipath}: CRC-32 mismatch (file altered after import)")
    try:
        ids = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        return None, problems + [f"{ipath}: unreadable ({err})"]
    if not isinstance(ids, list):
        return None, problems + [f"{ipath}: expected a JSON list of image ids, got {type(ids).__name__}"]
    bad = [i for i, v in enumerate(ids) if not isinstance(v, str) or not v]
    if bad:
        return None, problems + [f"{ipath}: {len(bad)} entr(y/ies) not a non-empty string, first at "
                                 f"position {bad[0]} ({ids[bad[0]]!r:.40})"]
    n = manifest["num_images"]
    if len(ids) != n:
        problems.append(f"{ipath}: {len(ids)} ids for {n} rows")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(v for v in ids if v in seen or seen.add(v))  # type: ignore[func-returns-value]
        problems.append(f"{ipath}: duplicate image ids (first: {dup!r})")
    return ids, problems
