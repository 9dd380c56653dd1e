"""`lxmert quickstart --tasks retrieval` on a tiny budget: the opt-in retrieval row of the
demo (pre-trained vs scratch, and the pre-trained head zero-shot) has its shape."""

from __future__ import annotations

import json

import pytest

from lxmert.cli import main
from lxmert.data.karpathy import read_karpathy
from lxmert.quickstart import OPTIONAL_TASKS, QuickstartOptions, TASKS

TINY = ["model.hidden_size=32", "model.num_attention_heads=2", "model.intermediate_size=64",
        "model.l_layers=1", "model.x_layers=1", "model.r_layers=1", "train.batch_size=8"]


def test_retrieval_is_opt_in():
    assert "retrieval" in OPTIONAL_TASKS and "retrieval" not in TASKS
    assert QuickstartOptions().tasks == TASKS  # `make demo` runs what it ran before


@pytest.mark.slow
def test_quickstart_retrieval_tiny(tmp_path):
    args = ["quickstart", "--out", str(tmp_path), "--images", "40", "--feat-dim", "16", "--no-progress",
            "--ground-steps", "2", "--tasks", "retrieval", "--threads", "1"]
    for item in [*TINY, "train.max_steps=3", "train.eval_every=0", "train.save_every=0", "data.valid_limit=16"]:
        args += ["--pretrain-set", item]
    for item in [*TINY, "train.max_steps=2", "data.train_limit=32", "data.valid_limit=4",
                 "retrieval.hard_pool=2"]:
        args += ["--finetune-set", item]
    assert main(args) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report) == {"retrieval"} and set(report["retrieval"]) == {"pretrained", "scratch"}
    assert all(0.0 <= v <= 1.0 for v in report["retrieval"].values())
    details = json.loads((tmp_path / "report-details.json").read_text())["retrieval"]
    assert {"zero_shot", "pretrained", "scratch"} <= set(details)
    split = read_karpathy(tmp_path / "world/retrieval/dataset_world.json", "test")
    for variant in ("pretrained", "scratch"):
        test = details[variant]["test"]
        assert report["retrieval"][variant] == round(test["mean_recall_dup"], 4)
        assert test["images"] == len(split.image_ids) and test["scored_pair_fraction"] == 1.0
        rankings = json.loads((tmp_path / "retrieval" / variant / "test_rankings.json").read_text())
        assert len(rankings["text_to_image"]) == len(split.sentences)
    saved = json.loads((tmp_path / "retrieval" / "pretrained" / "recipe.json").read_text())
    assert saved["model"]["init"].startswith(str(tmp_path / "pretrain"))
    text = (tmp_path / "report.md").read_text()
    assert "| RETRIEVAL |" in text and "not fine-tuned" in text
    assert (tmp_path / "comparison.png").read_bytes()[:4] == b"\x89PNG"
