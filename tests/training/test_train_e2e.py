"""End to end on a small generated world, through the real commands.

- a tiny model fine-tuned on VQA from scratch: the loss falls and held-out accuracy beats
  the majority answer; `evaluate` and `predict` write the official numbers and files;
- `lxmert pretrain` killed with SIGKILL mid-run and resumed ends bit-exact equal to an
  uninterrupted run (CPU);
- pre-training checkpoints are loadable by `from_pretrained` and feed fine-tuning with
  the QA head remapped.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lxmert.cli import main
from lxmert.training.checkpointing import latest_checkpoint

TINY = ["model.hidden_size=32", "model.num_attention_heads=2", "model.intermediate_size=64",
        "model.l_layers=1", "model.x_layers=1", "model.r_layers=1", "train.progress=false",
        "data.num_workers=0"]


def _sets(*items: str) -> list[str]:
    out: list[str] = []
    for item in items:
        out += ["--set", item]
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from lxmert.data.synth import SynthConfig, generate_world

    out = tmp_path_factory.mktemp("world")
    generate_world(out, SynthConfig(images=120, feat_dim=16, seed=3, test_fraction=0.25), build_store=True, progress=False)
    return out


@pytest.fixture(autouse=True)
def _threads():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def _majority_accuracy(world: Path) -> float:
    from lxmert.evaluation import get_metric

    train = json.loads((world / "vqa" / "train.json").read_text())
    test = json.loads((world / "vqa" / "test.json").read_text())
    top = Counter(max(e["label"], key=e["label"].get) for e in train if e["label"]).most_common(1)[0][0]
    return get_metric("vqa")({e["question_id"]: top for e in test}, test)["accuracy"]


def test_vqa_from_scratch_learns_and_beats_majority(world, tmp_path, capsys):
    run = tmp_path / "vqa"
    args = ["finetune", "vqa", "--data", str(world), "--out", str(run), "--config", "demo-vqa",
            "--epochs", "10", "--batch-size", "16", "--lr", "2e-3", *_sets(*TINY, "data.train_limit=0",
            "data.valid=\"minival\"", "train.log_every=4")]
    assert main(args) == 0
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["split"] == "train"]
    assert sum(losses[-3:]) < 0.7 * sum(losses[:3]), losses
    assert (run / "best" / "model.safetensors").is_file() and (run / "best" / "answers.json").is_file()
    saved = json.loads((run / "recipe.json").read_text())
    assert saved["optim"]["lr"] == 2e-3 and saved["train"]["epochs"] == 10

    capsys.readouterr()
    assert main(["evaluate", "vqa", "--data", str(world), "--checkpoint", str(run / "best"),
                 "--split", "test", "--out", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    majority = _majority_accuracy(world)
    assert metrics["accuracy"] > majority + 0.05, (metrics["accuracy"], majority)
    assert "accuracy/yes/no" in metrics

    out = tmp_path / "test_predict.json"
    assert main(["predict", "vqa", "--data", str(world), "--checkpoint", str(run / "best"), "--out", str(out)]) == 0
    preds = json.loads(out.read_text())
    test = json.loads((world / "vqa" / "test.json").read_text())
    assert {p["question_id"] for p in preds} == {e["question_id"] for e in test}
    assert all(isinstance(p["answer"], str) for p in preds)

    # the compiled model (trace-only backend: no C++ compiler needed) predicts the same answers
    compiled = tmp_path / "test_predict_compiled.json"
    try:
        assert main(["predict", "vqa", "--data", str(world), "--checkpoint", str(run / "best"), "--out",
                     str(compiled), "--compile", "aot_eager"]) == 0
    finally:
        torch._dynamo.reset()
    assert json.loads(compiled.read_text()) == preds

    # bf16 autocast on CPU (AMX): the same metrics to within bf16 rounding of the logits
    assert main(["evaluate", "vqa", "--data", str(world), "--checkpoint", str(run / "best"),
                 "--split", "test", "--out", str(tmp_path / "m16.json"), "--amp", "bf16"]) == 0
    assert abs(json.loads((tmp_path / "m16.json").read_text())["accuracy"] - metrics["accuracy"]) < 0.03

    # int8 copy of the trained model, checked on the labelled test split (real questions)
    capsys.readouterr()
    assert main(["quantize", str(run / "best"), str(tmp_path / "int8"), "--check-data", str(world),
                 "--task", "vqa", "--split", "test"]) == 0
    report = json.loads((tmp_path / "int8" / "agreement.json").read_text())
    assert report["samples"] == len(test) and report["split"] == "test"
    assert abs(report["accuracy_fp32"] - metrics["accuracy"]) < 1e-9  # the same scoring as `evaluate`
    assert report["top1_agreement"] >= 0.9 and abs(report["accuracy_int8"] - report["accuracy_fp32"]) < 0.05
    # the weights' rounding alone (fp32 activations) is the ceiling of the int8 model's agreement
    assert report["weight_rounding_agreement"] >= report["top1_agreement"] - 0.02
    assert report["activations"] in ("uint8", "uint7") and report["median_margin"] > 0
    assert "same top answer" in capsys.readouterr().out


def test_bf16_autocast_trains_on_cpu_and_fp16_is_refused(world, tmp_path):
    def losses(amp: str) -> list[float]:
        run = tmp_path / amp
        assert main(["finetune", "vqa", "--data", str(world), "--out", str(run), "--config", "demo-vqa",
                     "--max-steps", "6", "--batch-size", "16", "--amp", amp,
                     *_sets(*TINY, "train.log_every=1", "train.eval_every=0")]) == 0
        assert json.loads((run / "recipe.json").read_text())["train"]["amp"] == amp
        return [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()
                if json.loads(x)["split"] == "train"]

    fp32, bf16 = losses("none"), losses("bf16")
    assert len(bf16) == 6 and all(math.isfinite(x) for x in bf16)
    # the same run to within bf16 rounding (autocast: bf16 GEMMs, fp32 weights and softmax)
    assert all(abs(a - b) < 0.02 * abs(a) for a, b in zip(fp32, bf16)), (fp32, bf16)
    assert fp32 != bf16  # it did run in bf16
    assert main(["finetune", "vqa", "--data", str(world), "--out", str(tmp_path / "fp16"), "--config", "demo-vqa",
                 "--max-steps", "2", "--amp", "fp16", *_sets(*TINY)]) != 0
    assert not (tmp_path / "fp16").exists()  # refused before anything is written


def _pretrain_cmd(world: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lxmert", "pretrain", "--data", str(world), "--out", str(out),
            "--config", "demo-pretrain", "--max-steps", "10", "--save-every", "3", "--batch-size", "8",
            *_sets(*TINY, "train.eval_every=0", "data.valid_limit=16", "train.log_every=1"), *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.mark.slow
def test_sigkill_and_resume_is_bit_exact(world, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    subprocess.run(_pretrain_cmd(world, full), check=True, env=_env(), capture_output=True)

    proc = subprocess.Popen(_pretrain_cmd(world, cut), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            ckpt = (cut / "last").is_file() and latest_checkpoint(cut)
            if ckpt and ckpt.name >= "step-00000006":
                break
            if proc.poll() is not None:
                pytest.fail("the run finished before it could be killed")
            time.sleep(0.05)
        else:
            pytest.fail("no checkpoint appeared")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = latest_checkpoint(cut).name
    assert killed_at < "step-00000010"
    subprocess.run(_pretrain_cmd(world, cut, "--resume"), check=True, env=_env(), capture_output=True)

    a = load_file(str(latest_checkpoint(full) / "model.safetensors"))
    b = load_file(str(latest_checkpoint(cut) / "model.safetensors"))
    assert latest_checkpoint(cut).name == "step-00000010" == latest_checkpoint(full).name
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resuming from {killed_at}"
    # metrics.jsonl describes one history: no duplicated steps from the killed process
    steps = [json.loads(x)["step"] for x in (cut / "metrics.jsonl").read_text().splitlines()
             if json.loads(x)["split"] == "train"]
    assert steps == list(range(1, 11))

    # the checkpoint is a model directory: fine-tune VQA from it, head remapped by answer text
    from lxmert import LxmertForPreTraining, LxmertForQuestionAnswering
    from lxmert.text import AnswerTable

    LxmertForPreTraining.from_pretrained(latest_checkpoint(cut))
    vqa = AnswerTable.from_file(world / "vqa" / "trainval_label2ans.json")
    qa = LxmertForQuestionAnswering.from_pretrained(latest_checkpoint(cut), answers=vqa.answers, strict=False)
    assert qa.config.num_qa_labels == len(vqa)


def test_compiled_training_matches_eager(world, tmp_path):
    """`--compile aot_eager` (trace only, no C++ compiler needed) trains to the same weights."""
    runs = {}
    try:
        for name, extra in (("eager", []), ("compiled", ["--compile", "aot_eager"])):
            out = tmp_path / name
            args = ["pretrain", "--data", str(world), "--out", str(out), "--config", "demo-pretrain",
                    "--max-steps", "4", "--batch-size", "8",
                    *_sets(*TINY, "train.eval_every=0", "data.valid_limit=16"), *extra]
            assert main(args) == 0
            runs[name] = load_file(str(latest_checkpoint(out) / "model.safetensors"))
    finally:
        torch._dynamo.reset()
    saved = json.loads((tmp_path / "compiled" / "recipe.json").read_text())
    assert saved["train"]["compile"] == "aot_eager"
    assert runs["eager"].keys() == runs["compiled"].keys()
    for key, value in runs["eager"].items():
        torch.testing.assert_close(runs["compiled"][key], value, rtol=1e-4, atol=1e-5, msg=key)
