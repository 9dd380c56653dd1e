"""`lxmert quickstart` wiring on a tiny budget: every stage runs and the report has its shape.

The real demo (defaults) takes minutes and is what `make demo` runs; here each training is
cut to a few steps so that the plumbing (world, pre-training, both fine-tunings per task,
held-out evaluation, report.json / report.md / plots) is checked in seconds.
"""

from __future__ import annotations

import json

import pytest

from lxmert.cli import main

TINY = ["model.hidden_size=32", "model.num_attention_heads=2", "model.intermediate_size=64",
        "model.l_layers=1", "model.x_layers=1", "model.r_layers=1", "train.batch_size=8"]


@pytest.mark.slow
def test_quickstart_tiny(tmp_path):
    args = ["quickstart", "--out", str(tmp_path), "--images", "40", "--feat-dim", "16", "--no-progress",
            "--ground-steps", "2"]
    for item in [*TINY, "train.max_steps=3", "train.eval_every=0", "train.save_every=0", "data.valid_limit=16"]:
        args += ["--pretrain-set", item]
    for item in [*TINY, "train.max_steps=2", "data.train_limit=32", "data.valid_limit=16"]:
        args += ["--finetune-set", item]
    assert main(args) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report) == {"vqa", "gqa", "nlvr2"}
    for row in report.values():
        assert set(row) == {"pretrained", "scratch"}
        assert all(0.0 <= v <= 1.0 for v in row.values())
    text = (tmp_path / "report.md").read_text()
    assert "| VQA |" in text and "pre-trained" in text
    assert (tmp_path / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "pretrain" / "loss.png").is_file()
    # stage 2 of pre-training started from stage 1 (matching on region descriptions only)
    ground = json.loads((tmp_path / "pretrain-ground" / "recipe.json").read_text())
    assert ground["data"]["sources"] == ["vg"] and ground["train"]["max_steps"] == 2
    assert json.loads((tmp_path / "pretrain" / "recipe.json").read_text())["model"]["init"].startswith(
        str(tmp_path / "pretrain-ground"))
    assert "stage 1" in text
    assert (tmp_path / "nlvr2" / "pretrained" / "test_predict.csv").is_file()
    # the pre-trained variant really started from the pre-training checkpoint
    saved = json.loads((tmp_path / "vqa" / "pretrained" / "recipe.json").read_text())
    assert saved["model"]["init"].startswith(str(tmp_path / "pretrain"))
    assert json.loads((tmp_path / "vqa" / "scratch" / "recipe.json").read_text())["model"]["init"] == ""
    # rerunning into the same directory replaces the demo's runs instead of failing
    assert main(args) == 0
