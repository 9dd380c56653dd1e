"""The loop's guarantees on a toy task: learning, exact resume, NaN stop, batch splitting."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from lxmert.training.recipe import load_recipe
from lxmert.training.checkpointing import latest_checkpoint, load_trainer_state
from lxmert.training.trainer import GlobalBatchSampler, NonFiniteLossError, Trainer

from _train_toy import ToyAdapter


@pytest.fixture(autouse=True)
def _one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def _recipe(*extra):
    return load_recipe(None, ["task=\"vqa\"", "train.batch_size=8", "train.epochs=4",
                              "optim.lr=1e-3", "optim.warmup=0.1", "train.log_every=2",
                              "train.progress=false", "optim.max_grad_norm=5.0", *extra])


def test_sampler_same_examples_for_any_world_and_accumulation():
    one = list(GlobalBatchSampler(50, 8, seed=3, epoch=1))
    assert len(one) == 6 and all(len(b) == 8 for b in one)
    two = [list(GlobalBatchSampler(50, 8, 3, 1, rank=r, world_size=2, grad_accum=2)) for r in (0, 1)]
    for step in range(6):
        together = sorted(two[0][2 * step] + two[0][2 * step + 1] + two[1][2 * step] + two[1][2 * step + 1])
        assert together == sorted(one[step])
    assert list(GlobalBatchSampler(50, 8, 3, 1, start_step=4)) == one[4:]
    assert list(GlobalBatchSampler(50, 8, 3, 2)) != one  # a new order each epoch
    with pytest.raises(ValueError, match="divisible"):
        GlobalBatchSampler(50, 8, 3, 1, world_size=3)


def test_trains_and_keeps_best(tmp_path):
    result = Trainer(_recipe(), ToyAdapter(n_train=128), tmp_path / "run").fit()
    assert result.steps == 64
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in records if r["split"] == "train"]
    assert sum(train[-3:]) / 3 < 0.8 * sum(train[:3]) / 3
    valid = [r for r in records if r["split"] == "valid"]
    assert len(valid) == 4 and result.best_metric == max(r["accuracy"] for r in valid)
    assert result.best_metric > 0.5  # chance is 0.25
    assert json.loads((tmp_path / "run" / "best" / "eval.json").read_text())["accuracy"] == result.best_metric
    ckpt = latest_checkpoint(tmp_path / "run")
    assert ckpt.name == "step-00000064"
    assert len(list((tmp_path / "run" / "checkpoints").iterdir())) == 2  # keep_last
    saved = json.loads((tmp_path / "run" / "recipe.json").read_text())
    assert saved["optim"]["lr"] == 1e-3


def test_resume_is_bit_exact_in_process(tmp_path):
    steps = ["train.save_every=3", "train.grad_accum=2"]
    full = Trainer(_recipe(*steps), ToyAdapter(), tmp_path / "full").fit()
    # Crash during update 8 (2 micro-batches per update; mid-epoch 0 of 8 steps), then resume
    # from the step-6 checkpoint: the run must end exactly where the uninterrupted one did.
    with pytest.raises(KeyboardInterrupt):
        Trainer(_recipe(*steps), ToyAdapter(crash_at=15), tmp_path / "cut").fit()
    assert latest_checkpoint(tmp_path / "cut").name == "step-00000006"
    resumed = Trainer(_recipe(*steps), ToyAdapter(), tmp_path / "cut", resume=True).fit()
    assert resumed.steps == full.steps == 32
    a = load_file(f"{full.last_checkpoint}/model.safetensors")
    b = load_file(f"{resumed.last_checkpoint}/model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    sa = load_trainer_state(full.last_checkpoint)["optimizer"]["state"]
    sb = load_trainer_state(resumed.last_checkpoint)["optimizer"]["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)


def test_nan_loss_stops_with_the_step(tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 3 \(epoch 0, batch 2\)"):
        Trainer(_recipe(), ToyAdapter(nan_at=3), tmp_path / "nan").fit()


def test_batch_must_split_over_accumulation(tmp_path):
    with pytest.raises(ValueError, match="divisible"):
        Trainer(_recipe("train.grad_accum=3"), ToyAdapter(), tmp_path / "x").fit()
