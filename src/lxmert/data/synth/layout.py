"""Where a generated world's files live, how its image ids are named, and how an image
id leads back to its scene.

A world stores no scene descriptions: a scene is a pure function of the world's seed, its
split and its index (`scene_of`), and the image id names the split and the index. So
`world_scene(WORLD, img_id)` rebuilds the exact scene behind any image of any world from
its synth.json alone - also for worlds written before pictures existed - and the boxes a
renderer draws are those the feature store holds.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from lxmert.data.synth.config import SynthConfig
from lxmert.data.synth.scenes import Scene, generate_scene

__all__ = [
    "SPLITS", "SPLIT_FILES", "PICTURES_DIR", "RETRIEVAL_FILE", "image_id", "parse_image_id", "scene_of",
    "scene_for_id", "read_world_config", "world_scene",
]

#: The world's splits, in generation order (the order is part of the world).
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: our split -> (vqa file, gqa file, nlvr2 file, pre-training json or None), as the release names them
SPLIT_FILES: dict[str, tuple[str, str, str, str | None]] = {
    "train": ("train", "train", "train", "mscoco_train"),
    "val": ("minival", "valid", "valid", "mscoco_minival"),
    "test": ("test", "testdev", "test", None),
}
#: the folder of a world's pictures: PICTURES_DIR/<img_id>.png
PICTURES_DIR = "images"
#: the Karpathy-split caption file (`lxmert.data.karpathy` reads it)
RETRIEVAL_FILE = "retrieval/dataset_world.json"

_ID = re.compile(r"synth_(train|val|test)_(\d{6,})")


def image_id(split: str, index: int) -> str:
    """The id of image `index` of `split`: what the TSVs, the store and every json use."""
    return f"synth_{split}_{index:06d}"


def parse_image_id(img_id: str) -> tuple[str, int]:
    """(split, index) of an id made by `image_id`; ValueError for any other string."""
    match = _ID.fullmatch(img_id)
    if match is None:
        raise ValueError(f"{img_id!r} is not a generated world's image id (synth_<train|val|test>_NNNNNN)")
    return match.group(1), int(match.group(2))


def scene_of(config: SynthConfig, split: str, index: int) -> Scene:
    """The scene of image `index` of `split`: depends on the seed and the object counts only."""
    return generate_scene(image_id(split, index), random.Random(f"scene:{config.seed}:{split}:{index}"),
                          config.min_objects, config.max_objects)


def scene_for_id(config: SynthConfig, img_id: str) -> Scene:
    """The scene behind `img_id` in the world generated with `config`.

    ValueError when the id is not one of that world's images (malformed, or an index past
    its split's size).
    """
    split, index = parse_image_id(img_id)
    sizes = config.split_sizes()
    if index >= sizes[split]:
        raise ValueError(f"{img_id!r} is not an image of this world: its {split} split has "
                         f"{sizes[split]} images (indices 0..{sizes[split] - 1})")
    return scene_of(config, split, index)


def read_world_config(world: str | Path) -> SynthConfig:
    """The `SynthConfig` a world was generated with, from WORLD/synth.json."""
    path = Path(world) / "synth.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found; {world} is not a generated world (run `lxmert synth`)") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid json ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise ValueError(f"{path}: missing key 'config'")
    try:
        return SynthConfig.from_dict(data["config"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: config: {err}") from None


def world_scene(world: str | Path, img_id: str) -> Scene:
    """The scene behind `img_id` of the world at `world` (see the module docstring)."""
    config = read_world_config(world)
    try:
        return scene_for_id(config, img_id)
    except ValueError as err:
        raise ValueError(f"{world}: {err}") from None
