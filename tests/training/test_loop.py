"""The loop's guarantees on a toy task: learning, exact resume, NaN stop, batch splitting,
length-aware batching (the default) and its switch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import Dataset

from lxmert.training.recipe import load_recipe
from lxmert.training.checkpointing import latest_checkpoint, load_trainer_state
from lxmert.data.collate import Batch
from lxmert.training.trainer import GlobalBatchSampler, NonFiniteLossError, Trainer

from support.toy import ToyAdapter, ToyQA


class VarLengthQA(Dataset):
    """The toy's examples with questions of 3-14 ids (`.lengths`), as real datasets have."""

    def __init__(self, base: ToyQA, seed: int) -> None:
        self.base = base
        self.lengths = np.random.default_rng(seed).integers(3, 15, size=len(base))

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def epoch_lengths(self, epoch: int) -> np.ndarray:
        return self.lengths  # the per-epoch noise does not change a question's length

    def __getitem__(self, i: int):
        ids, feats, pos, label = self.base[i]
        n = int(self.lengths[i]) - 2
        return ids.repeat(3)[:n], feats, pos, label


class LengthToy(ToyAdapter):
    """ToyAdapter over `VarLengthQA`; records the padded shape of every training micro-batch."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.train = VarLengthQA(self.train, seed=5)
        self.shapes: list[tuple[int, int]] = []

    def collate(self, items):
        ids, feats, pos, labels = zip(*items)
        width = max(len(x) for x in ids) + 2
        padded = torch.zeros(len(ids), width, dtype=torch.long)
        mask = torch.zeros_like(padded)
        for row, x in enumerate(ids):
            padded[row, :len(x) + 2] = torch.cat([torch.tensor([101]), x, torch.tensor([102])])
            mask[row, :len(x) + 2] = 1
        self.shapes.append(tuple(padded.shape))
        return Batch({"input_ids": padded, "attention_mask": mask, "visual_feats": torch.stack(feats),
                      "visual_pos": torch.stack(pos), "labels": torch.stack(labels)}, {})


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


@pytest.mark.parametrize("adapter, batching, extra", [
    (ToyAdapter, "random", ["train.epochs=4"]),
    # one epoch of 32 steps: bucketing windows of 2 batches, the batches reshuffled
    (lambda **kw: LengthToy(n_train=256, **kw), "length", ["train.epochs=1"]),
])
def test_resume_is_bit_exact_in_process(tmp_path, adapter, batching, extra):
    steps = ["train.save_every=3", "train.grad_accum=2", f"data.batching={batching}", *extra]
    full = Trainer(_recipe(*steps), adapter(), tmp_path / "full").fit()
    # Crash during update 8 (2 micro-batches per update; mid-epoch 0), then resume
    # from the step-6 checkpoint: the run must end exactly where the uninterrupted one did.
    with pytest.raises(KeyboardInterrupt):
        Trainer(_recipe(*steps), adapter(crash_at=15), tmp_path / "cut").fit()
    assert latest_checkpoint(tmp_path / "cut").name == "step-00000006"
    resumed = Trainer(_recipe(*steps), adapter(), tmp_path / "cut", resume=True).fit()
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


def test_length_batching_is_the_default_and_pads_less(tmp_path):
    padded = {}
    for batching in ("length", "random"):
        toy = LengthToy(n_train=1024)  # 128 steps per epoch: windows of 8 batches
        extra = [] if batching == "length" else ["data.batching=random"]
        result = Trainer(_recipe("train.epochs=1", *extra), toy, tmp_path / batching).fit()
        assert result.steps == 128 and result.best_metric > 0.4  # it learns either way (chance 0.25)
        saved = json.loads((tmp_path / batching / "recipe.json").read_text())
        assert saved["data"]["batching"] == batching
        shapes = [s for s in toy.shapes if s[0] == 8]  # the validation set is collated in one batch of 64
        assert len(shapes) == 128
        padded[batching] = sum(b * w for b, w in shapes)
    real = int(LengthToy(n_train=1024).train.lengths.sum())
    assert padded["length"] < 1.1 * real < 0.8 * padded["random"], (padded, real)


def test_resume_refuses_another_batching(tmp_path):
    Trainer(_recipe("train.max_steps=3", "train.save_every=3"), LengthToy(), tmp_path / "run").fit()
    with pytest.raises(ValueError, match=r"saved with data.batching = 'length', now 'random'.*"
                                         r"--set data.batching=length"):
        Trainer(_recipe("train.max_steps=6", "data.batching=random"), LengthToy(), tmp_path / "run",
                resume=True).fit()


def test_per_epoch_datasets_without_epoch_lengths_are_batched_at_random(tmp_path, capsys):
    class OwnLengthsOnly(VarLengthQA):
        epoch_lengths = None  # as pre-training today: own-sentence .lengths, examples change per epoch

    def padded(toy):
        return sum(b * w for b, w in toy.shapes if b == 8)

    shapes = {}
    for name, dataset_class, extra in (("own", OwnLengthsOnly, []), ("random", VarLengthQA, ["data.batching=random"])):
        toy = LengthToy()
        toy.train = dataset_class(toy.train.base, seed=5)
        Trainer(_recipe("train.max_steps=8", *extra), toy, tmp_path / name).fit()
        shapes[name] = toy.shapes
    assert shapes["own"] == shapes["random"], "the same random batches"
    assert "draws the batches of OwnLengthsOnly at random: its examples change with the epoch" in capsys.readouterr().out
