"""Reading a feature store: :class:`FeatureStore`, read-only memory maps over its arrays.

Why: every process (each DataLoader worker) maps the same files read-only, so opening is
instant, memory is shared page cache, and a random image costs one contiguous read. The
layout is :mod:`lxmert.features.format`; building is :mod:`lxmert.features.build`.

What :meth:`FeatureStore.open` checks (cheap: one small read and a few ``stat`` calls,
O(1) in the number of images): the manifest's format, version and every key's type and
value (a damaged manifest names the store and the key), that each array file and the id
index exist with exactly the sizes their shapes imply. On first use of the ids it checks
``ids.json``'s CRC-32 and that it is a list of ``N`` unique non-empty strings. It does
*not* verify the CRC-32 of the array files, which means reading the whole store (minutes
for COCO): that is :func:`lxmert.features.check.verify_checksums` or ``lxmert features
check``. A store whose ``<out>`` is missing because an import was killed while replacing
it is restored first (:func:`lxmert.features.swap.recover`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lxmert.features.cast import cast_into
from lxmert.features.format import MAX_ROW_BYTES, StoreFormatError, parse_index, read_manifest, row_nbytes
from lxmert.features.swap import find_leftovers, recover

__all__ = ["FeatureStore"]

PathLike = str | os.PathLike[str]


class FeatureStore:
    """Read-only, memory-mapped access to a feature store directory.

    Opening reads only the manifest (and stats the files); the id index and the memory
    maps are created on first use. Pickling carries just the path and options, never
    data, so a store handed to ``DataLoader`` workers is re-opened lazily in each worker
    and all of them share the OS page cache.

    ``max_boxes`` sets the number of box slots returned by :meth:`get` (LXMERT uses 36):
    stored rows with more boxes are truncated to their first ``max_boxes``, fewer are
    zero-padded; ``mask`` marks the real boxes.

    What opening checks, and what it does not, is in the module docstring.
    """

    def __init__(self, path: PathLike, *, max_boxes: int | None = None):
        self.path = Path(path)
        if max_boxes is not None and max_boxes < 1:
            raise ValueError(f"max_boxes must be >= 1, got {max_boxes}")
        self.recovery_notes: list[str] = []
        if not self.path.exists():
            self.recovery_notes = _restore_or_explain(self.path)
        self.manifest = read_manifest(self.path)
        self.max_boxes = int(max_boxes) if max_boxes is not None else int(self.manifest["max_boxes"])
        padded = row_nbytes("float32", self.max_boxes, int(self.manifest["feat_dim"]))
        if padded > MAX_ROW_BYTES:  # each image would be padded to that many slots
            raise ValueError(f"{self.path}: max_boxes={self.max_boxes} pads each image to {padded / 2**30:.1f} GiB "
                             f"(the store holds at most {self.manifest['max_boxes']} boxes per image)")
        self._arrays: dict[str, np.ndarray] | None = None
        self._ids: list[str] | None = None
        self._index: dict[str, int] | None = None

    @classmethod
    def open(cls, path: PathLike, *, max_boxes: int | None = None) -> "FeatureStore":
        """Open the store at ``path``.

        Raises ``FileNotFoundError`` for a missing path and
        :class:`~lxmert.features.format.StoreFormatError` (a ``ValueError``) for a damaged
        or incomplete store, naming the file and, for the manifest, the key.
        """
        return cls(path, max_boxes=max_boxes)

    # pickling: path and options only -------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "max_boxes": self.max_boxes, "manifest": self.manifest}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self.max_boxes = state["max_boxes"]
        # Re-validate (a few stats and one small read): a store replaced on disk since it
        # was pickled must not be read through the old shapes.
        self.recovery_notes = []
        self.manifest = read_manifest(self.path)
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

    @property
    def loaded(self) -> bool:
        """Whether the id index or the memory maps are in memory (opening and unpickling
        load neither: they are created on first use, in the process that uses them)."""
        return self._arrays is not None or self._index is not None

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
            ids, problems = parse_index(ipath.read_bytes(), self.manifest, ipath)
            if problems or ids is None:
                raise StoreFormatError(ipath, f"{problems[0].removeprefix(f'{ipath}: ')} (damaged store; "
                                       "re-import it)")
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
            cast_into(features[j, :k], src[rows[j], :k])
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


    # detector label ids ----------------------------------------------------------------
    def label_id_range(self) -> dict[str, int]:
        """Smallest and largest stored object / attribute ids (real boxes and padding zeros).

        From the manifest (recorded at import) when present; older stores are scanned
        once (``obj_ids`` and ``attr_ids`` only: 16 bytes per box slot, a small fraction
        of the features).
        """
        labels = self.manifest.get("labels")
        if labels is not None:
            return {k: int(labels[k]) for k in ("obj_id_min", "obj_id_max", "attr_id_min", "attr_id_max")}
        a = self.arrays
        out = {}
        for prefix, name in (("obj", "obj_ids"), ("attr", "attr_ids")):
            ids = a[name]
            out[f"{prefix}_id_min"] = int(ids.min()) if ids.size else 0
            out[f"{prefix}_id_max"] = int(ids.max()) if ids.size else -1
        return out

    def check_label_ids(self, num_object_labels: int, num_attr_labels: int) -> None:
        """Refuse a store whose detector ids a model with these label counts cannot take.

        Pre-training uses the stored object and attribute ids as classification targets;
        an id ``>= num_object_labels`` would fail deep inside the loss (an ``IndexError``
        or a device-side assert naming no file). Call this before training: it costs
        nothing for stores imported with label counts recorded. Raises ``ValueError``
        naming the store, the largest id and the model's count.
        """
        r = self.label_id_range()
        for what, lo, hi, count, flag in (
            ("object", r["obj_id_min"], r["obj_id_max"], num_object_labels, "num_object_labels"),
            ("attribute", r["attr_id_min"], r["attr_id_max"], num_attr_labels, "num_attr_labels"),
        ):
            if lo < 0 or hi >= count:
                raise ValueError(
                    f"feature store {self.path}: {what} ids span {lo}..{hi}, but the model has "
                    f"{flag}={count} (ids must lie in [0, {count})); use a store from a detector with "
                    f"{count} {what} classes or set the model's {flag}"
                )


def _restore_or_explain(path: Path) -> list[str]:
    """A missing store may sit aside from an import killed while replacing it: put it back,
    or say why not (the ``FileNotFoundError`` then names the leftovers)."""
    notes = recover(path, tidy=False)
    if not path.exists():
        left = [x.path.name for x in find_leftovers(path)]
        hint = f" ({', '.join(left)} beside it: an import into it is running or was interrupted)" if left else ""
        raise FileNotFoundError(f"feature store not found: {path}{hint}")
    return notes
