"""Verifying a feature store: checksums (:func:`verify_checksums`) and values (:func:`check_store`).

Both read the whole store once, ``chunk_rows`` images at a time (bounded memory). Opening
a store (:meth:`FeatureStore.open`) checks only what is cheap - manifest and sizes - so
these are what ``lxmert features check`` runs, and what to run after copying a store or
before a long training run.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from lxmert.features.format import PER_BOX, StoreFormatError, parse_index
from lxmert.features.store import FeatureStore

__all__ = ["check_store", "verify_checksums"]

PathLike = str | os.PathLike[str]


class _Totals:
    """What one pass over the arrays accumulates."""

    def __init__(self, names: list[str]):
        self.crcs = {name: 0 for name in names}
        self.nonfinite = {name: 0 for name in PER_BOX}
        self.nonzero_pad = {name: 0 for name in PER_BOX}
        self.boxes_outside = 0  # images with a real box outside the image
        # over real boxes only; meaningful once any_box is set
        self.id_min = {"obj_ids": np.iinfo(np.int64).max, "attr_ids": np.iinfo(np.int64).max}
        self.id_max = {"obj_ids": -1, "attr_ids": -1}
        self.any_box = False


def _read_all(st: FeatureStore, values: bool, progress: bool, chunk_rows: int, desc: str) -> _Totals:
    from tqdm.auto import tqdm

    arrays = st.arrays
    n, cap = len(st), st.stored_max_boxes
    nb = np.clip(np.asarray(arrays["num_boxes"]), 0, cap)
    slots = np.arange(cap)
    t = _Totals(list(arrays))
    with tqdm(total=n, unit="img", desc=desc, disable=not progress) as bar:
        for start in range(0, n, chunk_rows):
            stop = min(start + chunk_rows, n)
            chunks = {name: np.asarray(arr[start:stop]) for name, arr in arrays.items()}
            for name, chunk in chunks.items():
                t.crcs[name] = zlib.crc32(memoryview(np.ascontiguousarray(chunk)).cast("B"), t.crcs[name])
            if values:
                _check_values(t, chunks, slots[None, :] >= nb[start:stop, None])
            bar.update(stop - start)
    return t


def _check_values(t: _Totals, chunks: dict[str, np.ndarray], pad: np.ndarray) -> None:
    real = ~pad
    for name in PER_BOX:
        chunk = chunks[name]
        if chunk.dtype.kind == "f":
            t.nonfinite[name] += int((~np.isfinite(chunk)).sum())
        t.nonzero_pad[name] += int(np.count_nonzero(chunk[pad]))
    w = chunks["img_w"].astype(np.float64)
    h = chunks["img_h"].astype(np.float64)
    lim = np.stack([w, h, w, h], axis=1)[:, None, :]
    outside = ((chunks["boxes"] < 0) | (chunks["boxes"] > lim)).any(axis=2) & real
    t.boxes_outside += int(outside.any(axis=1).sum())
    if real.any():
        t.any_box = True
        for name in ("obj_ids", "attr_ids"):
            ids = chunks[name][real]
            t.id_min[name] = min(t.id_min[name], int(ids.min()))
            t.id_max[name] = max(t.id_max[name], int(ids.max()))


def _crc_problems(st: FeatureStore, t: _Totals) -> list[str]:
    return [f"{st.path / meta['file']}: CRC-32 mismatch (file altered after import)"
            for name, meta in st.manifest["arrays"].items()
            if name in t.crcs and f"{t.crcs[name]:08x}" != meta["crc32"]]


def verify_checksums(store: FeatureStore | PathLike, *, progress: bool = False, chunk_rows: int = 256) -> list[str]:
    """Compare the CRC-32 of every file of a store with its manifest; returns the mismatches.

    Reads the whole store (this is the check :meth:`FeatureStore.open` skips because it
    costs a full read); an empty list means every byte is as the import wrote it.
    """
    st = store if isinstance(store, FeatureStore) else FeatureStore.open(store)
    ipath = st.path / st.manifest["index"]["file"]
    problems = []
    if f"{zlib.crc32(ipath.read_bytes()):08x}" != st.manifest["index"]["crc32"]:
        problems.append(f"{ipath}: CRC-32 mismatch (file altered after import)")
    return problems + _crc_problems(st, _read_all(st, False, progress, chunk_rows, "verify"))


def check_store(path: PathLike, *, progress: bool = True, chunk_rows: int = 256) -> list[str]:
    """Verify a store thoroughly; returns a list of problems (empty when it is sound).

    Checks the manifest and file sizes (as :meth:`FeatureStore.open` does), that
    ``ids.json`` is a list of ``N`` unique non-empty strings with its recorded CRC-32, the
    CRC-32 of every array file, that features, boxes and confidences are finite, that
    padding slots are zero, that ``num_boxes``, ``img_h`` and ``img_w`` are in range, that
    every real box lies inside its image, and that detector ids are ``>= 0``, below the
    label counts recorded at import and within the recorded ranges.
    """
    path = Path(path)
    try:
        st = FeatureStore.open(path)
    except (StoreFormatError, ValueError, OSError) as err:
        return [str(err)]
    problems: list[str] = []
    man = st.manifest
    ipath = path / man["index"]["file"]
    problems += parse_index(ipath.read_bytes(), man, ipath)[1]

    arrays = st.arrays
    cap = st.stored_max_boxes
    nb = np.asarray(arrays["num_boxes"])
    if (nb < 0).any() or (nb > cap).any():
        problems.append(f"num_boxes out of [0, {cap}] in {int(((nb < 0) | (nb > cap)).sum())} row(s)")
    for name in ("img_h", "img_w"):
        bad = int((np.asarray(arrays[name]) < 1).sum())
        if bad:
            problems.append(f"{name} < 1 in {bad} row(s)")
    t = _read_all(st, True, progress, chunk_rows, "check")
    problems += _crc_problems(st, t)
    for name in PER_BOX:
        if t.nonfinite[name]:
            problems.append(f"{name}: {t.nonfinite[name]} non-finite value(s)")
        if t.nonzero_pad[name]:
            problems.append(f"{name}: {t.nonzero_pad[name]} non-zero value(s) in padding slots")
    if t.boxes_outside:
        problems.append(f"boxes: {t.boxes_outside} image(s) with a box outside [0, img_w] x [0, img_h]")
    problems += _label_problems(man.get("labels"), t)
    return problems


def _label_problems(labels: dict[str, Any] | None, t: _Totals) -> list[str]:
    problems: list[str] = []
    if not t.any_box:
        return problems
    for prefix, name, count_key in (("obj", "obj_ids", "num_object_labels"), ("attr", "attr_ids", "num_attr_labels")):
        lo, hi = t.id_min[name], t.id_max[name]
        if lo < 0:
            problems.append(f"{name}: negative detector id ({lo})")
        if labels is None:
            continue
        count = labels.get(count_key)
        if count is not None and hi >= count:
            problems.append(f"{name}: id {hi} >= {count_key}={count} recorded at import")
        if (labels[f"{prefix}_id_min"], labels[f"{prefix}_id_max"]) != (lo, hi):
            problems.append(f"{name}: ids span {lo}..{hi}, the manifest records "
                            f"{labels[f'{prefix}_id_min']}..{labels[f'{prefix}_id_max']}")
    return problems
