"""Pictures of the generated world: objects drawn where the feature store's boxes are."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lxmert.cli import main as cli_main
from lxmert.data.synth import (COLOUR_RGB, COLOURS, SHAPES, SynthConfig, generate_scene, generate_world,
                               render_scene, render_world_image, world_scene)
from lxmert.data.synth.render import FLOOR_RGB, RING_HOLE, WALL_RGB
from lxmert.features.tsv import read_tsv


def colour_point(box) -> tuple[int, int]:
    """The box centre's pixel."""
    return int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)


def ring_point(box) -> tuple[int, int]:
    x1, y1, x2, _ = box
    band = (x2 - x1) * (1 - RING_HOLE) / 2
    return int(x1 + band / 2), int((y1 + box[3]) / 2)


def point_of(obj) -> tuple[int, int]:
    """A pixel that the object's colour covers: its box centre, for a ring the middle of its band."""
    return ring_point(obj.box) if obj.shape == "ring" else colour_point(obj.box)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("render") / "w"
    generate_world(out, SynthConfig(images=20, feat_dim=4, num_boxes=30, pictures="test", val_fraction=0.2,
                                    test_fraction=0.25), progress=False)
    return out


def test_store_boxes_land_on_the_drawn_objects(world: Path):
    """Each object's box is a box of the features TSV (same pixels, same image size), and the
    picture shows the object's colour there."""
    records = {r["img_id"]: r for r in read_tsv(world / "features/test_obj36.tsv")}
    assert len(records) == 5
    for img_id, record in records.items():
        image = Image.open(world / "images" / f"{img_id}.png")
        assert image.size == (record["img_w"], record["img_h"]) and image.mode == "RGB"
        pixels = np.asarray(image)
        scene = world_scene(world, img_id)
        assert scene.objects
        for obj in scene.objects:
            # the detector clips boxes to the image; objects lie inside it, so the box is unchanged
            hits = np.flatnonzero(np.abs(record["boxes"] - np.asarray(obj.box, dtype=np.float32)).max(1) < 1e-3)
            assert len(hits) >= 1, (img_id, obj)
            x, y = point_of(obj)
            assert tuple(pixels[y, x]) == COLOUR_RGB[obj.colour], (img_id, obj, pixels[y, x])


def test_every_shape_colour_and_material_is_drawn_in_its_colour():
    """Many random scenes (all shapes, materials, sizes): the object's pixel is its colour,
    and a pixel of an empty corner is background."""
    seen = set()
    for i in range(60):
        scene = generate_scene(f"s{i}", random.Random(i), 1 + i % 6, 1 + i % 6)
        pixels = np.asarray(render_scene(scene))
        assert pixels.shape == (scene.height, scene.width, 3)
        for obj in scene.objects:
            x, y = point_of(obj)
            assert tuple(pixels[y, x]) == COLOUR_RGB[obj.colour], (i, obj)
            seen.add((obj.shape, obj.material))
        assert tuple(pixels[0, 0]) == WALL_RGB
    assert {s for s, _ in seen} == set(SHAPES) and len(seen) >= 28


def test_colours_are_distinct_from_each_other_and_the_background():
    assert set(COLOUR_RGB) == set(COLOURS)
    rgb = np.asarray([COLOUR_RGB[c] for c in COLOURS] + [WALL_RGB, FLOOR_RGB], dtype=float)
    dist = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1)
    assert dist[~np.eye(len(rgb), dtype=bool)].min() > 40


def test_pictures_are_written_only_when_asked(tmp_path: Path, world: Path):
    test_ids = {r["img_id"] for r in read_tsv(world / "features/test_obj36.tsv")}
    assert {p.stem for p in (world / "images").iterdir()} == test_ids
    assert json.loads((world / "synth.json").read_text())["files"]["images/*.png"] == 5

    generate_world(tmp_path / "none", SynthConfig(images=6, feat_dim=4), progress=False)
    assert not (tmp_path / "none" / "images").exists()
    generate_world(tmp_path / "all", SynthConfig(images=6, feat_dim=4, pictures="all"), progress=False)
    assert len(list((tmp_path / "all" / "images").glob("*.png"))) == 6
    with pytest.raises(ValueError, match="pictures must be one of"):
        SynthConfig(pictures="some").validate()


def test_rendering_is_deterministic_and_on_demand_equals_the_written_file(world: Path, tmp_path: Path):
    img_id = "synth_test_000002"
    written = np.asarray(Image.open(world / "images" / f"{img_id}.png"))
    assert np.array_equal(np.asarray(render_world_image(world, img_id)), written)
    assert render_world_image(world, img_id).tobytes() == render_world_image(world, img_id).tobytes()
    # an image without a file (train split) renders too, and differs from another image
    train = render_world_image(world, "synth_train_000000")
    assert not (world / "images" / "synth_train_000000.png").exists()
    assert train.size != Image.fromarray(written).size or not np.array_equal(np.asarray(train), written)
    # the same world generated again writes the same pictures
    again = tmp_path / "again"
    generate_world(again, SynthConfig.from_dict(json.loads((world / "synth.json").read_text())["config"]),
                   progress=False)
    assert (again / "images" / f"{img_id}.png").read_bytes() == (world / "images" / f"{img_id}.png").read_bytes()


@pytest.mark.parametrize("img_id, message", [
    ("synth_test_000005", "its test split has 5 images"),
    ("synth_valid_000000", "not a generated world's image id"),
    ("COCO_val2014_000000000042", "not a generated world's image id"),
    ("synth_train_12", "not a generated world's image id"),
])
def test_unknown_image_ids_are_refused(world: Path, img_id: str, message: str):
    with pytest.raises(ValueError, match=message) as err:
        render_world_image(world, img_id)
    assert str(world) in str(err.value) and img_id in str(err.value)


def test_a_directory_without_a_world_is_refused(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="synth.json"):
        render_world_image(tmp_path, "synth_test_000000")
    (tmp_path / "synth.json").write_text('{"config": {"images": 10, "colour_depth": 3}}')
    with pytest.raises(ValueError, match=r"synth.json: config: unknown SynthConfig key\(s\) \['colour_depth'\]"):
        render_world_image(tmp_path, "synth_test_000000")


def test_cli_pictures(tmp_path: Path, capsys):
    out = tmp_path / "w"
    assert cli_main(["synth", str(out), "--images", "6", "--feat-dim", "4", "--quiet", "--pictures", "test"]) == 0
    assert "images/*.png" in capsys.readouterr().out
    assert [p.name for p in (out / "images").iterdir()] == ["synth_test_000000.png"]
    assert cli_main(["synth", str(tmp_path / "x"), "--images", "2", "--quiet"]) == 1
    assert "images must be >= 3" in capsys.readouterr().err
