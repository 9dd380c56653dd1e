"""The bottom-up-attention TSV codec: round trips, compatibility, strict errors, atomicity."""

from __future__ import annotations

import base64
import csv
import pickle
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lxmert.features.tsv import (
    FIELDNAMES,
    TsvFormatError,
    decode_row,
    encode_row,
    read_tsv,
    write_tsv,
)


def make_record(img_id: str, n: int = 5, dim: int = 8, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "img_id": img_id,
        "img_h": 480,
        "img_w": 640,
        "num_boxes": n,
        "objects_id": rng.integers(0, 1600, n),
        "objects_conf": rng.random(n, dtype=np.float32),
        "attrs_id": rng.integers(0, 400, n),
        "attrs_conf": rng.random(n, dtype=np.float32),
        "boxes": (rng.random((n, 4), dtype=np.float32) * 400).astype(np.float32),
        "features": rng.random((n, dim), dtype=np.float32),
    }


def assert_same_record(a: dict, b: dict) -> None:
    assert a["img_id"] == b["img_id"]
    for key in ("img_h", "img_w", "num_boxes"):
        assert int(a[key]) == int(b[key])
    for key in FIELDNAMES[3:7] + ["boxes", "features"]:
        x, y = np.asarray(a[key]), np.asarray(b[key])
        assert x.shape == y.shape, key
        assert x.tobytes() == y.astype(x.dtype).tobytes(), key


finite_f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@st.composite
def records(draw):
    n = draw(st.integers(0, 6))
    dim = draw(st.integers(1, 12))
    ids = hnp.arrays(np.int64, (n,), elements=st.integers(-(2**63), 2**63 - 1))
    return {
        "img_id": draw(st.text(st.characters(blacklist_characters="\t\r\n", blacklist_categories=("Cs",)),
                               min_size=1, max_size=12)),
        "img_h": draw(st.integers(1, 10_000)),
        "img_w": draw(st.integers(1, 10_000)),
        "num_boxes": n,
        "objects_id": draw(ids),
        "objects_conf": draw(hnp.arrays(np.float32, (n,), elements=finite_f32)),
        "attrs_id": draw(ids),
        "attrs_conf": draw(hnp.arrays(np.float32, (n,), elements=finite_f32)),
        "boxes": draw(hnp.arrays(np.float32, (n, 4), elements=finite_f32)),
        "features": draw(hnp.arrays(np.float32, (n, dim), elements=finite_f32)),
    }


@settings(max_examples=60, deadline=None)
@given(records())
def test_encode_decode_round_trip_is_exact(rec):
    line = encode_row(rec)
    assert "\n" not in line
    back = decode_row(line, path="x.tsv", lineno=1, feat_dim=rec["features"].shape[1])
    assert_same_record(rec, back)
    assert encode_row(back) == line  # canonical: re-encoding reproduces the bytes


def test_decoded_arrays_are_native_and_writable():
    rec = decode_row(encode_row(make_record("a")), path="x.tsv", lineno=1)
    for key in FIELDNAMES[3:7] + ["boxes", "features"]:
        assert rec[key].flags.writeable and rec[key].dtype.isnative
    assert rec["features"].dtype == np.float32 and rec["objects_id"].dtype == np.int64
    assert rec["boxes"].shape == (5, 4) and rec["features"].shape == (5, 8)


def test_reads_files_written_like_the_original_generate_tsv(tmp_path):
    """bottom-up-attention wrote rows with csv.DictWriter (tab, CRLF) of base64 strings."""
    path = tmp_path / "orig.tsv"
    recs = [make_record(f"img{i}", n=3 + i, dim=2048, seed=i) for i in range(3)]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, delimiter="\t", fieldnames=FIELDNAMES)
        for r in recs:
            writer.writerow({
                **{k: r[k] for k in ("img_id", "img_h", "img_w", "num_boxes")},
                **{k: base64.b64encode(np.ascontiguousarray(r[k]).tobytes()).decode()
                   for k in FIELDNAMES[3:7] + ["boxes", "features"]},
            })
    raw = path.read_bytes()
    assert raw.count(b"\r\n") == 3
    got = list(read_tsv(path))
    assert len(got) == 3
    for a, b in zip(recs, got):
        assert_same_record(a, b)
        assert b["features"].shape == (a["num_boxes"], 2048)
    # our encoder produces the very same rows
    out = tmp_path / "ours.tsv"
    write_tsv(out, got, newline="\r\n")
    assert out.read_bytes() == raw


def test_feature_dim_is_inferred_per_file_and_enforced(tmp_path):
    path = tmp_path / "dims.tsv"
    write_tsv(path, [make_record("a", dim=8), make_record("b", dim=16)])
    it = read_tsv(path)
    assert next(it)["features"].shape == (5, 8)
    with pytest.raises(TsvFormatError, match=r"dims\.tsv, line 2: .*dimension 16.*8"):
        next(it)


def test_read_is_lazy_and_reports_the_bad_line(tmp_path):
    path = tmp_path / "lazy.tsv"
    lines = [encode_row(make_record(f"r{i}")) for i in range(3)]
    lines[2] = lines[2][:-8]  # truncated last line, as after an interrupted extraction
    path.write_text("\n".join(lines) + "\n\n")
    it = read_tsv(path)
    assert next(it)["img_id"] == "r0"
    assert next(it)["img_id"] == "r1"
    with pytest.raises(TsvFormatError) as info:
        next(it)
    assert info.value.lineno == 3 and str(path) in str(info.value)


def _corrupt(field: str, value: str) -> str:
    parts = encode_row(make_record("bad")).split("\t")
    parts[FIELDNAMES.index(field)] = value
    return "\t".join(parts)


def _b64(arr) -> str:
    return base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode()


feats_nan = np.zeros((5, 8), np.float32)
feats_nan[2, 3] = np.nan
boxes_inf = np.zeros((5, 4), np.float32)
boxes_inf[0, 0] = np.inf


@pytest.mark.parametrize(
    "line, reason",
    [
        ("a\tb\tc", r"expected 10 tab-separated fields, got 3"),
        (encode_row(make_record("x")) + "\textra", r"expected 10 tab-separated fields, got 11"),
        (_corrupt("img_id", ""), r"'img_id' is empty"),
        (_corrupt("img_h", "-3"), r"'img_h': must be >= 1, got -3"),
        (_corrupt("img_w", "640.5"), r"'img_w': expected an integer"),
        (_corrupt("num_boxes", "five"), r"'num_boxes': expected an integer"),
        (_corrupt("num_boxes", "6"), r"'objects_id': 40 bytes, expected 48 for num_boxes=6"),
        (_corrupt("features", "!!!!" + _b64(np.zeros((5, 8), np.float32))[4:]), r"'features': invalid base64"),
        (_corrupt("boxes", _b64(np.zeros((5, 3), np.float32))), r"'boxes': 60 bytes, expected 80"),
        (_corrupt("features", _b64(np.zeros(41, np.float32))), r"'features': 164 bytes is not a positive multiple"),
        (_corrupt("features", _b64(feats_nan)), r"'features': 1 non-finite value"),
        (_corrupt("boxes", _b64(boxes_inf)), r"'boxes': 1 non-finite value"),
    ],
)
def test_decode_errors_name_file_line_and_reason(line, reason):
    with pytest.raises(TsvFormatError, match=r"^feats\.tsv, line 7: (field )?" + reason) as info:
        decode_row(line, path="feats.tsv", lineno=7)
    assert isinstance(info.value, ValueError)
    assert (info.value.path, info.value.lineno) == ("feats.tsv", 7)


def test_non_finite_allowed_when_not_checked():
    rec = decode_row(_corrupt("features", _b64(feats_nan)), path="f", lineno=1, check_finite=False)
    assert np.isnan(rec["features"][2, 3])


def test_encode_rejects_inconsistent_records():
    rec = make_record("a")
    rec["boxes"] = rec["boxes"][:3]
    with pytest.raises(ValueError, match=r"'a'.*'boxes' has shape \(3, 4\), expected \(5, 4\)"):
        encode_row(rec)
    with pytest.raises(ValueError, match="without tabs"):
        encode_row({**make_record("a"), "img_id": "a\tb"})
    with pytest.raises(ValueError, match="lacks field"):
        encode_row({"img_id": "a"})


def test_error_pickles_for_dataloader_workers():
    err = pickle.loads(pickle.dumps(TsvFormatError("f.tsv", 3, "bad base64")))
    assert str(err) == "f.tsv, line 3: bad base64" and err.lineno == 3


def test_write_is_atomic(tmp_path):
    path = tmp_path / "out.tsv"
    write_tsv(path, [make_record("old")])
    before = path.read_bytes()

    def rows():
        yield make_record("new1")
        raise RuntimeError("extractor crashed")

    with pytest.raises(RuntimeError, match="crashed"):
        write_tsv(path, rows())
    assert path.read_bytes() == before  # old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tsv"]  # no temp left
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_zero_box_rows(tmp_path):
    path = tmp_path / "z.tsv"
    write_tsv(path, [make_record("a"), {**make_record("b", n=0)}])
    got = list(read_tsv(path))
    assert got[1]["num_boxes"] == 0 and got[1]["features"].shape == (0, 8)


@pytest.mark.skipif(sys.byteorder != "little", reason="checks the little-endian on-disk layout")
def test_on_disk_layout_is_raw_little_endian():
    rec = make_record("a", n=2, dim=3)
    parts = encode_row(rec).split("\t")
    assert base64.b64decode(parts[9]) == rec["features"].astype("<f4").tobytes()
    assert base64.b64decode(parts[3]) == rec["objects_id"].astype("<i8").tobytes()
    assert parts[:3] + [parts[7]] == ["a", "480", "640", "2"]
