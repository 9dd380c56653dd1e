"""What the server accepts (`serve.limits`) and the pictures it offers (`serve.catalog`)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from support.serving import picture, png_bytes, store_of

from lxmert.data.synth import render_world_image
from lxmert.features.store import FeatureStore
from lxmert.serve.catalog import ImageCatalog
from lxmert.serve.limits import Limits, RequestError, check_question, decode_image, parse_top_k

LIMITS = Limits()


def encoded(array: np.ndarray, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_decode_gives_rgb_in_the_detector_loaders_orientation(tmp_path):
    from lxmert.detector import load_image

    rgb = (np.arange(40 * 60 * 3) % 251).astype(np.uint8).reshape(40, 60, 3)
    for data in (encoded(rgb), encoded(rgb, "BMP"), encoded(rgb[..., 0]), encoded(np.dstack([rgb, rgb[..., :1]]))):
        got = decode_image(data, LIMITS)
        assert got.dtype == np.uint8 and got.shape == (40, 60, 3)
    # an EXIF-rotated JPEG decodes as lxmert.detector.load_image reads the same file
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpg"
    image.save(path, format="JPEG", exif=exif)
    got = decode_image(path.read_bytes(), LIMITS)
    assert got.shape == (60, 40, 3)
    assert np.array_equal(got, load_image(path))


def _huge_png() -> bytes:
    # 5000 x 5000 pixels in a few kilobytes: refused from the header, never decoded
    return encoded(np.zeros((5000, 5000), dtype=np.uint8))


@pytest.mark.parametrize("data, status, code", [
    (b"", 400, "empty_image"),
    (b"hello, this is not an image\n" * 10, 415, "not_an_image"),
    (png_bytes(picture(64, 64))[:300], 400, "bad_image"),
    (_huge_png(), 413, "image_too_large"),
    (encoded(np.zeros((8, 64, 3), np.uint8)), 400, "image_too_small"),
    (encoded(np.zeros((20, 400, 3), np.uint8)), 400, "bad_aspect_ratio"),
], ids=["empty", "text", "truncated", "huge", "small", "aspect"])
def test_bad_images(data, status, code):
    with pytest.raises(RequestError) as caught:
        decode_image(data, LIMITS, name="photo.png")
    assert (caught.value.status, caught.value.code) == (status, code)
    assert caught.value.to_json() == {"error": {"code": code, "message": caught.value.message}}
    assert "\n" not in caught.value.message


def test_image_area_limit_is_checked_before_decoding():
    limits = Limits(max_image_pixels=100 * 100)
    assert decode_image(encoded(np.zeros((100, 100, 3), np.uint8)), limits).shape == (100, 100, 3)
    with pytest.raises(RequestError, match="101 x 100 pixels"):
        decode_image(encoded(np.zeros((100, 101, 3), np.uint8)), limits)


@pytest.mark.parametrize("value, code", [
    (None, "missing_question"), (5, "bad_question"), ("", "empty_question"), ("  \t\n", "empty_question"),
    ("x" * 201, "question_too_long"),
])
def test_bad_questions(value, code):
    with pytest.raises(RequestError) as caught:
        check_question(value, LIMITS)
    assert caught.value.status == 400 and caught.value.code == code


def test_questions_are_stripped_and_may_fill_the_limit():
    assert check_question("  what is it?  ", LIMITS) == "what is it?"
    assert check_question("y" * 200, LIMITS) == "y" * 200


@pytest.mark.parametrize("value", [0, -1, 51, "x", "2.5", 2.5, True, [3], "1e3"])
def test_bad_top_k(value):
    with pytest.raises(RequestError) as caught:
        parse_top_k(value, LIMITS)
    assert caught.value.code == "bad_top_k"


@given(st.integers(1, 50))
def test_top_k_from_json_or_form(k):
    assert parse_top_k(k, LIMITS) == k == parse_top_k(str(k), LIMITS)
    assert parse_top_k(None, LIMITS) == 5 == parse_top_k("", LIMITS)


@pytest.mark.parametrize("kwargs", [{"max_upload_bytes": 0}, {"max_question_chars": -1},
                                    {"min_image_side": 5000}])
def test_bad_limits(kwargs):
    with pytest.raises(ValueError):
        Limits(**kwargs)


# ------------------------------------------------------------------------------ catalog
def test_a_world_offers_its_test_images_with_their_pictures(world):
    store = FeatureStore.open(store_of(world))
    catalog = ImageCatalog(store)
    assert catalog.kind == "world"
    ids = catalog.ids()
    assert ids and all(i.startswith("synth_test_") for i in ids)
    assert sorted(ids) == sorted(p.stem for p in (world / "images").glob("*.png"))
    entry = catalog.entries()[0]
    data, media = catalog.picture(entry["id"])
    assert media == "image/png" and data == (world / "images" / f"{entry['id']}.png").read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (entry["width"], entry["height"])  # the stored boxes fit the picture


def test_a_missing_picture_is_rendered_the_same(world, tmp_path):
    store = FeatureStore.open(store_of(world))
    catalog = ImageCatalog(store)
    # a train image has no file (pictures="test"): rendered on demand, the same scene
    data, _ = catalog.picture("synth_train_000001")
    with Image.open(io.BytesIO(data)) as im:
        assert np.array_equal(np.asarray(im.convert("RGB")),
                              np.asarray(render_world_image(world, "synth_train_000001").convert("RGB")))


@pytest.mark.parametrize("img_id", ["no_such_id", "../synth.json", "synth_test_000001/../../x", ".hidden", ""])
def test_unknown_or_unsafe_ids_have_no_picture(world, img_id):
    assert ImageCatalog(FeatureStore.open(store_of(world))).picture(img_id) is None


def test_a_pictures_folder_for_other_stores(world, tmp_path):
    import shutil

    store_copy = tmp_path / "plain" / "store"
    shutil.copytree(store_of(world), store_copy)  # no synth.json two levels up: not a world
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    store = FeatureStore.open(store_copy)
    (pictures / f"{store.ids[3]}.jpg").write_bytes(png_bytes(np.zeros((16, 16, 3), np.uint8)))
    catalog = ImageCatalog(store, pictures)
    assert catalog.kind == "pictures" and catalog.ids() == [store.ids[3]]
    assert catalog.picture(store.ids[3])[1] == "image/jpeg"
    assert catalog.picture(store.ids[4]) is None
    plain = ImageCatalog(store)
    assert plain.kind == "features" and len(plain.ids()) == len(store)
    assert all(not e["picture"] for e in plain.entries()) and plain.picture(store.ids[0]) is None
    with pytest.raises(FileNotFoundError, match="pictures directory"):
        ImageCatalog(store, tmp_path / "absent")


# ------------------------------------------------------------------------------ without the extra
def test_serve_without_the_extra_says_what_to_install(tmp_path):
    """`lxmert serve` where Starlette is not installed: one line naming the extra."""
    import os
    import subprocess
    import sys

    code = ("import sys; sys.modules['starlette'] = None; from lxmert.cli import main; "
            f"sys.exit(main(['serve', '--model', {str(tmp_path)!r}, '--features', {str(tmp_path)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "lxmert serve: error: lxmert serve needs the 'serve' extra (starlette is missing): pip install 'lxmert[serve]'"]
