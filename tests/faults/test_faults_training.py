"""Issue 21, training runs: nothing lost, nothing silently wrong, no raw traceback.

The table format is tests/support/faults.py's. Every case runs the real command (`lxmert
finetune` / `pretrain`, in process, or as a subprocess where a signal or an OS limit must
reach a real process) on the small generated world with a tiny model:

- group 1: a run directory holding a run is never written to (the recipe stays byte for
  byte), two runs into one directory are refused by a lock;
- group 4: pre-training checks the stores' detector ids against the model's label counts
  before the first step; `lxmert extract` records its detector's class counts;
- group 5: a checkpoint write that fails (file-size limit: the same torch error as a full
  disk) is one line naming the file, leaves no partial directory, keeps `last`; a NaN loss,
  an unlabelled training split: one line;
- group 6: SIGTERM / SIGINT save a checkpoint and exit 143 / 130; resuming ends bit-exact;
- group 8: every split and store is read before the first step; a checkpoint precedes
  each scheduled evaluation, and a resumed run redoes an evaluation that did not finish;
- group 9: `convert --to hf` directories and `--to original` `.pth` files are `--init`s.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import lxmert.api
from support.faults import TINY, Case, Cli, Env, check_table, cli, one_line, run_case, sets
from lxmert.errors import DataFormatError
from lxmert.training.checkpointing import latest_checkpoint
from lxmert.training.hooks import TrainerHook

# ---------------------------------------------------------------------------- helpers


def finetune(env: Env, out: Path | None = None, *args: Any, task: str = "vqa", data: Path | None = None) -> Cli:
    """`lxmert finetune TASK` on the world (tiny model, 8 per batch) into `out` (env.tmp/run)."""
    return cli("finetune", task, "--data", data or env.world(), "--out", out or env.tmp / "run", "--config",
               f"demo-{task}", *sets(*TINY, "train.batch_size=8", "data.valid_limit=16"), *args)


def pretrain(env: Env, *args: Any, out: Path | None = None) -> Cli:
    return cli("pretrain", "--data", env.world(), "--out", out or env.tmp / "run", "--config", "demo-pretrain",
               *sets(*TINY, "train.batch_size=8", "data.valid_limit=16", "train.eval_every=0"), *args)


def digest(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` (what must stay byte-identical)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def nothing_left(env: Env, result: Any) -> None:
    """A run refused at set-up leaves no directory behind (not even its lock)."""
    if isinstance(result, Cli):
        one_line(env, result)
    assert not (env.tmp / "run").exists(), sorted(p.name for p in (env.tmp / "run").iterdir())


def steps_of(run: Path, split: str = "train") -> list[int]:
    return [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(x)["split"] == split]


def unlabelled_split(env: Env, name: str = "unlabelled.json") -> Path:
    entries = json.loads((env.world() / "vqa" / "train.json").read_text())[:40]
    path = env.tmp / name
    path.write_text(json.dumps([{k: v for k, v in e.items() if k not in ("label", "answers")} for e in entries]))
    return path


# ---------------------------------------------------------------------------- group 1: run directories


def rerun_finished(env: Env) -> Any:
    run = env.tmp / "run"
    shutil.copytree(env.runs("vqa"), run)
    before = digest(run)
    again = finetune(env, run, "--max-steps", "2", "--lr", "1e-3")
    return before, again


def check_rerun(env: Env, result: Any) -> None:
    before, again = result
    run = env.tmp / "run"
    assert digest(run) == before, "the finished run's files changed (recipe.json rewritten?)"
    assert again.rc == 1 and "already holds a run (last, checkpoints, best)" in again.err, again.err
    one_line(env, again)
    m = cli("evaluate", "vqa", "--data", env.world(), "--checkpoint", run / "best", "--out", env.tmp / "m.json")
    assert m.rc == 0, m.err
    assert json.loads((env.tmp / "m.json").read_text())["accuracy"] >= 0.0


class SecondRun(TrainerHook):
    """Starts a second `lxmert finetune` into the same directory while the first holds it."""

    def __init__(self, env: Env) -> None:
        self.env, self.result = env, None

    def on_setup(self, model: Any, optimizer: Any) -> None:
        if self.result is None:
            self.result = Cli(-1, "", "")
            self.result = finetune(self.env, self.env.tmp / "run", "--max-steps", "2", "--lr", "0.5")


def concurrent_runs(env: Env) -> Any:
    second = SecondRun(env)
    env.monkeypatch.setattr(lxmert.api, "training_hooks", lambda recipe: [second])
    first = finetune(env, env.tmp / "run", "--max-steps", "3", "--lr", "2e-3")
    return first, second.result


def check_concurrent(env: Env, result: Any) -> None:
    first, second = result
    run = env.tmp / "run"
    assert second.rc == 1 and re.search(rf"{re.escape(str(run))} is in use by pid {os.getpid()}; wait for it",
                                        second.err), second.err
    one_line(env, second)
    assert first.rc == 0, first.err
    saved = json.loads((run / "recipe.json").read_text())
    assert saved["optim"]["lr"] == 2e-3, "the second run's recipe replaced the first's"
    assert latest_checkpoint(run).name == "step-00000003" and steps_of(run)[-1] == 3


def stale_lock(env: Env) -> Cli:
    (env.tmp / "run").mkdir()
    (env.tmp / "run" / ".lock").write_text("pid 999999\n")  # left by a killed run: flock died with it
    return finetune(env, env.tmp / "run", "--max-steps", "2")


# ---------------------------------------------------------------------------- group 4: label ids


def extract_other_detector(env: Env) -> Cli:
    import numpy as np
    from PIL import Image

    from lxmert.detector import DetectorConfig

    imgs = env.tmp / "imgs"
    imgs.mkdir()
    small = (np.random.RandomState(0).rand(12, 16, 3) * 255).astype(np.uint8)
    Image.fromarray(small).resize((120, 90), Image.NEAREST).save(imgs / "img0.png")
    cfg = env.tmp / "det.json"
    DetectorConfig(blocks=(1, 1, 1, 1), min_size=128, max_size=200, rpn_post_nms_topk=80, pooler_resolution=4,
                   num_classes=1700, num_attrs=450).save(cfg)
    torch.manual_seed(0)
    return cli("extract", imgs, "--random-init", "--config", cfg, "--out", env.tmp / "store", "--quiet")


def check_detector_counts(env: Env, result: Cli) -> None:
    labels = json.loads((env.tmp / "store" / "manifest.json").read_text())["labels"]
    assert (labels["num_object_labels"], labels["num_attr_labels"]) == (1700, 450), labels


# ---------------------------------------------------------------------------- group 5: checkpoint writes

_LIMITED = textwrap.dedent("""
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write beyond the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))
    from lxmert.cli import main
    sys.exit(main(sys.argv[2:]))
""")


def save_beyond_limit(file: str) -> Any:
    """A run resumed under a file-size limit that the checkpoint's `file` exceeds (the OS
    refuses the write as a full disk would; torch reports it as a RuntimeError of its zip
    writer, inline_container.cc)."""
    def run(env: Env) -> Any:
        out = env.tmp / "run"
        assert finetune(env, out, "--max-steps", "2", "--save-every", "2", *sets("train.eval_every=0")).rc == 0
        first = latest_checkpoint(out)
        sizes = {p.name: p.stat().st_size for p in first.iterdir()}
        weights, state = sizes["model.safetensors"], sizes["trainer_state.pt"]
        assert state > weights * 1.5, sizes
        limit = weights // 2 if file == "model.safetensors" else (weights + state) // 2
        args = ["finetune", "vqa", "--data", str(env.world()), "--out", str(out), "--config", "demo-vqa",
                "--resume", "--max-steps", "4", "--save-every", "2",
                *sets(*TINY, "train.batch_size=8", "data.valid_limit=16", "train.eval_every=0")]
        done = subprocess.run([sys.executable, "-c", _LIMITED, str(limit), *args], capture_output=True, text=True,
                              timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
        return Cli(done.returncode, done.stdout, done.stderr)
    return run


def checkpoint_kept(env: Env, result: Cli) -> None:
    one_line(env, result)
    out = env.tmp / "run"
    assert latest_checkpoint(out).name == "step-00000002", "last must still name the complete checkpoint"
    left = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert left == ["step-00000002"], f"a partial checkpoint was left: {left}"
    assert (latest_checkpoint(out) / "trainer_state.pt").is_file()


def last_is_a_directory(env: Env) -> Cli:
    (env.tmp / "run" / "last").mkdir(parents=True)
    return finetune(env, env.tmp / "run", "--resume", "--max-steps", "2", *sets("train.eval_every=0"))


def nan_loss(env: Env) -> Cli:
    return finetune(env, None, "--max-steps", "3", *sets("model.initializer_range=1e30"))


# ---------------------------------------------------------------------------- group 6: signals

_SIGNAL_RUN = ["--config", "demo-pretrain", "--max-steps", "24", "--save-every", "8", "--batch-size", "8",
               *sets(*TINY, "train.eval_every=0", "data.valid_limit=16", "train.log_every=1")]


def _env1() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass
class Stopped:
    """What a signalled process left: exit code and output (not a Cli: its exit is not 0)."""

    rc: int
    out: str
    err: str


def signalled(sig: int) -> Any:
    """SIGTERM (what schedulers send) or SIGINT to a running `lxmert pretrain`."""
    def run(env: Env) -> Any:
        out = env.tmp / "cut"
        cmd = [sys.executable, "-m", "lxmert", "pretrain", "--data", str(env.world()), "--out", str(out),
               *_SIGNAL_RUN]
        proc = subprocess.Popen(cmd, env=_env1(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 240
        try:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    pytest.fail(f"the run ended before the signal: {proc.communicate()}")
                if (out / "metrics.jsonl").is_file() and any(s >= 3 for s in steps_of(out)):
                    break
                time.sleep(0.02)
            else:
                pytest.fail("the run made no progress")
            proc.send_signal(sig)
            stdout, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return Stopped(proc.returncode, stdout, stderr)
    return run


def stopped_cleanly(code: int, name: str) -> Any:
    def check(env: Env, result: Stopped) -> None:
        out = env.tmp / "cut"
        assert result.rc == code, (result.rc, result.err)
        assert "Traceback" not in result.err, result.err
        ckpt = latest_checkpoint(out)
        assert ckpt is not None and (ckpt / "trainer_state.pt").is_file() and (ckpt / "model.safetensors").is_file()
        step = int(ckpt.name.split("-")[1])
        assert 3 <= step < 24, ckpt
        last_line = result.err.strip().splitlines()[-1]
        assert re.fullmatch(rf"lxmert pretrain: error: {name} received: stopped after step {step} with checkpoint "
                            rf"\S+{ckpt.name}; continue with the same command and --resume", last_line), last_line
        assert steps_of(out)[-1] == step
        assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.startswith(".")) == []
        if name == "SIGTERM":
            resumed_is_bit_exact(env, out)
    return check


def resumed_is_bit_exact(env: Env, cut: Path) -> None:
    """`--resume` after the signal ends where an uninterrupted run ends, bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocess ran
    try:
        full = env.tmp / "full"
        for out, extra in ((full, []), (cut, ["--resume"])):
            r = cli("pretrain", "--data", env.world(), "--out", out, *_SIGNAL_RUN, *extra)
            assert r.rc == 0, r.err
    finally:
        torch.set_num_threads(threads)
    a = load_file(str(latest_checkpoint(full) / "model.safetensors"))
    b = load_file(str(latest_checkpoint(cut) / "model.safetensors"))
    assert latest_checkpoint(cut).name == latest_checkpoint(full).name == "step-00000024"
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "resumed run differs"
    assert steps_of(cut) == list(range(1, 25)), "metrics.jsonl must describe one history"


# ---------------------------------------------------------------------------- group 8: lost at the end


def failing_evaluation(env: Env) -> Cli:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise DataFormatError("simulated: the evaluation failed")

    env.monkeypatch.setattr("lxmert.tasks.vqa.VQATask.score", fail)
    return finetune(env, None, "--max-steps", "4", *sets("train.eval_every=2", "train.log_every=1"))


def saved_before_evaluating(env: Env, result: Cli) -> None:
    one_line(env, result)
    run = env.tmp / "run"
    assert latest_checkpoint(run).name == "step-00000002", "no checkpoint before the evaluation"
    assert steps_of(run, "valid") == []


def resume_after_failed_evaluation(env: Env) -> Cli:
    assert failing_evaluation(env).rc == 1
    env.monkeypatch.undo()
    return finetune(env, None, "--max-steps", "4", "--resume", *sets("train.eval_every=2", "train.log_every=1"))


def evaluation_redone(env: Env, result: Cli) -> None:
    run = env.tmp / "run"
    assert re.search(r"resumed from \S+/step-00000002 \(step 2,", result.out), result.out
    assert steps_of(run, "valid") == [2, 4], steps_of(run, "valid")  # step 2's evaluation redone
    assert steps_of(run) == [1, 2, 3, 4]
    assert (run / "best" / "model.safetensors").is_file() and latest_checkpoint(run).name == "step-00000004"


def no_valid_split(env: Env) -> Cli:
    return finetune(env, None, "--max-steps", "3", *sets('data.valid=""'))


def check_no_valid(env: Env, result: Cli) -> None:
    run = env.tmp / "run"
    assert "warning: no validation split (data.valid is empty): no best/ is kept" in result.out + result.err
    assert not (run / "best").exists()
    assert latest_checkpoint(run).name == "step-00000003"
    assert json.loads((run / "result.json").read_text())["best_checkpoint"] is None


def missing_image_in_valid(env: Env) -> Cli:
    entries = json.loads((env.world() / "vqa" / "minival.json").read_text())
    entries[3]["img_id"] = "no_such_image"
    (env.tmp / "valid.json").write_text(json.dumps(entries))
    return finetune(env, None, "--max-steps", "2", *sets(f'data.valid="{env.tmp / "valid.json"}"'))


# ---------------------------------------------------------------------------- group 9: --init


def init_from(kind: str, answers: bool = True) -> Any:
    """Fine-tune VQA from the shared run's best/ converted to `kind` ("hf" or "original")."""
    def run(env: Env) -> Any:
        best = env.runs("vqa") / "best"
        target = env.tmp / ("hf" if kind == "hf" else "model.pth")
        assert cli("convert", best, target, "--to", kind).rc == 0
        if not answers:
            (env.tmp / "model.answers.json").unlink()
        # one update at a learning rate too small to move the weights: the head must equal
        # the source's (remapped by answer text, not started fresh)
        return finetune(env, None, "--init", target, "--max-steps", "1", "--lr", "1e-12",
                        *sets("train.eval_every=0", "optim.warmup=0.0", "optim.weight_decay=0.0"))
    return run


def head_carried_over(env: Env, result: Cli) -> None:
    source = load_file(str(env.runs("vqa") / "best" / "model.safetensors"))
    tuned = load_file(str(latest_checkpoint(env.tmp / "run") / "model.safetensors"))
    for key in ("answer_head.logit_fc.3.weight", "answer_head.logit_fc.3.bias", "lxmert.pooler.dense.weight"):
        torch.testing.assert_close(tuned[key], source[key], rtol=0, atol=1e-6, msg=key)


# ---------------------------------------------------------------------------- the table

CASES: list[Case] = [
    # group 1: run directories
    Case("re-run a finished run without --resume", 1, rerun_finished,
         "handled: refused in one line; every file byte-identical; evaluate --checkpoint R/best still works",
         check_rerun),
    Case("a second run into a directory in use", 1, concurrent_runs,
         "handled: the second is refused naming the first's pid; the first finishes unharmed", check_concurrent),
    Case("a lock file left by a killed run", 1, stale_lock, "handled: the directory is free again",
         lambda env, r: None if latest_checkpoint(env.tmp / "run").name == "step-00000002" else pytest.fail(r.err)),
    # group 4: detector ids against the model's label counts, before the first step
    Case("pre-training: object ids beyond num_object_labels", 4,
         lambda env: pretrain(env, "--max-steps", "2", *sets("model.num_object_labels=100")),
         r"refused: ^lxmert pretrain: error: feature store \S+/features/store: object ids span \d+\.\.\d+, but the "
         r"model has num_object_labels=100", nothing_left),
    Case("pre-training: attribute ids beyond num_attr_labels", 4,
         lambda env: pretrain(env, "--max-steps", "2", *sets("model.num_attr_labels=20")),
         r"refused: ^lxmert pretrain: error: feature store \S+/features/store: attribute ids span \d+\.\.\d+, but "
         r"the model has num_attr_labels=20", nothing_left),
    Case("pre-training without the label objectives needs no label check", 4,
         lambda env: pretrain(env, "--max-steps", "2", *sets("model.num_object_labels=100", "model.num_attr_labels=20",
                                                             "pretrain.visual_obj_loss=false",
                                                             "pretrain.visual_attr_loss=false")),
         "handled: trains", lambda env, r: None if latest_checkpoint(env.tmp / "run") else pytest.fail(r.err)),
    Case("extract with a detector of 1700 classes", 4, extract_other_detector,
         "handled: the store records the detector's class counts", check_detector_counts),
    # group 5: raw tracebacks and checkpoint writes
    Case("checkpoint trainer state beyond the disk's room (torch inline_container error)", 5,
         save_beyond_limit("trainer_state.pt"),
         r"refused: ^lxmert finetune: error: \S+/checkpoints/\.step-00000004\.tmp/trainer_state\.pt: File too large$",
         checkpoint_kept),
    Case("checkpoint weights beyond the disk's room", 5, save_beyond_limit("model.safetensors"),
         r"refused: ^lxmert finetune: error: \S+/checkpoints/step-00000004: File too large$", checkpoint_kept),
    Case("the `last` marker is a directory", 5, last_is_a_directory,
         r"refused: ^lxmert finetune: error: \S+ -> \S+/run/last: Is a directory$", one_line),
    Case("non-finite loss", 5, nan_loss,
         r"refused: ^lxmert finetune: error: non-finite loss at step 1 \(epoch 0, batch 0\): loss=nan; stopping\. "
         r"Last complete checkpoint: none\.", one_line),
    Case("unlabelled training split", 5,
         lambda env: finetune(env, None, "--max-steps", "2", *sets(f'data.train="{unlabelled_split(env)}"')),
         r"refused: ^lxmert finetune: error: vqa split \['\S+/unlabelled\.json'\] \(data\.train\) has no labels: "
         r"\S+/unlabelled\.json", nothing_left),
    # group 6: signals
    Case("SIGTERM during pre-training", 6, signalled(signal.SIGTERM),
         "handled: checkpoint at the next step, exit 143, one line; --resume ends bit-exact",
         stopped_cleanly(143, "SIGTERM")),
    Case("SIGINT during pre-training", 6, signalled(signal.SIGINT),
         "handled: checkpoint at the next step, exit 130, one line", stopped_cleanly(130, "SIGINT")),
    # group 8: training lost at the end
    Case("validation split missing", 8, lambda env: finetune(env, None, "--max-steps", "2",
                                                              *sets('data.valid="nosuch"')),
         r"refused: ^lxmert finetune: error: vqa split 'nosuch': \S+/vqa/nosuch\.json does not exist", nothing_left),
    Case("validation split unlabelled", 8,
         lambda env: finetune(env, None, "--max-steps", "2", *sets(f'data.valid="{unlabelled_split(env)}"')),
         r"refused: ^lxmert finetune: error: vqa split '\S+/unlabelled\.json' \(data\.valid\) has no labels",
         nothing_left),
    Case("validation image missing from the store", 8, missing_image_in_valid,
         r"refused: ^lxmert finetune: error: \S+/valid\.json: entry 3 \(question_id \d+\): image 'no_such_image' "
         r"is not in the feature store", nothing_left),
    Case("feature store missing", 8, lambda env: finetune(env, None, "--max-steps", "2",
                                                           *sets('data.features=["nosuch/store"]')),
         r"refused: ^lxmert finetune: error: feature store \S+/nosuch/store does not exist", nothing_left),
    Case("data.valid empty with a main metric", 8, no_valid_split,
         "handled: a warning, no best/, the last checkpoint kept", check_no_valid),
    Case("an evaluation that fails", 8, failing_evaluation,
         r"refused: ^lxmert finetune: error: simulated: the evaluation failed$", saved_before_evaluating),
    Case("resume after an evaluation that failed", 8, resume_after_failed_evaluation,
         "handled: the unfinished evaluation is redone, best/ written", evaluation_redone),
    # group 9: valid inputs refused
    Case("--init a `convert --to hf` directory", 9, init_from("hf"),
         "handled: fine-tunes with the answer head carried over", head_carried_over),
    Case("--init a `convert --to original` .pth", 9, init_from("original"),
         "handled: fine-tunes with the answer head carried over (answers beside the file)", head_carried_over),
    Case("--init a .pth without its answer list", 9, init_from("original", answers=False),
         r"refused: ^lxmert finetune: error: \S+/model\.pth: cannot remap a \d+-answer head: the checkpoint names "
         r"no answers", nothing_left),
]


def test_case_table_is_well_formed():
    check_table(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault_world, fault_runs) -> None:
    run_case(case, Env(tmp_path, monkeypatch, fault_world, fault_runs))
