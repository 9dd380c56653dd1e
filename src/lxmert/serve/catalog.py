"""The images of the feature store that the web page offers, and their pictures.

A store holds features, not pixels; the page needs something to draw the boxes on:

- a generated world's store (WORLD/features/store, WORLD/synth.json beside it): its
  test images, pictured by WORLD/images/<img_id>.png (`SynthConfig(pictures="test")`)
  or, where that file is missing, rendered on demand (`render_world_image`: the same
  scene, so the stored boxes fit it);
- any other store with `pictures=DIR`: the store's images that have DIR/<img_id>.jpg
  (.jpeg, .png, .webp), e.g. COCO's val2014 folder beside its feature store;
- otherwise the store's first images without pictures (the page draws the boxes on a
  blank canvas of the image's size).
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

from lxmert.data.synth import parse_image_id, render_world_image
from lxmert.features.store import FeatureStore

__all__ = ["ImageCatalog", "PICTURE_SUFFIXES"]

PICTURE_SUFFIXES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}


class ImageCatalog:
    """Which store images the page lists (at most `limit`) and their pictures."""

    def __init__(self, store: FeatureStore | None, pictures: str | Path | None = None, limit: int = 500) -> None:
        self.store = store
        self.pictures_dir = Path(pictures) if pictures is not None else None
        if self.pictures_dir is not None and not self.pictures_dir.is_dir():
            raise FileNotFoundError(f"{self.pictures_dir}: no such pictures directory")
        self.limit = limit
        self.world: Path | None = None
        if store is not None and len(store.path.parents) > 1:
            candidate = store.path.parents[1]
            if (candidate / "synth.json").is_file():
                self.world = candidate
        # rendering a scene takes milliseconds; the page asks for the same few pictures again and again
        self._render = functools.lru_cache(maxsize=64)(self._render_png)
        self._ids: list[str] | None = None

    @property
    def kind(self) -> str:
        """"world", "pictures" or "features" (no pictures)."""
        return "world" if self.world is not None else "pictures" if self.pictures_dir is not None else "features"

    def ids(self) -> list[str]:
        """The image ids offered, in store order."""
        if self._ids is None:
            self._ids = self._list()
        return self._ids

    def _list(self) -> list[str]:
        if self.store is None:
            return []
        ids = self.store.ids
        if self.world is not None:
            test = []
            for img_id in ids:
                try:
                    if parse_image_id(img_id)[0] == "test":
                        test.append(img_id)
                except ValueError:
                    continue
            return (test or list(ids))[: self.limit]
        if self.pictures_dir is not None:
            return [i for i in ids if self._picture_file(i) is not None][: self.limit]
        return list(ids[: self.limit])

    def entries(self) -> list[dict[str, Any]]:
        """`[{"id", "width", "height", "picture": bool}]` for the page's image list."""
        if self.store is None:
            return []
        arrays = self.store.arrays
        out = []
        for img_id in self.ids():
            row = self.store.row_of(img_id)
            out.append({"id": img_id, "width": int(arrays["img_w"][row]), "height": int(arrays["img_h"][row]),
                        "picture": self.kind != "features"})
        return out

    def picture(self, img_id: str) -> tuple[bytes, str] | None:
        """(bytes, media type) of the picture of `img_id`, or None when it has none."""
        if self.store is None or not _safe_id(img_id) or img_id not in self.store:
            return None
        if self.world is not None:
            path = self.world / "images" / f"{img_id}.png"
            if path.is_file():
                return path.read_bytes(), "image/png"
            try:
                return self._render(img_id), "image/png"
            except ValueError:  # an id of the store that the world does not know
                return None
        if self.pictures_dir is not None:
            path = self._picture_file(img_id)
            if path is not None:
                return path.read_bytes(), PICTURE_SUFFIXES[path.suffix.lower()]
        return None

    def _picture_file(self, img_id: str) -> Path | None:
        assert self.pictures_dir is not None
        if not _safe_id(img_id):
            return None
        for suffix in PICTURE_SUFFIXES:
            path = self.pictures_dir / f"{img_id}{suffix}"
            if path.is_file():
                return path
        return None

    def _render_png(self, img_id: str) -> bytes:
        assert self.world is not None
        buffer = io.BytesIO()
        render_world_image(self.world, img_id).save(buffer, format="PNG")
        return buffer.getvalue()


def _safe_id(img_id: str) -> bool:
    """An id that names a file inside the pictures folder (no separators, no '..')."""
    return bool(img_id) and "/" not in img_id and "\\" not in img_id and not img_id.startswith(".") \
        and "\x00" not in img_id
