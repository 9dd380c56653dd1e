"""Evaluation and prediction sorted by length give the same results as file order, through the
real commands (`lxmert evaluate` / `lxmert predict`) on a generated world, for VQA, GQA and
NLVR2: prediction files byte-identical, metrics equal (the mean loss to float rounding).

Why answers can be identical but logits need not be: a length-sorted batch pads an example
to another length and groups it with other examples, so the GEMMs and the softmax sums run
over other shapes and may round differently in the last bits (fp32). An answer (arg-max)
could then only flip where its top two logits are that close; the test measures how close
the logits are and checks that no answer moves.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lxmert.api import load_for_inference
from lxmert.cli import main

TINY = ["model.hidden_size=32", "model.num_attention_heads=2", "model.intermediate_size=64",
        "model.l_layers=1", "model.x_layers=1", "model.r_layers=1", "train.progress=false",
        "data.num_workers=0", "train.eval_every=0", "data.valid_limit=32"]
SPLITS = {"vqa": "test", "gqa": "testdev", "nlvr2": "test"}
SUFFIX = {"vqa": "json", "gqa": "json", "nlvr2": "csv"}


def _sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture(autouse=True)
def _threads():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    from lxmert.data.synth import SynthConfig, generate_world

    root = tmp_path_factory.mktemp("evalorder")
    world = root / "world"
    generate_world(world, SynthConfig(images=120, feat_dim=16, seed=5, test_fraction=0.25), build_store=True,
                   progress=False)
    checkpoints = {}
    for task in SPLITS:
        out = root / task
        assert main(["finetune", task, "--data", str(world), "--out", str(out), "--config", f"demo-{task}",
                     "--max-steps", "30", "--batch-size", "16", "--lr", "2e-3", *_sets(*TINY)]) == 0
        checkpoints[task] = out / "checkpoints" / "step-00000030"
    return world, checkpoints


@pytest.mark.parametrize("task", list(SPLITS))
def test_sorted_evaluation_gives_the_same_files_and_metrics(trained, tmp_path, task):
    world, checkpoints = trained
    files, metrics = {}, {}
    for batching in ("random", "length"):  # random = file order, what evaluation did before
        sets = _sets(f"data.batching={batching}", "data.eval_batch_size=8")
        pred = tmp_path / f"{batching}.{SUFFIX[task]}"
        assert main(["predict", task, "--data", str(world), "--checkpoint", str(checkpoints[task]),
                     "--split", SPLITS[task], "--out", str(pred), *sets]) == 0
        files[batching] = pred.read_bytes()
        m = tmp_path / f"{batching}-metrics.json"
        assert main(["evaluate", task, "--data", str(world), "--checkpoint", str(checkpoints[task]),
                     "--split", SPLITS[task], "--out", str(m), *sets]) == 0
        metrics[batching] = json.loads(m.read_text())
    assert files["length"] == files["random"], "prediction files differ"
    loss = {k: v.pop("loss") for k, v in metrics.items()}
    assert metrics["length"] == metrics["random"]
    assert loss["length"] == pytest.approx(loss["random"], rel=1e-5)


def test_sorted_batches_pad_less_and_outputs_come_back_in_file_order(trained):
    world, checkpoints = trained
    runs = {}
    for batching in ("random", "length"):
        adapter, model, device = load_for_inference("vqa", world, checkpoints["vqa"],
                                                    [f"data.batching={batching}", "data.eval_batch_size=8"], "cpu")
        dataset = adapter.make_dataset("test", train=False)
        tokens = sum(int(b.inputs["input_ids"].numel()) for b in adapter.eval_batches(dataset, device))
        with torch.no_grad():
            ids, scores, _ = adapter.answer_scores(model, dataset, device)
        runs[batching] = (tokens, ids, scores)
    assert runs["length"][1] == runs["random"][1] == dataset.question_ids  # file order
    assert runs["length"][0] < 0.9 * runs["random"][0], "sorting saves padding"
    # the logits agree to float rounding (other shapes may round differently), the answers exactly
    torch.testing.assert_close(runs["length"][2], runs["random"][2], rtol=1e-5, atol=1e-5)
    assert torch.equal(runs["length"][2].argmax(-1), runs["random"][2].argmax(-1))
