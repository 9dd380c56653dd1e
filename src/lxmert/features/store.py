"""A memory-mapped store of region features, imported from bottom-up-attention TSVs.

Why: the original release decodes whole TSV files into Python lists at start-up (~288 KiB
per image, hundreds of GB once DataLoader workers copy them). A store is a directory of
flat little-endian arrays that every process maps read-only, so opening is instant,
memory is shared page cache, and a random image costs one contiguous read.

Layout of a store directory (``manifest.json`` describes every file)::

    manifest.json   format/version, counts, dtypes, shapes, CRC-32 of every file, sources
    ids.json        image ids in row order (the index img_id -> row)
    features.bin    [N, M, D] float16 or float32, rows zero-padded past num_boxes
    boxes.bin       [N, M, 4] float32, pixels (x1, y1, x2, y2)
    obj_ids.bin     [N, M] int64      obj_conf.bin   [N, M] float32
    attr_ids.bin    [N, M] int64      attr_conf.bin  [N, M] float32
    num_boxes.bin   [N] int32         img_h.bin / img_w.bin  [N] int32

``M`` is the largest ``num_boxes`` seen (or the ``max_boxes`` given at import).

Import (:func:`build_store`) makes two streaming passes over the TSVs. The first reads only
the scalar fields and the *lengths* of the base64 fields - no decoding - which is enough to
validate the row structure, find duplicate ids and learn N, M and D exactly. The second
decodes and appends each padded row to the array files with plain sequential writes. Two
passes cost one extra sequential read (a few hundred MB/s of CPU-bound base64 decoding
dominates anyway, see docs/features.md) and buy: memory independent of file size (one row
at a time), files written once at their final shape (no re-layout when a later row has
more boxes, no over-allocation to guess), and structural errors found before gigabytes are
written. Everything goes to ``<out>.tmp-XXXX`` first; ``manifest.json`` is written last and
the directory renamed into place, so an interrupted import never leaves a directory that
:meth:`FeatureStore.open` accepts.

float16 storage halves the size. Rounding to float16 has relative error at most
2**-11 (~4.9e-4) for |x| >= 2**-14 and absolute error at most 2**-25 below that, i.e.
``|fp16(x) - x| <= max(2**-11 * |x|, 2**-25)``. Values beyond the float16 range
(|x| > 65504) are an error unless ``clip_fp16=True`` saturates them explicitly.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Sequence

import numpy as np

from lxmert.features.tsv import (
    FIELDNAMES,
    TsvFormatError,
    b64_decoded_length,
    decode_row,
    is_blank,
    iter_lines,
    split_header,
    write_tsv,
)
from lxmert.atomic import atomic_write_text

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "FP16_MAX",
    "FeatureStore",
    "StoreInfo",
    "build_store",
    "check_store",
    "export_tsv",
]

FORMAT_NAME = "lxmert-feature-store"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
INDEX = "ids.json"
FP16_MAX = float(np.finfo(np.float16).max)  # 65504.0

_DTYPES = {"float16": "<f2", "float32": "<f4"}
# name -> (on-disk dtype, trailing shape given (M, D)); features' dtype is the store dtype.
_PER_BOX = ("features", "boxes", "obj_ids", "obj_conf", "attr_ids", "attr_conf")
_PER_IMAGE = ("num_boxes", "img_h", "img_w")
# store array name -> TSV record field
_TSV_FIELD = {
    "boxes": "boxes",
    "obj_ids": "objects_id",
    "obj_conf": "objects_conf",
    "attr_ids": "attrs_id",
    "attr_conf": "attrs_conf",
}

PathLike = str | os.PathLike[str]


def _array_specs(dtype: str, max_boxes: int, feat_dim: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    """On-disk dtype and per-row shape of every array of a store."""
    m = max_boxes
    return {
        "features": (_DTYPES[dtype], (m, feat_dim)),
        "boxes": ("<f4", (m, 4)),
        "obj_ids": ("<i8", (m,)),
        "obj_conf": ("<f4", (m,)),
        "attr_ids": ("<i8", (m,)),
        "attr_conf": ("<f4", (m,)),
        "num_boxes": ("<i4", ()),
        "img_h": ("<i4", ()),
        "img_w": ("<i4", ()),
    }


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

    def summary(self) -> str:
        lines = [
            f"store      {self.path}",
            f"images     {self.num_images}",
            f"features   [{self.num_images}, {self.max_boxes}, {self.feat_dim}] {self.dtype}",
            f"size       {self.nbytes / 2**20:.1f} MiB",
            f"sources    {len(self.sources)} file(s)",
            f"time       {self.seconds:.1f} s",
        ]
        if self.truncated_rows:
            lines.append(f"truncated  {self.truncated_rows} row(s) to max_boxes={self.max_boxes}")
        if self.clipped_values:
            lines.append(f"clipped    {self.clipped_values} value(s) to the float16 range")
        lines.append(f"skipped    {len(self.skipped)} bad row(s)")
        lines.extend(f"  {f}, line {n}: {why}" for f, n, why in self.skipped)
        return "\n".join(lines)


# --------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------


class _ArrayWriter:
    """Appends fixed-shape rows to a raw array file, keeping a running CRC-32."""

    def __init__(self, path: Path, dtype: str, row_shape: tuple[int, ...]):
        self.path = path
        self.dtype = np.dtype(dtype)
        self.row_shape = row_shape
        self.file: BinaryIO = open(path, "wb")
        self.crc = 0
        self.rows = 0

    def write(self, row: np.ndarray) -> None:
        data = memoryview(np.ascontiguousarray(row, dtype=self.dtype)).cast("B")
        self.file.write(data)
        self.crc = zlib.crc32(data, self.crc)
        self.rows += 1

    def close(self) -> dict[str, Any]:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        return {
            "file": self.path.name,
            "dtype": self.dtype.str,
            "shape": [self.rows, *self.row_shape],
            "bytes": self.path.stat().st_size,
            "crc32": f"{self.crc:08x}",
        }


@dataclass
class _Scan:
    """Result of the first (validation) pass."""

    rows: int = 0
    max_boxes: int = 0
    feat_dim: int | None = None
    bad: set[tuple[int, int]] = field(default_factory=set)  # (file index, lineno)
    skipped: list[tuple[str, int, str]] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    newlines: set[str] = field(default_factory=set)


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
                    if is_blank(raw):
                        continue
                    rows += 1
                    if raw.endswith(b"\r\n"):
                        scan.newlines.add("\r\n")
                    elif raw.endswith(b"\n"):
                        scan.newlines.add("\n")
                    try:
                        img_id, _, _, n, fields = split_header(raw, path=path, lineno=lineno)
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
                    scan.max_boxes = max(scan.max_boxes, n)
                    scan.rows += 1
            scan.sources.append({
                "path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                "crc32": f"{crc:08x}", "rows": rows,
            })
    return scan


def _decode_for_store(task: tuple[Any, ...]) -> Any:
    """Second-pass work for one row (runs in a worker process when ``workers > 1``).

    Returns the reason string for a bad row, else ``(img_id, img_h, img_w, num_boxes,
    per-box arrays truncated to the capacity and cast to the store dtypes, clipped count)``.
    """
    path, lineno, line, dim, dtype, clip_fp16, cap = task
    try:
        rec = decode_row(line, path=path, lineno=lineno, feat_dim=dim)
    except TsvFormatError as err:
        return err.reason
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
        _cast_into(narrow, feats)
        feats = narrow
    per_box = {"features": feats}
    for name, field_name in _TSV_FIELD.items():
        per_box[name] = rec[field_name][:k]
    return rec["img_id"], rec["img_h"], rec["img_w"], n, per_box, clipped


def _auto_workers(workers: int, total_bytes: int) -> int:
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if workers:
        return workers
    return min(4, os.cpu_count() or 1) if total_bytes > 256 * 2**20 else 1


def _map_ordered(fn: Any, tasks: Iterable[Any], workers: int) -> Iterator[tuple[Any, Any]]:
    """Yield ``(task, fn(task))`` in input order, with at most ``4 * workers`` rows in flight.

    ``Pool.imap`` would read the whole input ahead of the workers (all of a 30 GB TSV in
    queues); a bounded window keeps memory constant. On Linux workers are forked, as
    ``DataLoader`` workers are: spawning would re-import the caller's ``__main__`` (a script
    without a ``__name__`` guard would recurse, ``python -`` fails) and pay torch's import
    in every worker. The workers only run numpy, binascii and single-threaded torch copies.
    """
    if workers <= 1:
        for task in tasks:
            yield task, fn(task)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    window: collections.deque = collections.deque()
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method))
    try:
        for task in tasks:
            window.append((task, pool.submit(fn, task)))
            if len(window) >= 4 * workers:
                head, fut = window.popleft()
                yield head, fut.result()
        while window:
            head, fut = window.popleft()
            yield head, fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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
) -> StoreInfo:
    """Import one or many bottom-up-attention TSV files into a feature store at ``out_dir``.

    Args:
        tsv_paths: a TSV path or several; rows keep their file order, ids must be unique
            across all files.
        out_dir: the store directory to create (``FileExistsError`` if it exists, unless
            ``overwrite``).
        dtype: ``"float16"`` (half the size; error bound in the module docstring) or
            ``"float32"`` (bit exact, so :func:`export_tsv` reproduces the input rows).
        skip_bad: skip malformed rows instead of failing; they are listed in
            ``StoreInfo.skipped`` as ``(file, line, reason)``.
        max_boxes: fixed box capacity per image; rows with more boxes keep their first
            ``max_boxes`` (counted in ``StoreInfo.truncated_rows``). Default: the largest
            ``num_boxes`` present.
        progress: show tqdm progress bars.
        clip_fp16: saturate feature values beyond +-65504 when ``dtype="float16"`` instead
            of failing.
        overwrite: replace an existing ``out_dir`` (only once the new store is complete).
        workers: processes decoding base64 in the second pass (the bottleneck, ~1.5 ms per
            36 x 2048 row). 0 = automatic: up to 4 (bounded by the CPU count) for inputs
            over 256 MiB, else 1 (in-process; worker start-up would dominate).

    Raises:
        TsvFormatError: on the first bad row (file and line in the message) unless
            ``skip_bad``; nothing is left at ``out_dir`` or in temporary directories.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    if max_boxes is not None and max_boxes < 1:
        raise ValueError(f"max_boxes must be >= 1, got {max_boxes}")
    paths = [Path(tsv_paths)] if isinstance(tsv_paths, (str, os.PathLike)) else [Path(p) for p in tsv_paths]
    if not paths:
        raise ValueError("build_store needs at least one TSV file")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"TSV file not found: {p}")
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists (pass overwrite=True / --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)

    scan = _scan(paths, skip_bad, progress)
    if scan.rows == 0:
        raise ValueError(f"no valid rows in {', '.join(map(str, paths))}")
    if scan.feat_dim is None:
        raise ValueError("every row has num_boxes=0: cannot infer the feature dimension")
    dim = scan.feat_dim
    cap = max_boxes if max_boxes is not None else max(scan.max_boxes, 1)

    tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=out.parent))
    try:
        specs = _array_specs(dtype, cap, dim)
        writers = {name: _ArrayWriter(tmp / f"{name}.bin", dt, shape) for name, (dt, shape) in specs.items()}
        rows = {name: np.zeros(shape, dtype=dt) for name, (dt, shape) in specs.items() if name in _PER_BOX}
        ids: list[str] = []
        skipped = list(scan.skipped)
        truncated = clipped = 0
        tasks = (
            (str(path), lineno, line, dim, dtype, clip_fp16, cap)
            for fi, path in enumerate(paths)
            for lineno, line in iter_lines(path)
            if (fi, lineno) not in scan.bad
        )
        n_workers = _auto_workers(workers, sum(s["size"] for s in scan.sources))
        try:
            # closing(): on an error the worker pool shuts down now, not when the traceback
            # that references this frame is finally dropped.
            decoded = contextlib.closing(_map_ordered(_decode_for_store, tasks, n_workers))
            with decoded as results, tqdm(total=scan.rows, unit="img", desc="import", disable=not progress) as bar:
                for (path_s, lineno, *_), result in results:
                    bar.update(1)
                    if isinstance(result, str):  # the reason a row is bad
                        if not skip_bad:
                            raise TsvFormatError(path_s, lineno, result)
                        skipped.append((path_s, lineno, result))
                        continue
                    img_id, img_h, img_w, n, per_box, n_clipped = result
                    k = min(n, cap)
                    truncated += n > cap
                    clipped += n_clipped
                    for name in _PER_BOX:
                        buf = rows[name]
                        buf[:k] = per_box[name]
                        buf[k:] = 0
                        writers[name].write(buf)
                    writers["num_boxes"].write(np.asarray(k))
                    writers["img_h"].write(np.asarray(img_h))
                    writers["img_w"].write(np.asarray(img_w))
                    ids.append(img_id)
            for path, src in zip(paths, scan.sources):
                now = path.stat()
                if (now.st_size, now.st_mtime_ns) != (src["size"], src["mtime_ns"]):
                    raise RuntimeError(f"{path} changed while it was being imported; run the import again")
        finally:
            arrays = {name: w.close() for name, w in writers.items()}
        if not ids:
            raise ValueError(f"no valid rows in {', '.join(map(str, paths))}")

        index_text = json.dumps(ids, ensure_ascii=False)
        atomic_write_text(tmp / INDEX, index_text)
        nbytes = sum(a["bytes"] for a in arrays.values()) + (tmp / INDEX).stat().st_size
        newline = scan.newlines.pop() if len(scan.newlines) == 1 else "\n"
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
                "bytes": (tmp / INDEX).stat().st_size,
                "crc32": f"{zlib.crc32(index_text.encode('utf-8')):08x}",
            },
            "sources": scan.sources,
            "skipped": [list(s) for s in skipped],
            "truncated_rows": truncated,
            "clip_fp16": clip_fp16,
            "clipped_values": clipped,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        # The manifest is written last: its presence is what makes the directory a store.
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700
        _move_into_place(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return StoreInfo(
        path=out, num_images=len(ids), max_boxes=cap, feat_dim=dim, dtype=dtype,
        sources=[str(p) for p in paths], skipped=skipped, truncated_rows=truncated,
        clipped_values=clipped, nbytes=nbytes, seconds=time.perf_counter() - t0,
    )


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    trash = None
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out} appeared during the import; not replacing it")
        trash = Path(tempfile.mkdtemp(prefix=f"{out.name}.old-", dir=out.parent))
        os.rename(out, trash / out.name)
    os.rename(tmp, out)
    with contextlib.suppress(OSError):
        fd = os.open(out.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


# --------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------


def _read_manifest(path: Path) -> dict[str, Any]:
    """Load and validate a store's manifest; cheap (stat calls only, no data read)."""
    if not path.exists():
        raise FileNotFoundError(f"feature store not found: {path}")
    if not path.is_dir():
        hint = " (looks like a TSV: import it with `lxmert features import`)" if path.suffix == ".tsv" else ""
        raise ValueError(f"{path} is not a feature store directory{hint}")
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise ValueError(
            f"{path} has no {MANIFEST}: it is not a complete feature store (an interrupted "
            "import leaves such a directory; delete it and run `lxmert features import` again)"
        )
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{mpath}: unreadable manifest ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ValueError(f"{mpath}: not a {FORMAT_NAME} manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{mpath}: store format version {manifest.get('version')!r}, this lxmert reads "
            f"version {FORMAT_VERSION}; re-import the TSV files"
        )
    missing = [k for k in ("num_images", "max_boxes", "feat_dim", "dtype", "arrays", "index") if k not in manifest]
    if missing:
        raise ValueError(f"{mpath}: incomplete manifest, missing {missing}")
    n, m, d = manifest["num_images"], manifest["max_boxes"], manifest["feat_dim"]
    specs = _array_specs(manifest["dtype"], m, d)
    for name, (dt, shape) in specs.items():
        meta = manifest["arrays"].get(name)
        if meta is None:
            raise ValueError(f"{mpath}: no entry for array {name!r}")
        if meta["dtype"] != dt or list(meta["shape"]) != [n, *shape]:
            raise ValueError(
                f"{mpath}: array {name!r} is {meta['dtype']} {meta['shape']}, expected {dt} {[n, *shape]}"
            )
        f = path / meta["file"]
        want = n * int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize
        size = f.stat().st_size if f.is_file() else None
        if size != want or meta["bytes"] != want:
            raise ValueError(
                f"{f}: {'missing' if size is None else f'{size} bytes'}, expected {want} "
                "(truncated or altered store; re-import it)"
            )
    ipath = path / manifest["index"]["file"]
    if not ipath.is_file() or ipath.stat().st_size != manifest["index"]["bytes"]:
        raise ValueError(f"{ipath}: missing or of the wrong size (damaged store; re-import it)")
    return manifest


def _cast_into(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst[...] = src`` for a contiguous ``dst``; float16 <-> float32 goes through torch.

    numpy converts float16 with a scalar loop (~110 us for a 36 x 2048 row here); torch
    uses F16C vector instructions (~25 us), with the same round-to-nearest-even. Chunks stay below torch's parallel grain size
    (32768 elements) so the copy never wakes its thread pool: with busy cores (DataLoader
    workers, other jobs) an OpenMP barrier costs a scheduler quantum, milliseconds.
    """
    torch = _torch() if np.float16 in (src.dtype, dst.dtype) and src.dtype != dst.dtype else None
    if torch is None:
        np.copyto(dst, src)
        return
    with warnings.catch_warnings():
        # src is a read-only map; torch warns about that but only reads it here
        warnings.simplefilter("ignore", UserWarning)
        d = torch.from_numpy(dst.reshape(-1))
        s = torch.from_numpy(np.ascontiguousarray(src).reshape(-1))
    for start in range(0, d.numel(), _CHUNK):
        d[start:start + _CHUNK].copy_(s[start:start + _CHUNK])


_CHUNK = 16384
_TORCH: Any = False


def _torch() -> Any:
    """torch if importable (a dependency of the package, but the store does not need it)."""
    global _TORCH
    if _TORCH is False:
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is a dependency
            torch = None
        _TORCH = torch
    return _TORCH


class FeatureStore:
    """Read-only, memory-mapped access to a feature store directory.

    Opening reads only the manifest (and stats the files); the id index and the memory
    maps are created on first use. Pickling carries just the path and options, never
    data, so a store handed to ``DataLoader`` workers is re-opened lazily in each worker
    and all of them share the OS page cache.

    ``max_boxes`` sets the number of box slots returned by :meth:`get` (LXMERT uses 36):
    stored rows with more boxes are truncated to their first ``max_boxes``, fewer are
    zero-padded; ``mask`` marks the real boxes.
    """

    def __init__(self, path: PathLike, *, max_boxes: int | None = None):
        self.path = Path(path)
        if max_boxes is not None and max_boxes < 1:
            raise ValueError(f"max_boxes must be >= 1, got {max_boxes}")
        self.manifest = _read_manifest(self.path)
        self.max_boxes = int(max_boxes) if max_boxes is not None else int(self.manifest["max_boxes"])
        self._arrays: dict[str, np.ndarray] | None = None
        self._ids: list[str] | None = None
        self._index: dict[str, int] | None = None

    @classmethod
    def open(cls, path: PathLike, *, max_boxes: int | None = None) -> "FeatureStore":
        """Open the store at ``path`` (raises ``ValueError`` for an incomplete store)."""
        return cls(path, max_boxes=max_boxes)

    # pickling: path and options only -------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "max_boxes": self.max_boxes, "manifest": self.manifest}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self.max_boxes = state["max_boxes"]
        # Re-validate (a few stats and one small read): a store replaced on disk since it
        # was pickled must not be read through the old shapes.
        self.manifest = _read_manifest(self.path)
        if self.manifest != state["manifest"]:
            raise ValueError(f"feature store {self.path} changed on disk since this handle was pickled")
        self._arrays = None
        self._ids = None
        self._index = None

    # metadata --------------------------------------------------------------------------
    @property
    def dtype(self) -> str:
        """Storage dtype of the features (``"float16"`` or ``"float32"``)."""
        return self.manifest["dtype"]

    @property
    def feat_dim(self) -> int:
        return int(self.manifest["feat_dim"])

    @property
    def stored_max_boxes(self) -> int:
        """Box capacity of the stored rows (``max_boxes`` at import)."""
        return int(self.manifest["max_boxes"])

    def __len__(self) -> int:
        return int(self.manifest["num_images"])

    def __repr__(self) -> str:
        return (f"FeatureStore({str(self.path)!r}, images={len(self)}, dtype={self.dtype}, "
                f"feat_dim={self.feat_dim}, max_boxes={self.max_boxes})")

    @property
    def ids(self) -> list[str]:
        """Image ids in row order."""
        self._load_index()
        assert self._ids is not None
        return self._ids

    def __contains__(self, img_id: object) -> bool:
        self._load_index()
        assert self._index is not None
        return img_id in self._index

    def __iter__(self):
        return iter(self.ids)

    def row_of(self, img_id: str) -> int:
        """Row number of ``img_id``; ``KeyError`` naming the id and the store otherwise."""
        self._load_index()
        assert self._index is not None
        try:
            return self._index[img_id]
        except KeyError:
            raise KeyError(f"image id {img_id!r} not in feature store {self.path}") from None

    # lazy loading ----------------------------------------------------------------------
    def _load_index(self) -> None:
        if self._index is None:
            ipath = self.path / self.manifest["index"]["file"]
            ids = json.loads(ipath.read_text(encoding="utf-8"))
            if len(ids) != len(self):
                raise ValueError(f"{ipath}: {len(ids)} ids for {len(self)} rows (damaged store)")
            self._ids = ids
            self._index = {img_id: i for i, img_id in enumerate(ids)}

    def _load_arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            arrays = {}
            for name, meta in self.manifest["arrays"].items():
                mm = np.memmap(self.path / meta["file"], dtype=np.dtype(meta["dtype"]), mode="r",
                               shape=tuple(meta["shape"]))
                # A plain ndarray view over the map (it keeps the map alive): indexing a
                # np.memmap subclass costs several microseconds per operation.
                arrays[name] = mm.view(np.ndarray)
            self._arrays = arrays
        return self._arrays

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """The raw read-only memory maps (rows padded to :attr:`stored_max_boxes`)."""
        return self._load_arrays()

    def close(self) -> None:
        """Drop the memory maps (they are re-created on next use)."""
        self._arrays = None

    # access ----------------------------------------------------------------------------
    def get(self, img_id: str) -> dict[str, Any]:
        """Features and boxes of one image, padded/truncated to :attr:`max_boxes` slots.

        Returns a dict: ``features`` float32 [m, D], ``boxes`` float32 [m, 4] (pixels),
        ``boxes_norm`` float32 [m, 4] (x / img_w, y / img_h), ``obj_ids`` int64 [m],
        ``obj_conf`` float32 [m], ``attr_ids`` int64 [m], ``attr_conf`` float32 [m],
        ``mask`` bool [m], ``num_boxes``, ``img_h``, ``img_w`` (ints) and ``img_id``.
        Padded slots hold zeros.
        """
        return self.get_row(self.row_of(img_id))

    def get_row(self, row: int) -> dict[str, Any]:
        """Like :meth:`get`, by row number (``0 <= row < len(self)``)."""
        if not 0 <= row < len(self):
            raise IndexError(f"row {row} out of range for feature store {self.path} ({len(self)} rows)")
        batch = self._gather(np.asarray([row]))
        one: dict[str, Any] = {k: v[0] for k, v in batch.items()}
        for key in ("num_boxes", "img_h", "img_w"):
            one[key] = int(one[key])
        return one

    def get_many(self, img_ids: Sequence[str]) -> dict[str, Any]:
        """A batch: the arrays of :meth:`get` stacked on a leading axis, plus ``img_id``.

        Rows are read in ascending file order (sequential I/O on a cold cache) and put
        back in the requested order. ``num_boxes``, ``img_h``, ``img_w`` are int arrays.
        """
        rows = np.fromiter((self.row_of(i) for i in img_ids), dtype=np.int64, count=len(img_ids))
        return self._gather(rows)

    def _gather(self, rows: np.ndarray) -> dict[str, Any]:
        arrays = self._load_arrays()
        m, cap, d = self.max_boxes, self.stored_max_boxes, self.feat_dim
        k = min(m, cap)
        b = len(rows)
        alloc = np.empty if k == m else np.zeros  # padding slots beyond the stored capacity
        features = alloc((b, m, d), dtype=np.float32)
        src = arrays["features"]
        # Features dominate the bytes: copy row by row straight into the output (one pass,
        # with the float16 -> float32 widening fused), visiting rows in file order.
        for j in np.argsort(rows, kind="stable"):
            _cast_into(features[j, :k], src[rows[j], :k])
        out: dict[str, Any] = {"features": features}
        for name, dtype in (("boxes", np.float32), ("obj_ids", np.int64), ("obj_conf", np.float32),
                            ("attr_ids", np.int64), ("attr_conf", np.float32)):
            got = arrays[name][rows, :k]  # small: fancy indexing copies [b, k, ...]
            if k < m:
                full = np.zeros((b, m, *got.shape[2:]), dtype=dtype)
                full[:, :k] = got
                got = full
            out[name] = got
        num_boxes = np.minimum(arrays["num_boxes"][rows].astype(np.int64), m)
        img_h = arrays["img_h"][rows].astype(np.int64)
        img_w = arrays["img_w"][rows].astype(np.int64)
        scale = np.empty((b, 1, 4), dtype=np.float32)
        scale[:, 0, 0::2] = img_w[:, None]
        scale[:, 0, 1::2] = img_h[:, None]
        out["boxes_norm"] = out["boxes"] / scale
        out["mask"] = np.arange(m)[None, :] < num_boxes[:, None]
        out["num_boxes"] = num_boxes
        out["img_h"] = img_h
        out["img_w"] = img_w
        ids = self.ids
        out["img_id"] = [ids[r] for r in rows]
        return out

    def stored_record(self, row: int) -> dict[str, Any]:
        """The TSV record of a stored row (its real boxes only, features as float32)."""
        a = self._load_arrays()
        n = int(a["num_boxes"][row])
        return {
            "img_id": self.ids[row],
            "img_h": int(a["img_h"][row]),
            "img_w": int(a["img_w"][row]),
            "num_boxes": n,
            "objects_id": np.asarray(a["obj_ids"][row, :n]),
            "objects_conf": np.asarray(a["obj_conf"][row, :n]),
            "attrs_id": np.asarray(a["attr_ids"][row, :n]),
            "attrs_conf": np.asarray(a["attr_conf"][row, :n]),
            "boxes": np.asarray(a["boxes"][row, :n]),
            "features": np.asarray(a["features"][row, :n], dtype=np.float32),
        }


# --------------------------------------------------------------------------------------
# export and check
# --------------------------------------------------------------------------------------


def export_tsv(
    store: FeatureStore | PathLike,
    out_path: PathLike,
    ids: Sequence[str] | None = None,
    *,
    newline: str | None = None,
    progress: bool = False,
) -> int:
    """Write stored rows back to a TSV (atomically); returns the number of rows.

    A float32 store reproduces its input rows byte for byte (same values, same canonical
    base64). A float16 store exports the float16 values widened to float32. ``newline``
    defaults to the line terminator of the imported files. Rows truncated at import by
    ``max_boxes`` are exported truncated.
    """
    from tqdm.auto import tqdm

    st = store if isinstance(store, FeatureStore) else FeatureStore.open(store)
    rows: Iterable[int] = range(len(st)) if ids is None else [st.row_of(i) for i in ids]
    nl = newline or st.manifest.get("newline", "\n")
    total = len(st) if ids is None else len(ids)
    records = (st.stored_record(r) for r in tqdm(rows, total=total, unit="img", desc="export",
                                                  disable=not progress))
    return write_tsv(out_path, records, newline=nl)


def check_store(path: PathLike, *, progress: bool = True, chunk_rows: int = 256) -> list[str]:
    """Verify a store thoroughly; returns a list of problems (empty when it is sound).

    Checks the manifest and file sizes (as :meth:`FeatureStore.open` does), the CRC-32 of
    every file, that features, boxes and confidences are finite, that padding slots are
    zero, that ``num_boxes``, ``img_h`` and ``img_w`` are in range and that ids are
    unique. Reads the store once, ``chunk_rows`` rows at a time (bounded memory).
    """
    from tqdm.auto import tqdm

    path = Path(path)
    try:
        st = FeatureStore.open(path)
    except (ValueError, FileNotFoundError) as err:
        return [str(err)]
    problems: list[str] = []
    man = st.manifest
    ipath = path / man["index"]["file"]
    raw_index = ipath.read_bytes()
    if f"{zlib.crc32(raw_index):08x}" != man["index"].get("crc32"):
        problems.append(f"{ipath}: CRC-32 mismatch (file altered after import)")
    try:
        ids = json.loads(raw_index)
    except ValueError as err:
        return problems + [f"{ipath}: unreadable ({err})"]
    if len(ids) != len(st):
        problems.append(f"{ipath}: {len(ids)} ids for {len(st)} rows")
    if len(set(ids)) != len(ids):
        problems.append(f"{ipath}: duplicate image ids")

    arrays = st.arrays
    n, cap = len(st), st.stored_max_boxes
    nb = np.asarray(arrays["num_boxes"])
    if (nb < 0).any() or (nb > cap).any():
        problems.append(f"num_boxes out of [0, {cap}] in {int(((nb < 0) | (nb > cap)).sum())} row(s)")
    for name in ("img_h", "img_w"):
        bad = int((np.asarray(arrays[name]) < 1).sum())
        if bad:
            problems.append(f"{name} < 1 in {bad} row(s)")
    crcs = {name: 0 for name in arrays}
    nonfinite = {name: 0 for name in _PER_BOX}
    nonzero_pad = {name: 0 for name in _PER_BOX}
    slots = np.arange(cap)
    with tqdm(total=n, unit="img", desc="check", disable=not progress) as bar:
        for start in range(0, n, chunk_rows):
            stop = min(start + chunk_rows, n)
            pad = slots[None, :] >= np.clip(nb[start:stop], 0, cap)[:, None]
            for name, arr in arrays.items():
                chunk = np.asarray(arr[start:stop])
                crcs[name] = zlib.crc32(memoryview(np.ascontiguousarray(chunk)).cast("B"), crcs[name])
                if name not in _PER_BOX:
                    continue
                if chunk.dtype.kind == "f":
                    nonfinite[name] += int((~np.isfinite(chunk)).sum())
                padded = chunk[pad]
                nonzero_pad[name] += int(np.count_nonzero(padded))
            bar.update(stop - start)
    for name, meta in man["arrays"].items():
        if f"{crcs[name]:08x}" != meta.get("crc32"):
            problems.append(f"{path / meta['file']}: CRC-32 mismatch (file altered after import)")
    for name in _PER_BOX:
        if nonfinite[name]:
            problems.append(f"{name}: {nonfinite[name]} non-finite value(s)")
        if nonzero_pad[name]:
            problems.append(f"{name}: {nonzero_pad[name]} non-zero value(s) in padding slots")
    return problems
