"""Importing bottom-up-attention TSVs into a feature store (``lxmert features import``).

Why a store: the original release decodes whole TSV files into Python lists at start-up
(~288 KiB per image, hundreds of GB once DataLoader workers copy them). A store is a
directory of flat arrays (layout in :mod:`lxmert.features.format`) that every process maps
read-only.

:func:`build_store` makes two streaming passes over the TSVs. The first reads only the
scalar fields and the *lengths* of the base64 fields - no decoding - which is enough to
validate the row structure, find duplicate ids and learn N, M and D exactly. The second
decodes each row, checks its values and appends it, padded, to the array files with plain
sequential writes. Two passes cost one extra sequential read (base64 decoding dominates
anyway, see docs/features.md) and buy: memory independent of file size, files written
once at their final shape (no re-layout when a later row has more boxes, no guessing) and
structural errors found before gigabytes are written.

Values are checked against what the release's detector produces, because each of these
passes decoding and only corrupts or crashes later (an ``IndexError`` deep in
pre-training names no file; an out-of-image box silently skews ``boxes_norm``):

* object ids in ``[0, num_object_labels)`` and attribute ids in ``[0, num_attr_labels)``
  (1600 and 400 for the Visual Genome detector; another detector passes its counts). The
  manifest records the id ranges, so training checks them against the model's label
  counts without reading data (:meth:`FeatureStore.check_label_ids`).
* boxes in pixels inside the image, ``0 <= x <= img_w`` and ``0 <= y <= img_h``: the
  detector clips its boxes to the image, so a box outside means a wrong image size, a
  normalised or differently ordered box, or a broken row. Such rows are refused (or
  skipped with ``skip_bad``), not clipped: clipping would hide the error and keep a
  distorted box.
* image sizes within int32 (the stored type), finite features / boxes / confidences.
* a box capacity that is stated: by default the largest ``num_boxes`` present, refused
  above :data:`AUTO_MAX_BOXES` (one 20,000-box row would pad every image to 20,000 slots)
  unless ``max_boxes`` is given; sizes beyond memory or free disk are refused before
  anything is allocated.

Everything goes to ``<out>.tmp-<pid>-XXXX`` first; ``manifest.json`` is written last and
the directory renamed into place (:mod:`lxmert.features.swap`), so an interrupted import
never leaves a directory that :meth:`FeatureStore.open` accepts, and the next import
cleans up after a killed one. SIGTERM (what schedulers send) unwinds like an exception:
decode workers stop, the temporary directory is removed, and the process exits with
status 143; workers also die with a SIGKILLed parent (:mod:`lxmert.features.pool`).

float16 storage halves the size. Rounding to float16 has relative error at most
2**-11 (~4.9e-4) for |x| >= 2**-14 and absolute error at most 2**-25 below that, i.e.
``|fp16(x) - x| <= max(2**-11 * |x|, 2**-25)``. Values beyond the float16 range
(|x| > 65504) are an error unless ``clip_fp16=True`` saturates them explicitly.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Sequence

import numpy as np

from lxmert.features.cast import cast_into
from lxmert.features.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    FP16_MAX,
    INDEX,
    INT32_MAX,
    MANIFEST,
    MAX_ROW_BYTES,
    PER_BOX,
    STORE_DTYPES,
    TSV_FIELD,
    array_specs,
    row_nbytes,
)
from lxmert.features.pool import map_ordered
from lxmert.features.swap import make_temp_dir, recover, swap_into_place
from lxmert.features.tsv import (
    FIELDNAMES,
    UTF8_BOM,
    TsvFormatError,
    b64_decoded_length,
    decode_row,
    is_blank,
    iter_lines,
    split_header,
)
from lxmert.atomic import atomic_write_text

__all__ = [
    "AUTO_MAX_BOXES",
    "DEFAULT_NUM_ATTR_LABELS",
    "DEFAULT_NUM_OBJECT_LABELS",
    "MAX_ROW_BYTES",
    "ArrayWriter",
    "StoreInfo",
    "StoreWriteError",
    "build_store",
    "record_problem",
]

PathLike = str | os.PathLike[str]

#: The release's detector (Visual Genome) has 1600 object and 400 attribute classes.
DEFAULT_NUM_OBJECT_LABELS = 1600
DEFAULT_NUM_ATTR_LABELS = 400
#: Largest box capacity chosen automatically. Bottom-up-attention extractions keep 10-100
#: boxes per image (36 in the released files); more means a broken row or another detector,
#: and every image of the store would be padded to it, so it must be asked for.
AUTO_MAX_BOXES = 100


class StoreWriteError(OSError):
    """Writing a feature store failed (disk full, read-only or missing directory, ...).

    An ``OSError`` whose message names the path and the reason in one line, e.g.
    ``cannot write /data/s.tmp-12-ab/features.bin: No space left on device``.
    """

    def __init__(self, path: PathLike, err_no: int | None, strerror: str | None = None, detail: str = ""):
        super().__init__(err_no, strerror or (os.strerror(err_no) if err_no else "write failed"), str(path))
        self.detail = detail

    @classmethod
    def wrap(cls, path: PathLike, err: OSError, detail: str = "") -> "StoreWriteError":
        if isinstance(err, StoreWriteError):
            return err
        return cls(err.filename or path, err.errno, err.strerror or str(err), detail)

    def __str__(self) -> str:
        msg = f"cannot write {self.filename}: {self.strerror}"
        return f"{msg} ({self.detail})" if self.detail else msg

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.filename, self.errno, self.strerror, self.detail))


@contextlib.contextmanager
def _writing(path: PathLike, detail: str = "") -> Iterator[None]:
    """Re-raise any ``OSError`` of the block as a :class:`StoreWriteError` naming ``path``."""
    try:
        yield
    except OSError as err:
        if isinstance(err, StoreWriteError) or err.errno is None:
            raise  # already says what went wrong (e.g. our own FileExistsError)
        raise StoreWriteError.wrap(path, err, detail) from err


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


@dataclass
class StoreInfo:
    """What :func:`build_store` produced (also what ``lxmert features import`` prints)."""

    path: Path
    num_images: int
    max_boxes: int
    feat_dim: int
    dtype: str
    sources: list[str]
    skipped: list[tuple[str, int, str]] = field(default_factory=list)
    truncated_rows: int = 0
    clipped_values: int = 0
    nbytes: int = 0
    seconds: float = 0.0
    #: the row whose num_boxes set the capacity; None when ``max_boxes`` was given
    max_boxes_from: tuple[str, int] | None = None
    #: id ranges of the stored boxes and the label counts they were checked against
    labels: dict[str, Any] = field(default_factory=dict)
    #: things done or noticed on the way (clean-up of killed imports, a byte-order mark)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.max_boxes_from is None:
            origin = "(max_boxes given)"
        else:
            origin = f"(largest num_boxes: {self.max_boxes_from[0]}, line {self.max_boxes_from[1]})"
        lines = [
            f"store      {self.path}",
            f"images     {self.num_images}",
            f"features   [{self.num_images}, {self.max_boxes}, {self.feat_dim}] {self.dtype}",
            f"max boxes  {self.max_boxes} {origin}",
        ]
        if self.labels:
            lab = self.labels
            lines.append(f"label ids  objects {lab['obj_id_min']}..{lab['obj_id_max']}, "
                         f"attributes {lab['attr_id_min']}..{lab['attr_id_max']}")
        lines += [
            f"size       {self.nbytes / 2**20:.1f} MiB",
            f"sources    {len(self.sources)} file(s)",
            f"time       {self.seconds:.1f} s",
        ]
        if self.truncated_rows:
            lines.append(f"truncated  {self.truncated_rows} row(s) to max_boxes={self.max_boxes}")
        if self.clipped_values:
            lines.append(f"clipped    {self.clipped_values} value(s) to the float16 range")
        lines.extend(f"note       {n}" for n in self.notes)
        lines.append(f"skipped    {len(self.skipped)} bad row(s)")
        lines.extend(f"  {f}, line {n}: {why}" for f, n, why in self.skipped)
        return "\n".join(lines)


class ArrayWriter:
    """Appends fixed-shape rows to a raw array file, keeping a running CRC-32.

    Public so that tests can inject write failures (a full disk) where they happen.
    """

    def __init__(self, path: Path, dtype: str, row_shape: tuple[int, ...]):
        self.path = path
        self.dtype = np.dtype(dtype)
        self.row_shape = row_shape
        with _writing(path):
            self.file: BinaryIO = open(path, "wb")
        self.crc = 0
        self.rows = 0

    def write(self, row: np.ndarray) -> None:
        data = memoryview(np.ascontiguousarray(row, dtype=self.dtype)).cast("B")
        self.file.write(data)
        self.crc = zlib.crc32(data, self.crc)
        self.rows += 1

    def put(self, row: np.ndarray) -> None:
        """:meth:`write`, with an ``OSError`` (a full disk) re-raised naming this file."""
        try:
            self.write(row)
        except StoreWriteError:
            raise
        except OSError as err:
            raise StoreWriteError.wrap(self.path, err) from err

    def close(self) -> dict[str, Any]:
        """Flush, fsync and close; returns the file's manifest entry."""
        with _writing(self.path):
            try:
                self.file.flush()
                os.fsync(self.file.fileno())
            finally:
                self.file.close()
            size = self.path.stat().st_size
        return {
            "file": self.path.name,
            "dtype": self.dtype.str,
            "shape": [self.rows, *self.row_shape],
            "bytes": size,
            "crc32": f"{self.crc:08x}",
        }

    def abandon(self) -> None:
        """Close without flushing (the import failed; the file is about to be removed)."""
        with contextlib.suppress(OSError):
            self.file.close()


# --------------------------------------------------------------------------------------
# first pass: structure only
# --------------------------------------------------------------------------------------


@dataclass
class _Scan:
    """Result of the first (validation) pass."""

    rows: int = 0
    max_boxes: int = 0
    max_boxes_at: tuple[str, int] | None = None
    feat_dim: int | None = None
    bad: set[tuple[int, int]] = field(default_factory=set)  # (file index, lineno)
    skipped: list[tuple[str, int, str]] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    newlines: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


def _check_lengths(fields: Sequence[bytes | memoryview], n: int, feat_dim: int | None) -> int:
    """Validate base64 field lengths for ``n`` boxes without decoding; returns D."""
    expected = {"objects_id": 8 * n, "objects_conf": 4 * n, "attrs_id": 8 * n,
                "attrs_conf": 4 * n, "boxes": 16 * n}
    for name, want in expected.items():
        got = b64_decoded_length(fields[FIELDNAMES.index(name)])
        if got < 0:
            raise ValueError(f"field {name!r}: invalid base64 (length not a multiple of 4)")
        if got != want:
            raise ValueError(f"field {name!r}: {got} bytes, expected {want} for num_boxes={n}")
    got = b64_decoded_length(fields[9])
    if got < 0:
        raise ValueError("field 'features': invalid base64 (length not a multiple of 4)")
    if n == 0:
        if got:
            raise ValueError(f"field 'features': {got} bytes for num_boxes=0")
        return feat_dim or 0
    if got == 0 or got % (4 * n):
        raise ValueError(
            f"field 'features': {got} bytes is not a positive multiple of num_boxes={n} x 4-byte floats"
        )
    dim = got // (4 * n)
    if feat_dim is not None and dim != feat_dim:
        raise ValueError(f"field 'features': dimension {dim} differs from {feat_dim} of earlier rows")
    return dim


def _scan(paths: Sequence[Path], skip_bad: bool, progress: bool) -> _Scan:
    from tqdm.auto import tqdm

    scan = _Scan()
    seen: dict[str, tuple[str, int]] = {}
    total = sum(p.stat().st_size for p in paths)
    with tqdm(total=total, unit="B", unit_scale=True, desc="scan", disable=not progress) as bar:
        for fi, path in enumerate(paths):
            st = path.stat()
            crc, rows = 0, 0
            with open(path, "rb") as f:
                for lineno, raw in enumerate(f, start=1):
                    crc = zlib.crc32(raw, crc)
                    bar.update(len(raw))
                    if lineno == 1 and raw.startswith(UTF8_BOM):
                        # a signature some editors write; not part of the first id
                        raw = raw[len(UTF8_BOM):]
                        scan.notes.append(f"{path}: UTF-8 byte-order mark at the start ignored")
                    if is_blank(raw):
                        continue
                    rows += 1
                    if raw.endswith(b"\r\n"):
                        scan.newlines.add("\r\n")
                    elif raw.endswith(b"\n"):
                        scan.newlines.add("\n")
                    try:
                        img_id, img_h, img_w, n, fields = split_header(raw, path=path, lineno=lineno)
                        for name, value in (("img_h", img_h), ("img_w", img_w)):
                            if value > INT32_MAX:
                                raise TsvFormatError(path, lineno, f"field {name!r}: {value} exceeds the "
                                                     f"store's int32 range (max {INT32_MAX})")
                        try:
                            dim = _check_lengths(fields, n, scan.feat_dim)
                        except ValueError as err:
                            raise TsvFormatError(path, lineno, str(err)) from None
                        if img_id in seen:
                            first = seen[img_id]
                            raise TsvFormatError(
                                path, lineno,
                                f"duplicate img_id {img_id!r} (first seen in {first[0]}, line {first[1]})",
                            )
                    except TsvFormatError as err:
                        if not skip_bad:
                            raise
                        scan.bad.add((fi, lineno))
                        scan.skipped.append((str(path), lineno, err.reason))
                        continue
                    seen[img_id] = (str(path), lineno)
                    if n > 0 and scan.feat_dim is None:
                        scan.feat_dim = dim
                    if n > scan.max_boxes:
                        scan.max_boxes, scan.max_boxes_at = n, (str(path), lineno)
                    scan.rows += 1
            scan.sources.append({
                "path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                "crc32": f"{crc:08x}", "rows": rows,
            })
    return scan


# --------------------------------------------------------------------------------------
# second pass: decode and check values
# --------------------------------------------------------------------------------------


def record_problem(record: dict[str, Any], num_object_labels: int | None = DEFAULT_NUM_OBJECT_LABELS,
                   num_attr_labels: int | None = DEFAULT_NUM_ATTR_LABELS) -> str | None:
    """Why a decoded TSV record cannot go into a store (None when it can).

    Checks what decoding cannot: detector ids in ``[0, num_*_labels)`` (``None``: only
    ``>= 0``) and boxes in pixels within the image. The reason names the field, the box
    and the value, for a message ``file, line N: <reason>``.
    """
    for fname, limit, what in (("objects_id", num_object_labels, "num_object_labels"),
                               ("attrs_id", num_attr_labels, "num_attr_labels")):
        ids = record[fname]
        if not ids.size:
            continue
        bad = (ids < 0) if limit is None else (ids < 0) | (ids >= limit)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            span = "[0, ...)" if limit is None else f"[0, {limit})"
            hint = "" if limit is None else (f" ({what}={limit}; pass the detector's class count "
                                             f"as {what} / --{what.replace('_', '-')} if it has more)")
            return (f"field {fname!r}: {int(bad.sum())} id(s) outside {span}, first {int(ids[i])} "
                    f"at box {i}{hint}")
    boxes = record["boxes"]
    if boxes.size:
        w, h = record["img_w"], record["img_h"]
        lim = np.array([w, h, w, h], dtype=np.float64)
        bad = ((boxes < 0) | (boxes > lim)).any(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            box = ", ".join(f"{v:.6g}" for v in boxes[i].tolist())
            return (f"field 'boxes': {int(bad.sum())} box(es) outside the {w} x {h} image, first box "
                    f"{i} = ({box}); boxes must be pixels (x1, y1, x2, y2) within [0, img_w] x [0, img_h]")
    return None


def _decode_for_store(task: tuple[Any, ...]) -> Any:
    """Second-pass work for one row (runs in a worker process when ``workers > 1``).

    Returns the reason string for a bad row, else ``(img_id, img_h, img_w, num_boxes,
    per-box arrays truncated to the capacity and cast to the store dtypes, clipped count)``.
    """
    path, lineno, line, dim, dtype, clip_fp16, cap, n_obj, n_attr = task
    try:
        rec = decode_row(line, path=path, lineno=lineno, feat_dim=dim)
    except TsvFormatError as err:
        return err.reason
    why = record_problem(rec, n_obj, n_attr)
    if why is not None:
        return why
    n = rec["num_boxes"]
    k = min(n, cap)
    feats = rec["features"][:k]
    clipped = 0
    if dtype == "float16" and feats.size:
        over = np.abs(feats) > FP16_MAX
        if over.any():
            if not clip_fp16:
                return (
                    f"field 'features': {int(over.sum())} value(s) beyond the float16 range "
                    f"(max |x| = {float(np.abs(rec['features']).max()):.6g} > {FP16_MAX:g}); use dtype "
                    "float32 or clip explicitly (clip_fp16=True / --clip-fp16)"
                )
            clipped = int(over.sum())
            feats = np.clip(feats, -FP16_MAX, FP16_MAX)
        narrow = np.empty(feats.shape, dtype=np.float16)
        cast_into(narrow, feats)
        feats = narrow
    per_box = {"features": feats}
    for name, field_name in TSV_FIELD.items():
        per_box[name] = rec[field_name][:k]
    return rec["img_id"], rec["img_h"], rec["img_w"], n, per_box, clipped


def _auto_workers(workers: int, total_bytes: int) -> int:
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if workers:
        return workers
    return min(4, os.cpu_count() or 1) if total_bytes > 256 * 2**20 else 1


@contextlib.contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit(143)`` for the block, so that clean-up code runs.

    Only where SIGTERM still has its default action (which would kill the process with no
    clean-up) and in the main thread (the only one Python runs handlers in); a handler the
    caller installed is left alone. A second SIGTERM during the clean-up is ignored.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _check_output(out: Path, overwrite: bool) -> None:
    if not (out.exists() or out.is_symlink()):
        return
    if not overwrite:
        raise FileExistsError(f"{out} already exists (pass overwrite=True / --force to replace it)")
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory: refusing to replace it with a "
                              "feature store (even with --force)")
    if not (out / MANIFEST).is_file() and any(out.iterdir()):
        raise FileExistsError(f"{out} is a non-empty directory without {MANIFEST}, not a feature store: "
                              "refusing to replace it (even with --force); delete it or choose another --out")


def _check_size(out: Path, rows: int, cap: int, dim: int, dtype: str, scan: _Scan, given: bool) -> int:
    """Refuse capacities that would not fit in memory or on disk, before allocating."""
    row = row_nbytes(dtype, cap, dim)
    total = row * rows
    shape = f"[{rows}, {cap}, {dim}] {dtype}"
    if row > MAX_ROW_BYTES:
        raise ValueError(
            f"max_boxes={cap} would make every image {_size(row)} ({shape}: {_size(total)} in all; the "
            f"largest num_boxes in the input is {scan.max_boxes}); refusing before allocating it"
        )
    try:
        usage = shutil.disk_usage(out.parent)
    except OSError:
        return total
    free = usage.free
    if usage.total and total > free:  # pseudo file systems report a total of 0: no figure
        raise StoreWriteError(out.parent, errno.ENOSPC,
                              detail=f"the store needs {_size(total)} ({shape}), {_size(free)} free; "
                                     f"{'lower max_boxes' if given else 'free some space'}")
    return total


def build_store(
    tsv_paths: PathLike | Iterable[PathLike],
    out_dir: PathLike,
    dtype: str = "float16",
    skip_bad: bool = False,
    max_boxes: int | None = None,
    progress: bool = True,
    *,
    clip_fp16: bool = False,
    overwrite: bool = False,
    workers: int = 0,
    num_object_labels: int | None = DEFAULT_NUM_OBJECT_LABELS,
    num_attr_labels: int | None = DEFAULT_NUM_ATTR_LABELS,
) -> StoreInfo:
    """Import one or many bottom-up-attention TSV files into a feature store at ``out_dir``.

    Args:
        tsv_paths: a TSV path or several; rows keep their file order, ids must be unique
            across all files.
        out_dir: the store directory to create (``FileExistsError`` if it exists, unless
            ``overwrite``; a file or a non-store directory is never replaced).
        dtype: ``"float16"`` (half the size; error bound in the module docstring) or
            ``"float32"`` (bit exact, so :func:`export_tsv` reproduces the input rows).
        skip_bad: skip malformed rows instead of failing; they are listed in
            ``StoreInfo.skipped`` as ``(file, line, reason)``.
        max_boxes: fixed box capacity per image; rows with more boxes keep their first
            ``max_boxes`` (counted in ``StoreInfo.truncated_rows``). Default: the largest
            ``num_boxes`` present, which must not exceed :data:`AUTO_MAX_BOXES`.
        progress: show tqdm progress bars.
        clip_fp16: saturate feature values beyond +-65504 when ``dtype="float16"`` instead
            of failing.
        overwrite: replace an existing store at ``out_dir`` (only once the new one is complete).
        workers: processes decoding base64 in the second pass (the bottleneck). 0 = automatic:
            up to 4 (bounded by the CPU count) for inputs over 256 MiB, else 1 (in-process;
            worker start-up would dominate).
        num_object_labels, num_attr_labels: the detector's class counts; ids must lie in
            ``[0, count)``. ``None`` checks only ``>= 0``.

    Raises:
        TsvFormatError: a bad row (file and line in the message) unless ``skip_bad``.
        ValueError: no usable rows, or an unreasonable box capacity.
        StoreWriteError: an ``OSError`` while writing (the path and the reason in the
            message), including a store that would not fit on the disk.
        SystemExit: on SIGTERM (exit status 143), after cleaning up.
        In every case nothing is left at ``out_dir`` or in temporary directories, and an
        existing store there is untouched.
    """
    t0 = time.perf_counter()
    if dtype not in STORE_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(STORE_DTYPES)}, got {dtype!r}")
    if max_boxes is not None and (not isinstance(max_boxes, (int, np.integer)) or isinstance(max_boxes, bool)
                                  or max_boxes < 1):
        raise ValueError(f"max_boxes must be an integer >= 1, got {max_boxes!r}")
    for name, count in (("num_object_labels", num_object_labels), ("num_attr_labels", num_attr_labels)):
        if count is not None and (not isinstance(count, (int, np.integer)) or count < 1):
            raise ValueError(f"{name} must be an integer >= 1 or None, got {count!r}")
    paths = [Path(tsv_paths)] if isinstance(tsv_paths, (str, os.PathLike)) else [Path(p) for p in tsv_paths]
    if not paths:
        raise ValueError("build_store needs at least one TSV file")
    for p in paths:
        if p.is_dir():
            raise IsADirectoryError(f"TSV input {p} is a directory, not a file")
        if not p.is_file():
            raise FileNotFoundError(f"TSV file not found: {p}")
    out = Path(out_dir)
    with _writing(out.parent):
        out.parent.mkdir(parents=True, exist_ok=True)
    with _terminate_cleanly():
        notes = recover(out)
        _check_output(out, overwrite)
        scan = _scan(paths, skip_bad, progress)
        notes += scan.notes
        if scan.rows == 0:
            raise ValueError(f"no valid rows in {', '.join(map(str, paths))}")
        if scan.feat_dim is None:
            raise ValueError("every row has num_boxes=0: cannot infer the feature dimension")
        dim = scan.feat_dim
        if max_boxes is None and scan.max_boxes > AUTO_MAX_BOXES:
            where, line = scan.max_boxes_at or ("?", 0)
            raise TsvFormatError(
                where, line,
                f"num_boxes={scan.max_boxes}: the store's box capacity is the largest num_boxes, so every "
                f"image would be padded to {scan.max_boxes} slots (automatic limit {AUTO_MAX_BOXES}); pass "
                f"max_boxes / --max-boxes to truncate to fewer, or to accept {scan.max_boxes}",
            )
        cap = int(max_boxes) if max_boxes is not None else max(scan.max_boxes, 1)
        max_boxes_from = scan.max_boxes_at if max_boxes is None else None
        _check_size(out, scan.rows, cap, dim, dtype, scan, given=max_boxes is not None)
        with _writing(out.parent):
            tmp = make_temp_dir(out)
        try:
            plan = _Plan(paths, out, tmp, dtype, cap, dim, skip_bad, clip_fp16, workers,
                         num_object_labels, num_attr_labels, max_boxes_from, progress)
            info = _write_store(plan, scan)
            with _writing(out):
                os.chmod(tmp, 0o755)  # mkdtemp creates 0700
                swap_into_place(tmp, out, overwrite)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    info.notes = notes
    info.seconds = time.perf_counter() - t0
    return info


@dataclass(frozen=True)
class _Plan:
    """What the second pass writes, decided before any byte is written."""

    paths: list[Path]
    out: Path
    tmp: Path
    dtype: str
    cap: int
    dim: int
    skip_bad: bool
    clip_fp16: bool
    workers: int
    num_object_labels: int | None
    num_attr_labels: int | None
    max_boxes_from: tuple[str, int] | None
    progress: bool


def _write_store(plan: _Plan, scan: _Scan) -> StoreInfo:
    """The second pass: decode, check and write every row into ``plan.tmp``, then the manifest."""
    from tqdm.auto import tqdm

    paths, tmp, dtype, cap, dim = plan.paths, plan.tmp, plan.dtype, plan.cap, plan.dim
    specs = array_specs(dtype, cap, dim)
    writers: dict[str, ArrayWriter] = {}
    try:
        for name, (dt, shape) in specs.items():
            writers[name] = ArrayWriter(tmp / f"{name}.bin", dt, shape)
    except BaseException:
        for w in writers.values():
            w.abandon()
        raise
    rows = {name: np.zeros(shape, dtype=dt) for name, (dt, shape) in specs.items() if name in PER_BOX}
    ids: list[str] = []
    skipped = list(scan.skipped)
    truncated = clipped = 0
    lo = {"obj_ids": INT32_MAX, "attr_ids": INT32_MAX}
    hi = {"obj_ids": -1, "attr_ids": -1}
    tasks = (
        (str(path), lineno, line, dim, dtype, plan.clip_fp16, cap, plan.num_object_labels, plan.num_attr_labels)
        for fi, path in enumerate(paths)
        for lineno, line in iter_lines(path)
        if (fi, lineno) not in scan.bad
    )
    n_workers = _auto_workers(plan.workers, sum(s["size"] for s in scan.sources))
    closed = False
    try:
        # closing(): on an error the worker pool shuts down now, not when the traceback
        # that references this frame is finally dropped.
        decoded = contextlib.closing(map_ordered(_decode_for_store, tasks, n_workers))
        with decoded as results, tqdm(total=scan.rows, unit="img", desc="import", disable=not plan.progress) as bar:
            for (path_s, lineno, *_), result in results:
                bar.update(1)
                if isinstance(result, str):  # the reason a row is bad
                    if not plan.skip_bad:
                        raise TsvFormatError(path_s, lineno, result)
                    skipped.append((path_s, lineno, result))
                    continue
                img_id, img_h, img_w, n, per_box, n_clipped = result
                k = min(n, cap)
                truncated += n > cap
                clipped += n_clipped
                for name in PER_BOX:
                    buf = rows[name]
                    buf[:k] = per_box[name]
                    buf[k:] = 0
                    writers[name].put(buf)
                if k:
                    for name in ("obj_ids", "attr_ids"):
                        lo[name] = min(lo[name], int(per_box[name].min()))
                        hi[name] = max(hi[name], int(per_box[name].max()))
                writers["num_boxes"].put(np.asarray(k))
                writers["img_h"].put(np.asarray(img_h))
                writers["img_w"].put(np.asarray(img_w))
                ids.append(img_id)
        for path, src in zip(paths, scan.sources):
            now = path.stat()
            if (now.st_size, now.st_mtime_ns) != (src["size"], src["mtime_ns"]):
                raise RuntimeError(f"{path} changed while it was being imported; run the import again")
        arrays = {name: w.close() for name, w in writers.items()}
        closed = True
    finally:
        if not closed:
            for w in writers.values():
                w.abandon()
    if not ids:
        raise ValueError(f"no valid rows in {', '.join(map(str, paths))}")

    index_text = json.dumps(ids, ensure_ascii=False)
    with _writing(tmp / INDEX):
        atomic_write_text(tmp / INDEX, index_text)
        index_bytes = (tmp / INDEX).stat().st_size
    nbytes = sum(a["bytes"] for a in arrays.values()) + index_bytes
    newline = scan.newlines.pop() if len(scan.newlines) == 1 else "\n"
    labels = {
        "obj_id_min": lo["obj_ids"] if hi["obj_ids"] >= 0 else 0, "obj_id_max": hi["obj_ids"],
        "attr_id_min": lo["attr_ids"] if hi["attr_ids"] >= 0 else 0, "attr_id_max": hi["attr_ids"],
        "num_object_labels": plan.num_object_labels, "num_attr_labels": plan.num_attr_labels,
    }
    manifest = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "num_images": len(ids),
        "max_boxes": cap,
        "feat_dim": dim,
        "dtype": dtype,
        "box_format": "xyxy pixels",
        "newline": newline,
        "arrays": arrays,
        "index": {
            "file": INDEX,
            "bytes": index_bytes,
            "crc32": f"{zlib.crc32(index_text.encode('utf-8')):08x}",
        },
        "labels": labels,
        "max_boxes_from": None if plan.max_boxes_from is None else list(plan.max_boxes_from),
        "sources": scan.sources,
        "skipped": [list(s) for s in skipped],
        "truncated_rows": truncated,
        "clip_fp16": plan.clip_fp16,
        "clipped_values": clipped,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    # The manifest is written last: its presence is what makes the directory a store.
    with _writing(tmp / MANIFEST):
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    return StoreInfo(
        path=plan.out, num_images=len(ids), max_boxes=cap, feat_dim=dim, dtype=dtype,
        sources=[str(p) for p in paths], skipped=skipped, truncated_rows=truncated,
        clipped_values=clipped, nbytes=nbytes, labels=labels, max_boxes_from=plan.max_boxes_from,
    )

