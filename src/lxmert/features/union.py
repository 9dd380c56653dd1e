"""Image look-up across one or several feature stores (e.g. COCO and VG stores).

The datasets (:mod:`lxmert.data`) read images through :class:`ImageFeatures`; it is
exported there too as ``lxmert.data.ImageFeatures``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from lxmert.features.store import FeatureStore

__all__ = ["StoreLike", "ImageFeatures"]

StoreLike = Union[FeatureStore, str, os.PathLike, Sequence[Union[FeatureStore, str, os.PathLike]], "ImageFeatures"]


class ImageFeatures:
    """A read-only union of feature stores, looked up by image id.

    Accepts open `FeatureStore`s or store directories. Pickles as its stores do (paths
    only), so DataLoader workers re-open the memory maps lazily.
    """

    def __init__(self, stores: StoreLike, max_boxes: int | None = 36) -> None:
        if isinstance(stores, ImageFeatures):
            self.stores: list[FeatureStore] = list(stores.stores)
            return
        items = [stores] if isinstance(stores, (FeatureStore, str, os.PathLike)) else list(stores)
        if not items:
            raise ValueError("no feature store given")
        self.stores = [s if isinstance(s, FeatureStore) else FeatureStore.open(Path(s), max_boxes=max_boxes)
                       for s in items]
        dims = {s.feat_dim for s in self.stores}
        if len(dims) > 1:
            dims_by_store = [(str(s.path), s.feat_dim) for s in self.stores]
            raise ValueError(f"feature stores disagree on feature dimension: {dims_by_store}")

    @property
    def feat_dim(self) -> int:
        return self.stores[0].feat_dim

    def describe(self) -> str:
        return ", ".join(str(s.path) for s in self.stores)

    def check_label_ids(self, num_object_labels: int, num_attr_labels: int) -> None:
        """:meth:`FeatureStore.check_label_ids` for every store (``ValueError`` naming the first
        store whose detector ids the model's label counts cannot take)."""
        for store in self.stores:
            store.check_label_ids(num_object_labels, num_attr_labels)

    def locate(self, img_id: str) -> tuple[int, int] | None:
        """(store index, row) of `img_id`, or None when no store has it."""
        for k, store in enumerate(self.stores):
            if img_id in store:
                return k, store.row_of(img_id)
        return None

    def __contains__(self, img_id: object) -> bool:
        return any(img_id in s for s in self.stores)

    def get(self, img_id: str) -> dict[str, Any]:
        """The store's record of `img_id` (see `FeatureStore.get`); KeyError naming the stores."""
        for store in self.stores:
            if img_id in store:
                return store.get(img_id)
        raise KeyError(f"image id {img_id!r} not in feature store(s) {self.describe()}")

    def get_at(self, location: tuple[int, int]) -> dict[str, Any]:
        store, row = location
        return self.stores[store].get_row(row)

    def object_feature(self, location: tuple[int, int], obj: int) -> np.ndarray:
        """Feature [D] float32 of object `obj` (modulo the image's real boxes) at `location`."""
        store = self.stores[location[0]]
        arrays = store.arrays
        n = max(1, min(int(arrays["num_boxes"][location[1]]), store.max_boxes))
        return np.asarray(arrays["features"][location[1], obj % n], dtype=np.float32)
