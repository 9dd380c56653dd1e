"""``lxmert features import|export|check|info`` end to end, in process."""

from __future__ import annotations

import numpy as np
import pytest

from lxmert.cli import main
from lxmert.features.tsv import encode_row, write_tsv


def make_record(img_id: str, n: int = 4, dim: int = 8, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "img_id": img_id, "img_h": 300, "img_w": 400, "num_boxes": n,
        "objects_id": rng.integers(0, 1600, n), "objects_conf": rng.random(n, dtype=np.float32),
        "attrs_id": rng.integers(0, 400, n), "attrs_conf": rng.random(n, dtype=np.float32),
        "boxes": rng.random((n, 4), dtype=np.float32) * 300, "features": rng.random((n, dim), dtype=np.float32),
    }


@pytest.fixture()
def tsv(tmp_path):
    path = tmp_path / "train_obj36.tsv"
    write_tsv(path, [make_record(f"img{i}", n=2 + i, seed=i) for i in range(5)], newline="\r\n")
    return path


def test_import_info_check_export_round_trip(tmp_path, tsv, capsys):
    store = tmp_path / "store"
    assert main(["features", "import", str(tsv), "--out", str(store), "--dtype", "float32", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "images     5" in out and "[5, 6, 8] float32" in out and "skipped    0" in out

    assert main(["features", "info", str(store)]) == 0
    out = capsys.readouterr().out
    assert "images       5" in out and "train_obj36.tsv  5 rows" in out

    assert main(["features", "check", str(store), "--quiet"]) == 0
    assert "OK" in capsys.readouterr().out

    out_tsv = tmp_path / "back.tsv"
    assert main(["features", "export", str(store), "--out", str(out_tsv), "--quiet"]) == 0
    assert out_tsv.read_bytes() == tsv.read_bytes()


def test_import_reports_bad_rows(tmp_path, tsv, capsys):
    lines = tsv.read_text().splitlines()
    lines.insert(2, "broken\trow")
    bad = tmp_path / "bad.tsv"
    bad.write_text("\n".join(lines) + "\n")
    store = tmp_path / "store"
    assert main(["features", "import", str(bad), "--out", str(store), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "bad.tsv, line 3: expected 10 tab-separated fields, got 2" in err
    assert not store.exists()

    assert main(["features", "import", str(bad), "--out", str(store), "--quiet", "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "skipped    1 bad row(s)" in out and "bad.tsv, line 3: expected 10" in out
    assert main(["features", "info", str(store)]) == 0
    assert "bad.tsv, line 3" in capsys.readouterr().out


def test_check_fails_on_damage_and_on_partial_store(tmp_path, tsv, capsys):
    store = tmp_path / "store"
    assert main(["features", "import", str(tsv), "--out", str(store), "--quiet"]) == 0
    with open(store / "boxes.bin", "r+b") as f:
        f.seek(3)
        byte = f.read(1)
        f.seek(3)
        f.write(bytes([byte[0] ^ 0xFF]))
    capsys.readouterr()
    assert main(["features", "check", str(store), "--quiet"]) == 1
    assert "boxes.bin: CRC-32 mismatch" in capsys.readouterr().err

    (store / "manifest.json").unlink()
    assert main(["features", "check", str(store), "--quiet"]) == 1
    assert "no manifest.json" in capsys.readouterr().err
    assert main(["features", "info", str(store)]) == 1
    assert "not a complete feature store" in capsys.readouterr().err


def test_import_refuses_existing_store_without_force(tmp_path, tsv, capsys):
    store = tmp_path / "store"
    assert main(["features", "import", str(tsv), "--out", str(store), "--quiet"]) == 0
    assert main(["features", "import", str(tsv), "--out", str(store), "--quiet"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["features", "import", str(tsv), "--out", str(store), "--quiet", "--force"]) == 0


def test_export_subset_by_id_file(tmp_path, tsv):
    store = tmp_path / "store"
    assert main(["features", "import", str(tsv), "--out", str(store), "--dtype", "float32", "--quiet"]) == 0
    ids = tmp_path / "ids.txt"
    ids.write_text("img3\nimg0\n")
    out = tmp_path / "sub.tsv"
    assert main(["features", "export", str(store), "--out", str(out), "--ids", str(ids), "--quiet"]) == 0
    want = [encode_row(make_record("img3", n=5, seed=3)), encode_row(make_record("img0", n=2, seed=0))]
    assert out.read_bytes().decode().split("\r\n")[:2] == want
