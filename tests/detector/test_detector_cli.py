"""``lxmert extract`` end to end on random weights: TSV + store, resume, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from lxmert.cli import main
from lxmert.detector import DetectorConfig
from lxmert.features.store import FeatureStore
from lxmert.features.tsv import read_tsv

from support.detector import assert_same_record

torch.set_num_threads(1)


@pytest.fixture()
def setup(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i, (h, w) in enumerate([(90, 120), (100, 80)]):
        rng = np.random.RandomState(i)
        small = (rng.rand(h // 8 + 1, w // 8 + 1, 3) * 255).astype(np.uint8)
        Image.fromarray(small).resize((w, h), Image.NEAREST).save(imgs / f"COCO_val2014_{i:012d}.png")
    (imgs / "notes.txt").write_text("not an image")
    cfg = tmp_path / "tiny.json"
    DetectorConfig(blocks=(1, 1, 1, 1), min_size=128, max_size=200, rpn_post_nms_topk=80,
                   pooler_resolution=4).save(cfg)
    return tmp_path, imgs, cfg


def args(tmp_path, imgs, cfg, *extra):
    return ["extract", str(imgs), "--random-init", "--config", str(cfg), "--out", str(tmp_path / "store"),
            "--quiet", *extra]


def test_extract_writes_tsv_and_store_then_resumes(setup, capsys):
    tmp_path, imgs, cfg = setup
    assert main(args(tmp_path, imgs, cfg)) == 0
    captured = capsys.readouterr()
    assert "RANDOM weights" in captured.err
    tsv = tmp_path / "store.tsv"
    rows = list(read_tsv(tsv))
    assert [r["img_id"] for r in rows] == [f"COCO_val2014_{i:012d}" for i in range(2)]
    assert all(r["num_boxes"] == 36 and r["features"].shape == (36, 2048) for r in rows)
    assert rows[0]["img_h"] == 90 and rows[0]["img_w"] == 120
    store = FeatureStore.open(tmp_path / "store")
    assert len(store) == 2
    got = store.get("COCO_val2014_000000000001")
    assert np.allclose(got["features"][:36], rows[1]["features"], rtol=1e-3, atol=1e-3)  # float16 store
    meta = json.loads((tmp_path / "store.tsv.extraction.json").read_text())
    assert meta["random_init"] is True and meta["weights"] is None
    metrics = [json.loads(x) for x in (tmp_path / "store.tsv.metrics.jsonl").read_text().splitlines()]
    assert [m["done"] for m in metrics] == [1, 2]

    # rerun: nothing to extract, TSV untouched
    before = tsv.read_bytes()
    assert main(args(tmp_path, imgs, cfg)) == 0
    assert "0 images extracted, 2 already there" in capsys.readouterr().out
    assert tsv.read_bytes() == before


def test_batch_option_gives_the_one_at_a_time_rows(setup):
    """``--batch 2`` pads the two images (90x120 and 100x80: different sizes and aspect
    ratios) into one forward pass; the rows equal those of ``--batch 1`` to float rounding."""

    tmp_path, imgs, cfg = setup
    rows = {}
    for batch in (1, 2):
        out = tmp_path / f"b{batch}"
        assert main(["extract", str(imgs), "--random-init", "--config", str(cfg), "--out", str(out),
                     "--quiet", "--no-store", "--batch", str(batch)]) == 0
        rows[batch] = list(read_tsv(tmp_path / f"b{batch}.tsv"))
        meta = json.loads((tmp_path / f"b{batch}.tsv.extraction.json").read_text())
        assert meta["batch_size"] == batch
    assert len(rows[1]) == len(rows[2]) == 2
    for a, b in zip(rows[1], rows[2]):
        assert_same_record(a, b)


def test_resume_after_crash_with_torn_row(setup, capsys):
    tmp_path, imgs, cfg = setup
    assert main(args(tmp_path, imgs, cfg)) == 0
    tsv = tmp_path / "store.tsv"
    full = tsv.read_bytes()
    lines = full.split(b"\n")
    # simulate a crash: one complete row plus half of the next one in the partial file
    tsv.rename(tmp_path / "store.tsv.partial")
    (tmp_path / "store.tsv.partial").write_bytes(lines[0] + b"\n" + lines[1][: len(lines[1]) // 2])
    capsys.readouterr()
    assert main(args(tmp_path, imgs, cfg)) == 0
    assert "1 images extracted, 1 already there" in capsys.readouterr().out
    assert not (tmp_path / "store.tsv.partial").exists()
    assert tsv.read_bytes() == full  # deterministic weights: identical to the first run


def test_adding_images_to_finished_tsv(setup, capsys):
    tmp_path, imgs, cfg = setup
    first = imgs / "COCO_val2014_000000000000.png"
    assert main(["extract", str(first), "--random-init", "--config", str(cfg), "--out",
                 str(tmp_path / "store"), "--quiet", "--no-store"]) == 0
    assert main(args(tmp_path, imgs, cfg)) == 0
    assert "1 images extracted, 1 already there" in capsys.readouterr().out
    assert len(FeatureStore.open(tmp_path / "store")) == 2


def test_refusals(setup, capsys):
    tmp_path, imgs, cfg = setup
    one = imgs / "COCO_val2014_000000000000.png"
    base = ["extract", str(one), "--random-init", "--config", str(cfg), "--out", str(tmp_path / "store"),
            "--quiet", "--no-store"]
    assert main(base) == 0
    # resuming with another detector (seed) would mix features: refused
    assert main([*base, "--seed", "3"]) == 1
    assert "different detector" in capsys.readouterr().err
    # no weights at all
    assert main(["extract", str(imgs), "--out", str(tmp_path / "s2")]) == 1
    assert "--weights is required" in capsys.readouterr().err
    assert main(["extract", str(imgs), "--weights", str(tmp_path / "nope.bin"), "--out", str(tmp_path / "s2")]) == 1
    assert "frcnn-vg-finetuned" in capsys.readouterr().err
    # an unrelated existing store is not overwritten without --force
    (tmp_path / "other").mkdir()
    assert main(["extract", str(imgs), "--random-init", "--config", str(cfg), "--out", str(tmp_path / "other"),
                 "--quiet"]) == 1
    assert "--force" in capsys.readouterr().err


def test_duplicate_ids_rejected(setup, capsys):
    tmp_path, imgs, cfg = setup
    other = tmp_path / "more"
    other.mkdir()
    (other / "COCO_val2014_000000000000.jpg").write_bytes((imgs / "COCO_val2014_000000000000.png").read_bytes())
    assert main(["extract", str(imgs), str(other), "--random-init", "--config", str(cfg), "--out",
                 str(tmp_path / "s3"), "--quiet"]) == 1
    assert "occurs twice" in capsys.readouterr().err


def test_ask_prints_top_answers(setup, capsys):
    from lxmert import LxmertConfig, LxmertForQuestionAnswering

    tmp_path, imgs, cfg = setup
    qa_cfg = LxmertConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64, l_layers=1,
                          x_layers=1, r_layers=1, num_qa_labels=4)
    LxmertForQuestionAnswering(qa_cfg, answers=["yes", "no", "red", "two"]).save_pretrained(tmp_path / "qa")
    vocab = tmp_path / "objects.txt"
    vocab.write_text("".join(f"thing{i}\n" for i in range(1600)))
    img = imgs / "COCO_val2014_000000000000.png"
    assert main(["ask", str(img), "what color is it?", "--model", str(tmp_path / "qa"), "--config", str(cfg),
                 "--random-init-detector", "--top", "3", "--objects-vocab", str(vocab)]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines[0] == "Q: what color is it?"
    ranked = [ln.split()[1] for ln in lines[1:4]]
    assert sorted(ranked) == sorted(set(ranked)) and set(ranked) <= {"yes", "no", "red", "two"}
    scores = [float(ln.split()[-1]) for ln in lines[1:4]]
    assert scores == sorted(scores, reverse=True)
    assert lines[4].startswith("objects: thing")
    assert "mean nothing" in out.err


def test_extract_with_checkpoint_file_matches_api(setup, capsys):
    """--weights reads a state dict in the demo's naming; moving the file keeps resume valid."""
    from lxmert.detector import FasterRCNN, FeatureExtractor, export_frcnn_state_dict, random_init_

    tmp_path, imgs, cfg_path = setup
    cfg = DetectorConfig.from_file(cfg_path)
    model = random_init_(FasterRCNN(cfg), seed=7)
    ckpt = tmp_path / "pytorch_model.bin"
    torch.save(export_frcnn_state_dict(model), ckpt)
    one = imgs / "COCO_val2014_000000000001.png"
    base = ["extract", str(one), "--config", str(cfg_path), "--out", str(tmp_path / "s"), "--quiet", "--no-store"]
    assert main([*base, "--weights", str(ckpt)]) == 0
    row = next(read_tsv(tmp_path / "s.tsv"))
    ref = next(iter(FeatureExtractor(model).extract([(row["img_id"], str(one))])))
    assert np.array_equal(row["features"], ref["features"]) and np.array_equal(row["boxes"], ref["boxes"])
    meta = json.loads((tmp_path / "s.tsv.extraction.json").read_text())
    assert meta["random_init"] is False and len(meta["weights_sha256"]) == 64
    moved = tmp_path / "elsewhere.bin"
    ckpt.rename(moved)
    assert main([*base, "--weights", str(moved)]) == 0
    assert "0 images extracted, 1 already there" in capsys.readouterr().out
