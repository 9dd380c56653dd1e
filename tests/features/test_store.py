"""The memory-mapped feature store: exact round trips, fp16 bound, bad input, atomicity."""

from __future__ import annotations

import json
import pickle
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lxmert.features import FP16_MAX, FeatureStore, build_store, check_store, export_tsv
from lxmert.features.build import ArrayWriter
from lxmert.features.cast import cast_into
from lxmert.features.tsv import FIELDNAMES, TsvFormatError, encode_row, write_tsv


def make_record(img_id: str, n: int = 5, dim: int = 8, seed: int = 0, h: int = 480, w: int = 640) -> dict:
    rng = np.random.default_rng(seed)
    x1 = rng.random(n, dtype=np.float32) * (w / 2)
    y1 = rng.random(n, dtype=np.float32) * (h / 2)
    boxes = np.stack([x1, y1, x1 + w / 3, y1 + h / 3], axis=1).astype(np.float32)
    return {
        "img_id": img_id,
        "img_h": h,
        "img_w": w,
        "num_boxes": n,
        "objects_id": rng.integers(0, 1600, n),
        "objects_conf": rng.random(n, dtype=np.float32),
        "attrs_id": rng.integers(0, 400, n),
        "attrs_conf": rng.random(n, dtype=np.float32),
        "boxes": boxes,
        "features": (rng.standard_normal((n, dim)) * 3).astype(np.float32),
    }


def write_records(path: Path, specs: list[tuple[str, int]], dim: int = 8, newline: str = "\n") -> list[dict]:
    recs = [make_record(i, n=n, dim=dim, seed=k) for k, (i, n) in enumerate(specs)]
    write_tsv(path, recs, newline=newline)
    return recs


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.suffix != ".tsv")


# ---------------------------------------------------------------------------- round trips


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(0, 7), min_size=1, max_size=6), st.booleans(), st.sampled_from(["\n", "\r\n"]))
def test_fp32_store_exports_byte_identical_tsv(box_counts, two_files, newline):
    if not any(box_counts):
        box_counts = box_counts + [3]
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        specs = [(f"COCO_{k:06d}", n) for k, n in enumerate(box_counts)]
        split = len(specs) // 2 if two_files and len(specs) > 1 else len(specs)
        files = [d / "a.tsv"] + ([d / "b.tsv"] if split < len(specs) else [])
        write_records(files[0], specs[:split], newline=newline)
        if len(files) > 1:
            write_tsv(files[1], [make_record(i, n=n, seed=100 + k) for k, (i, n) in enumerate(specs[split:])],
                      newline=newline)
        info = build_store(files, d / "store", dtype="float32", progress=False)
        assert info.num_images == len(specs) and info.max_boxes == max(box_counts)
        export_tsv(d / "store", d / "out.tsv")
        assert (d / "out.tsv").read_bytes() == b"".join(f.read_bytes() for f in files)


def test_export_subset_in_requested_order(tmp_path):
    write_records(tmp_path / "a.tsv", [("a", 3), ("b", 4), ("c", 5)])
    build_store(tmp_path / "a.tsv", tmp_path / "s", dtype="float32", progress=False)
    export_tsv(tmp_path / "s", tmp_path / "sub.tsv", ids=["c", "a"])
    lines = (tmp_path / "a.tsv").read_text().splitlines()
    assert (tmp_path / "sub.tsv").read_text().splitlines() == [lines[2], lines[0]]


@settings(max_examples=20, deadline=None)
@given(hnp.arrays(np.float32, (4, 6), elements=st.floats(-FP16_MAX, FP16_MAX, width=32)))
def test_fp16_error_bound(values):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        rec = {**make_record("x", n=4, dim=6), "features": values}
        write_tsv(d / "a.tsv", [rec])
        build_store(d / "a.tsv", d / "s", dtype="float16", progress=False)
        got = FeatureStore.open(d / "s").get("x")["features"]
        assert got.dtype == np.float32
        x = values.astype(np.float64)
        err = np.abs(got.astype(np.float64) - x)
        bound = np.maximum(2.0**-11 * np.abs(x), 2.0**-25)
        assert (err <= bound).all(), (x[err > bound], got[err > bound])


def test_fp16_bound_is_tight_and_storage_halves(tmp_path):
    # 1 + 2**-11 lies exactly half-way between two float16 neighbours: the bound is attained.
    feats = np.full((2, 8), 1 + 2.0**-11, np.float32)
    write_tsv(tmp_path / "a.tsv", [{**make_record("x", n=2), "features": feats}])
    i16 = build_store(tmp_path / "a.tsv", tmp_path / "s16", dtype="float16", progress=False)
    i32 = build_store(tmp_path / "a.tsv", tmp_path / "s32", dtype="float32", progress=False)
    got = FeatureStore.open(tmp_path / "s16").get("x")["features"]
    assert np.abs(got - feats).max() == pytest.approx(2.0**-11, rel=1e-6)
    f16 = (tmp_path / "s16" / "features.bin").stat().st_size
    f32 = (tmp_path / "s32" / "features.bin").stat().st_size
    assert f32 == 2 * f16 and i16.nbytes < i32.nbytes


def test_fp16_overflow_is_an_error_unless_clipped(tmp_path):
    big = make_record("big", n=2)
    big["features"][1, 2] = 7.0e4
    big["features"][0, 0] = -1.0e5
    write_tsv(tmp_path / "a.tsv", [make_record("ok"), big])
    with pytest.raises(TsvFormatError, match=r"a\.tsv, line 2: .*2 value\(s\) beyond the float16 range"):
        build_store(tmp_path / "a.tsv", tmp_path / "s", dtype="float16", progress=False)
    assert leftovers(tmp_path) == []
    info = build_store(tmp_path / "a.tsv", tmp_path / "s", dtype="float16", progress=False, clip_fp16=True)
    assert info.clipped_values == 2
    got = FeatureStore.open(tmp_path / "s").get("big")["features"]
    assert got[1, 2] == FP16_MAX and got[0, 0] == -FP16_MAX and np.isfinite(got).all()
    # float32 keeps the value exactly
    build_store(tmp_path / "a.tsv", tmp_path / "s32", dtype="float32", progress=False)
    assert FeatureStore.open(tmp_path / "s32").get("big")["features"][1, 2] == np.float32(7.0e4)


# ---------------------------------------------------------------------------- reading


def test_get_pads_masks_and_normalises(tmp_path):
    recs = write_records(tmp_path / "a.tsv", [("a", 3), ("b", 6), ("c", 1)])
    build_store(tmp_path / "a.tsv", tmp_path / "s", dtype="float32", progress=False)
    store = FeatureStore.open(tmp_path / "s")
    assert len(store) == 3 and store.ids == ["a", "b", "c"] and "b" in store and "z" not in store
    assert store.stored_max_boxes == 6 and store.feat_dim == 8
    g = store.get("a")
    src = recs[0]
    assert g["features"].shape == (6, 8) and g["features"].dtype == np.float32
    np.testing.assert_array_equal(g["features"][:3], src["features"])
    assert not g["features"][3:].any() and not g["boxes"][3:].any()
    np.testing.assert_array_equal(g["mask"], [True] * 3 + [False] * 3)
    np.testing.assert_array_equal(g["obj_ids"][:3], src["objects_id"])
    np.testing.assert_array_equal(g["attr_conf"][:3], src["attrs_conf"])
    assert g["obj_ids"].dtype == np.int64 and g["mask"].dtype == np.bool_
    assert (g["num_boxes"], g["img_h"], g["img_w"]) == (3, 480, 640)
    expect = src["boxes"] / np.array([640, 480, 640, 480], np.float32)
    np.testing.assert_allclose(g["boxes_norm"][:3], expect, rtol=1e-7)
    assert g["boxes_norm"].dtype == np.float32 and (g["boxes_norm"][:3] <= 1).all()


def test_read_time_max_boxes_truncates_and_pads(tmp_path):
    recs = write_records(tmp_path / "a.tsv", [("a", 3), ("b", 6)])
    build_store(tmp_path / "a.tsv", tmp_path / "s", dtype="float32", progress=False)
    small = FeatureStore.open(tmp_path / "s", max_boxes=4).get("b")
    assert small["features"].shape == (4, 8) and small["num_boxes"] == 4 and small["mask"].all()
    np.testing.assert_array_equal(small["features"], recs[1]["features"][:4])
    big = FeatureStore.open(tmp_path / "s", max_boxes=36).get("a")
    assert big["features"].shape == (36, 8) and big["mask"].sum() == 3 and not big["features"][3:].any()


def test_build_time_max_boxes_truncates(tmp_path):
    recs = write_records(tmp_path / "a.tsv", [("a", 3), ("b", 6)])
    info = build_store(tmp_path / "a.tsv", tmp_path / "s", dtype="float32", max_boxes=4, progress=False)
    assert info.truncated_rows == 1 and info.max_boxes == 4
    g = FeatureStore.open(tmp_path / "s").get("b")
    assert g["num_boxes"] == 4
    np.testing.assert_array_equal(g["features"], recs[1]["features"][:4])


def test_get_many_matches_get_in_request_order(tmp_path):
    write_records(tmp_path / "a.tsv", [(f"i{k}", 1 + k % 5) for k in range(12)])
    build_store(tmp_path / "a.tsv", tmp_path / "s", dtype="float16", progress=False)
    store = FeatureStore.open(tmp_path / "s", max_boxes=4)
    ids = ["i7", "i2", "i11", "i2", "i0"]
    batch = store.get_many(ids)
    assert batch["img_id"] == ids and batch["features"].shape == (5, 4, 8)
    for b, i in enumerate(ids):
        one = store.get(i)
        for key in ("features", "boxes", "boxes_norm", "obj_ids", "obj_conf", "attr_ids", "attr_conf", "mask"):
            np.testing.assert_array_equal(batch[key][b], one[key], err_msg=key)
        assert batch["num_boxes"][b] == one["num_boxes"]


def test_missing_id_names_id_and_store(tmp_path):
    write_records(tmp_path / "a.tsv", [("a", 2)])
    build_store(tmp_path / "a.tsv", tmp_path / "s", progress=False)
    store = FeatureStore.open(tmp_path / "s")
    with pytest.raises(KeyError, match=r"'COCO_missing'.*" + str(tmp_path / "s")):
        store.get("COCO_missing")
    with pytest.raises(KeyError, match="COCO_missing"):
        store.get_many(["a", "COCO_missing"])


def test_open_is_lazy_and_pickles_without_data(tmp_path):
    write_records(tmp_path / "a.tsv", [(f"i{k}", 36) for k in range(40)], dim=64)
    build_store(tmp_path / "a.tsv", tmp_path / "s", progress=False)
    store = FeatureStore.open(tmp_path / "s")
    assert not store.loaded  # open read the manifest only: no id index, no maps
    store.get("i3")
    blob = pickle.dumps(store)
    assert len(blob) < 4096  # path + manifest, no arrays (the features alone are 184 KB)
    clone = pickle.loads(blob)
    assert not clone.loaded
    np.testing.assert_array_equal(clone.get("i5")["features"], store.get("i5")["features"])


class _StoreDataset(torch.utils.data.Dataset):
    def __init__(self, store: FeatureStore, ids: list[str]):
        self.store, self.ids = store, ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        g = self.store.get(self.ids[i])
        return self.ids[i], torch.from_numpy(g["features"]), torch.from_numpy(g["boxes_norm"])


def test_dataloader_workers_read_the_right_rows(tmp_path):
    torch.set_num_threads(1)
    recs = write_records(tmp_path / "a.tsv", [(f"img{k}", 2 + k % 4) for k in range(24)])
    build_store(tmp_path / "a.tsv", tmp_path / "s", dtype="float32", progress=False)
    store = FeatureStore.open(tmp_path / "s", max_boxes=5)
    by_id = {r["img_id"]: r for r in recs}
    order = [f"img{k}" for k in np.random.default_rng(0).permutation(24)]
    # Default start method (fork on Linux): each worker maps the files itself on first use.
    # Spawn (macOS/Windows) sends the store pickled, which the pickling test above covers
    # without paying a torch import per worker.
    loader = torch.utils.data.DataLoader(_StoreDataset(store, order), batch_size=4, num_workers=2)
    seen = []
    for ids, feats, boxes in loader:
        for j, img_id in enumerate(ids):
            r = by_id[img_id]
            n = r["num_boxes"]
            np.testing.assert_array_equal(feats[j, :n].numpy(), r["features"])
            assert not feats[j, n:].any()
            np.testing.assert_allclose(boxes[j, :n, 2].numpy(), r["boxes"][:, 2] / 640, rtol=1e-7)
            seen.append(img_id)
    assert seen == order


# ---------------------------------------------------------------------------- bad input


def _good_line(img_id: str, n: int = 4) -> str:
    return encode_row(make_record(img_id, n=n))


def _with(img_id: str, field: str, value: str) -> str:
    parts = _good_line(img_id).split("\t")
    parts[FIELDNAMES.index(field)] = value
    return "\t".join(parts)


def _b64(arr) -> str:
    import base64

    return base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode()


_nan = np.zeros((4, 8), np.float32)
_nan[1, 1] = np.nan
_inf = np.ones((4, 4), np.float32)
_inf[3, 2] = -np.inf

BAD_ROWS = {
    "field count": ("a\tb\tc\td", "expected 10 tab-separated fields, got 4"),
    "bad base64": (_with("x", "features", "%%%%" + _b64(np.zeros((4, 8), np.float32))[4:]), "invalid base64"),
    "bad base64 length": (_with("x", "features", _b64(np.zeros((4, 8), np.float32))[:-4]), "invalid base64|not a positive multiple"),
    "wrong length for n": (_with("x", "num_boxes", "5"), "'objects_id': 32 bytes, expected 40 for num_boxes=5"),
    "feature dim": (_with("x", "features", _b64(np.zeros((4, 16), np.float32))), "dimension 16 differs from 8"),
    "nan features": (_with("x", "features", _b64(_nan)), "'features': 1 non-finite"),
    "inf boxes": (_with("x", "boxes", _b64(_inf)), "'boxes': 1 non-finite"),
    "negative size": (_with("x", "img_h", "-480"), "'img_h': must be >= 1"),
    "non-integer size": (_with("x", "img_w", "640.0"), "'img_w': expected an integer"),
    "duplicate id": (_good_line("g1"), r"duplicate img_id 'g1' \(first seen in .*a\.tsv, line 1\)"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_row_fails_with_file_and_line_and_leaves_nothing(tmp_path, case):
    bad, reason = BAD_ROWS[case]
    lines = [_good_line("g1"), _good_line("g2"), bad, _good_line("g3")]
    (tmp_path / "a.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(TsvFormatError, match=rf"a\.tsv, line 3: .*({reason})") as info:
        build_store(tmp_path / "a.tsv", tmp_path / "s", progress=False)
    assert info.value.lineno == 3
    assert leftovers(tmp_path) == []  # no store, no temporary directory

    built = build_store(tmp_path / "a.tsv", tmp_path / "s", progress=False, skip_bad=True)
    assert [(Path(f).name, n) for f, n, _ in built.skipped] == [("a.tsv", 3)]
    assert FeatureStore.open(tmp_path / "s").ids == ["g1", "g2", "g3"]
    assert check_store(tmp_path / "s", progress=False) == []
    man = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert man["skipped"][0][1] == 3


def test_duplicate_id_across_files(tmp_path):
    write_records(tmp_path / "a.tsv", [("a", 2), ("dup", 2)])
    write_records(tmp_path / "b.tsv", [("b", 2), ("dup", 3)])
    with pytest.raises(TsvFormatError, match=r"b\.tsv, line 2: duplicate img_id 'dup' \(first seen in .*a\.tsv, line 2\)"):
        build_store([tmp_path / "a.tsv", tmp_path / "b.tsv"], tmp_path / "s", progress=False)
    assert leftovers(tmp_path) == []


def test_refuses_existing_output_unless_overwrite(tmp_path):
    write_records(tmp_path / "a.tsv", [("a", 2)])
    write_records(tmp_path / "b.tsv", [("b", 2)])
    build_store(tmp_path / "a.tsv", tmp_path / "s", progress=False)
    with pytest.raises(FileExistsError, match="already exists"):
        build_store(tmp_path / "b.tsv", tmp_path / "s", progress=False)
    build_store(tmp_path / "b.tsv", tmp_path / "s", progress=False, overwrite=True)
    assert FeatureStore.open(tmp_path / "s").ids == ["b"]
    assert leftovers(tmp_path) == ["s"]


# ---------------------------------------------------------------------------- interrupted imports


def _fail_after(monkeypatch, rows: int) -> None:
    real = ArrayWriter.write
    count = {"n": 0}

    def write(self, row):
        if self.path.name == "features.bin":
            count["n"] += 1
            if count["n"] > rows:
                raise KeyboardInterrupt("simulated kill")
        real(self, row)

    monkeypatch.setattr(ArrayWriter, "write", write)


def test_interrupted_import_leaves_nothing(tmp_path, monkeypatch):
    write_records(tmp_path / "a.tsv", [(f"i{k}", 3) for k in range(10)])
    _fail_after(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        build_store(tmp_path / "a.tsv", tmp_path / "s", progress=False)
    assert leftovers(tmp_path) == []


def test_killed_import_leaves_a_directory_open_refuses(tmp_path, monkeypatch):
    """A SIGKILL skips all clean-up: the temporary directory stays, without manifest."""
    write_records(tmp_path / "a.tsv", [(f"i{k}", 3) for k in range(10)])
    _fail_after(monkeypatch, 5)
    monkeypatch.setattr(shutil, "rmtree", lambda *a, **k: None)
    with pytest.raises(KeyboardInterrupt):
        build_store(tmp_path / "a.tsv", tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()
    (partial,) = [p for p in tmp_path.iterdir() if p.name.startswith("s.tmp-")]
    assert (partial / "features.bin").stat().st_size > 0  # data was being written
    with pytest.raises(ValueError, match=r"no manifest\.json: it is not a complete feature store"):
        FeatureStore.open(partial)
    assert "no manifest.json" in check_store(partial, progress=False)[0]


def test_open_refuses_damaged_stores(tmp_path):
    write_records(tmp_path / "a.tsv", [(f"i{k}", 3) for k in range(4)])
    build_store(tmp_path / "a.tsv", tmp_path / "s", progress=False)
    # truncated array file
    t = tmp_path / "t"
    shutil.copytree(tmp_path / "s", t)
    with open(t / "features.bin", "r+b") as f:
        f.truncate(100)
    with pytest.raises(ValueError, match=r"features\.bin: 100 bytes, expected 192"):
        FeatureStore.open(t)
    # future format version
    v = tmp_path / "v"
    shutil.copytree(tmp_path / "s", v)
    man = json.loads((v / "manifest.json").read_text())
    man["version"] = 99
    (v / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ValueError, match="format version 99"):
        FeatureStore.open(v)
    with pytest.raises(FileNotFoundError):
        FeatureStore.open(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="looks like a TSV"):
        FeatureStore.open(tmp_path / "a.tsv")


def test_check_finds_corruption(tmp_path):
    write_records(tmp_path / "a.tsv", [("i0", 2), ("i1", 3), ("i2", 3)])
    build_store(tmp_path / "a.tsv", tmp_path / "s", dtype="float32", progress=False)
    assert check_store(tmp_path / "s", progress=False) == []
    feats = np.memmap(tmp_path / "s" / "features.bin", dtype="<f4", mode="r+", shape=(3, 3, 8))
    feats[2, 1, 5] = np.nan
    feats[0, 2, 0] = 1.0  # row 0 has 2 boxes: slot 2 is padding
    feats.flush()
    del feats
    problems = check_store(tmp_path / "s", progress=False)
    assert any("features.bin: CRC-32 mismatch" in p for p in problems)
    assert any("features: 1 non-finite" in p for p in problems)
    assert any("features: 1 non-zero value(s) in padding" in p for p in problems)


def test_fast_float16_widening_matches_numpy():
    bits = np.arange(65536, dtype=np.uint16)
    halves = bits.view(np.float16)
    halves = halves[np.isfinite(halves)].reshape(-1, 2)  # every finite half, incl. subnormals and -0
    dst = np.empty(halves.shape, np.float32)
    cast_into(dst, halves)
    assert dst.view(np.uint32).tobytes() == halves.astype(np.float32).view(np.uint32).tobytes()


def test_fast_float16_narrowing_matches_numpy():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    values = values[np.isfinite(values) & (np.abs(values) <= FP16_MAX)]
    # plus exact half-way points between float16 neighbours (ties go to even)
    halves = np.arange(0, 2**15 - 1024, 7, dtype=np.uint16).view(np.float16).astype(np.float32)
    nxt = np.nextafter(halves.astype(np.float16), np.float16(np.inf)).astype(np.float32)
    values = np.concatenate([values, (halves + nxt) / 2, -(halves + nxt) / 2])
    values = values[: len(values) // 2 * 2].reshape(-1, 2)
    dst = np.empty(values.shape, np.float16)
    cast_into(dst, values)
    assert dst.view(np.uint16).tobytes() == values.astype(np.float16).view(np.uint16).tobytes()


def test_parallel_import_matches_serial(tmp_path):
    specs = [(f"p{k}", 1 + k % 7) for k in range(30)]
    write_records(tmp_path / "a.tsv", specs)
    lines = (tmp_path / "a.tsv").read_text().splitlines()
    lines[11] = _with("nan", "features", _b64(_nan))  # a row only the decoding pass rejects
    (tmp_path / "a.tsv").write_text("\n".join(lines) + "\n")
    serial = build_store(tmp_path / "a.tsv", tmp_path / "s1", progress=False, skip_bad=True, workers=1)
    par = build_store(tmp_path / "a.tsv", tmp_path / "s2", progress=False, skip_bad=True, workers=2)
    assert serial.skipped == par.skipped and [n for _, n, _ in par.skipped] == [12]
    for name in ("features", "boxes", "obj_ids", "num_boxes", "img_w"):
        assert (tmp_path / "s1" / f"{name}.bin").read_bytes() == (tmp_path / "s2" / f"{name}.bin").read_bytes()
    assert FeatureStore.open(tmp_path / "s2").ids == FeatureStore.open(tmp_path / "s1").ids
    with pytest.raises(TsvFormatError, match=r"a\.tsv, line 12: field 'features': 1 non-finite"):
        build_store(tmp_path / "a.tsv", tmp_path / "s3", progress=False, workers=2)
    assert leftovers(tmp_path) == ["s1", "s2"]


def test_unpickling_refuses_a_store_replaced_on_disk(tmp_path):
    write_records(tmp_path / "a.tsv", [("a", 2)])
    write_records(tmp_path / "b.tsv", [("b", 3), ("c", 1)])
    build_store(tmp_path / "a.tsv", tmp_path / "s", progress=False)
    blob = pickle.dumps(FeatureStore.open(tmp_path / "s"))
    build_store(tmp_path / "b.tsv", tmp_path / "s", progress=False, overwrite=True)
    with pytest.raises(ValueError, match="changed on disk"):
        pickle.loads(blob)
