"""One process vs two (gloo, CPU) with the same global batch follow the same loss curve.

Dropout is off so that the only difference is how the batch is split; per-example noise is
a function of (seed, epoch, index), so both runs see identical inputs. Tolerance: 1e-4
relative on every logged loss (float32 reductions are summed in a different order) and the
final weights agree to 1e-4 absolute.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for support.toy

from lxmert.training.recipe import load_recipe  # noqa: E402
from lxmert.training.checkpointing import latest_checkpoint  # noqa: E402
from lxmert.training.trainer import Trainer  # noqa: E402


OVERRIDES = ["task=\"vqa\"", "train.batch_size=8", "train.epochs=2", "optim.lr=1e-3",
             "train.log_every=1", "train.progress=false", "train.save_every=0"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str, accum: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for support.toy
    from support.toy import ToyAdapter

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    recipe = load_recipe(None, [*OVERRIDES, f"train.grad_accum={accum}", "train.device=\"cpu\""])
    adapter = ToyAdapter(n_train=48, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    try:
        Trainer(recipe, adapter, out).fit()
    finally:
        from lxmert.training.distributed import cleanup_distributed

        cleanup_distributed()


def _losses(run: Path) -> list[float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["loss"] for x in lines if json.loads(x)["split"] == "train"]


@pytest.mark.slow
def test_one_vs_two_processes_same_curve(tmp_path):
    single, double = tmp_path / "one", tmp_path / "two"
    mp.start_processes(_worker, args=(1, _free_port(), str(single), 2), nprocs=1, start_method="spawn")
    mp.start_processes(_worker, args=(2, _free_port(), str(double), 1), nprocs=2, start_method="spawn")
    a, b = _losses(single), _losses(double)
    assert len(a) == len(b) == 12
    assert a[-1] < a[0]
    assert b == pytest.approx(a, rel=1e-4)
    wa = load_file(str(latest_checkpoint(single) / "model.safetensors"))
    wb = load_file(str(latest_checkpoint(double) / "model.safetensors"))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-4, rtol=0)
