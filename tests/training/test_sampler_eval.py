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


def test_outputs_restore_file_order_of_every_per_example_field(trained):
    """`Task.outputs` with length sorting: ids, per-example rows and (zero-padded) sequence
    outputs come back in file order; batch-level values are dropped; the loss meter sees
    every example once."""
    from dataclasses import dataclass

    from lxmert.api import make_task
    from lxmert.training.recipe import load_recipe
    from lxmert.training.task import LossMeter

    @dataclass
    class Out:
        loss: torch.Tensor
        score: torch.Tensor
        sequence: torch.Tensor
        layers: tuple

    def model(input_ids, attention_mask, **kw):
        ids = (input_ids * attention_mask).float()
        return Out(loss=ids.sum() / len(ids), score=ids.sum(1, keepdim=True), sequence=ids,
                   layers=(ids[:, :1], ids * 2))

    world, _ = trained
    task = make_task(load_recipe("demo-vqa", ["data.eval_batch_size=8"]), world)
    dataset = task.make_dataset("test", train=False)
    assert task.eval_lengths(dataset) is not None
    meter = LossMeter()
    pairs = list(task.outputs(model, dataset, torch.device("cpu"), meter))
    ids = [q for batch, _ in pairs for q in batch.meta["question_id"]]
    assert ids == dataset.question_ids
    assert [b.size for b, _ in pairs] == [min(8, len(dataset) - i) for i in range(0, len(dataset), 8)]
    position = 0
    for batch, out in pairs:
        assert out.loss is None and batch.inputs == {}
        for row in range(batch.size):
            own = torch.as_tensor(dataset[position]["input_ids"]).float()
            assert float(out.score[row, 0]) == float(own.sum())
            seq = out.sequence[row]
            assert torch.equal(seq[:len(own)], own) and not seq[len(own):].any()  # zeros past its own length
            assert torch.equal(out.layers[1][row][:len(own)], 2 * own)
            position += 1
    expected = sum(float(torch.as_tensor(dataset[i]["input_ids"]).sum()) for i in range(len(dataset)))
    assert meter.mean == pytest.approx(expected / len(dataset))


def test_pretraining_validation_does_not_depend_on_the_batches(trained, tmp_path):
    """Each pre-training loss is a mean over its own targets; with matching kept to region
    descriptions (demo-pretrain) a length-sorted batch may hold no matching example at all,
    so a batch-size weighting would make the split's losses depend on the batching."""
    world, _ = trained
    out = tmp_path / "pre"
    assert main(["pretrain", "--data", str(world), "--out", str(out), "--config", "demo-pretrain",
                 "--max-steps", "4", "--batch-size", "16", *_sets(*TINY)]) == 0
    metrics = {}
    for batching in ("random", "length"):
        m = tmp_path / f"{batching}.json"
        assert main(["evaluate", "pretrain", "--data", str(world), "--checkpoint", str(out / "last"),
                     "--out", str(m), *_sets(f"data.batching={batching}", "data.eval_batch_size=8")]) == 0
        metrics[batching] = json.loads(m.read_text())
    assert metrics["length"].keys() == metrics["random"].keys() and "matched_loss" in metrics["random"]
    for key, value in metrics["random"].items():
        assert metrics["length"][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    weights = json.loads((out / "recipe.json").read_text())["pretrain"]["loss_weights"]
    assert weights, "demo-pretrain scales some losses"
    parts = sum(v * weights.get(k[:-len("_loss")], 1.0) for k, v in metrics["random"].items() if k.endswith("_loss"))
    assert metrics["random"]["loss"] == pytest.approx(parts, rel=1e-6), "the total: the model's weighted sum of the means"
