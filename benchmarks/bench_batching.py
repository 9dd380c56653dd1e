"""What length-aware batching (`data.batching = "length"`) saves on a recipe, and whether its
loss curve holds: the same recipe run through the real loop with "length" and "random".

Two parts:

- accounting (always, cheap): the text tokens the model is fed (padded) against the real
  ones, over the recipe's whole schedule, for both batchings: the training batches exactly
  as `Trainer` draws them (`GlobalBatchSampler` with `dataset_lengths(dataset, epoch)`, each
  micro-batch padded to its longest example) and the evaluation batches of its validation
  split (`Task.eval_batch_order`).
- `--train-steps N`: `Trainer.fit` for N steps with each batching (one after the other, same
  seed), a hook recording every micro-batch's shape; reports seconds per step (from the
  loop's metrics.jsonl), padded / real tokens, the loss curves and the final validation.

Pre-training datasets change per epoch (mismatched sentences); the trainer buckets them by
`PretrainingDataset.epoch_lengths(epoch)`, the lengths of the sentences the examples carry
in that epoch (see `lxmert.training.sampler`).

The default data root is the generated real-length corpus (`common.real_length_corpus`).

Run:  python benchmarks/bench_batching.py --recipe lxr955-pretrain --train-steps 40 \
          --set train.batch_size=32 [--json OUT]
      python benchmarks/bench_batching.py --recipe demo-vqa --data demo-out/world
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any


sys.path.insert(0, str(Path(__file__).resolve().parent))

from lxmert.api import make_task  # noqa: E402

from common import finish, StepRecorder, machine_info, real_length_corpus, step_seconds  # noqa: E402

BATCHINGS = ("length", "random")
#: overrides that point the packaged pre-training recipes at the generated corpus
CORPUS_SETS = ['data.train=["mscoco_train"]', 'data.valid="mscoco_minival"', 'data.features=["features/store"]',
               "data.num_workers=0"]


def training_tokens(task, recipe, steps: int) -> dict[str, Any]:
    """Padded vs real tokens of the first `steps` training steps as the Trainer draws them."""
    from lxmert.training.sampler import GlobalBatchSampler, dataset_lengths

    dataset = task.train_dataset()
    t = recipe.train
    per_epoch = len(dataset) // t.batch_size
    padded = real = 0
    done, epoch = 0, 0
    while done < steps:
        # what the trainer buckets by this epoch (pre-training: the carried sentences'; the
        # per-epoch pass runs once), else the examples' own lengths
        carried = dataset_lengths(dataset, epoch)
        real_lengths = carried if carried is not None else dataset_lengths(dataset)
        lengths = carried if recipe.data.batching == "length" else None
        sampler = GlobalBatchSampler(len(dataset), t.batch_size, t.seed, epoch, lengths=lengths)
        for micro in list(sampler)[: steps - done]:
            padded += len(micro) * int(real_lengths[micro].max())
            real += int(real_lengths[micro].sum())
        done += min(per_epoch, steps - done)
        epoch += 1
    return {"steps": steps, "padded_tokens": padded, "real_tokens": real,
            "padding_fraction": (padded - real) / padded,
            "exact": not hasattr(dataset, "set_epoch") or hasattr(dataset, "epoch_lengths")}


def eval_tokens(task) -> dict[str, Any] | None:
    from lxmert.training.sampler import dataset_lengths

    valid = task.valid_dataset()
    if valid is None:
        return None
    lengths = dataset_lengths(valid)
    padded = sum(len(b) * int(lengths[b].max()) for b in task.eval_batch_order(valid))
    return {"examples": len(valid), "padded_tokens": padded, "real_tokens": int(lengths.sum()),
            "padding_fraction": (padded - int(lengths.sum())) / padded}


def train(task, recipe, work: Path, name: str) -> dict[str, Any]:
    from lxmert.training.trainer import Trainer

    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    recorder = StepRecorder()
    result = Trainer(recipe, task, out, hooks=[recorder]).fit()
    seconds = step_seconds(out, recipe.train.batch_size)
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["split"] == "train"]
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": seconds, "median_step_s": statistics.median(seconds[2:] or seconds),
            "mean_step_s": statistics.fmean(seconds[2:] or seconds), "losses": losses,
            "last_eval": result.last_eval, **recorder.summary()}


def run(recipe_name: str, data: str | None = None, sets: list[str] | None = None, train_steps: int = 0,
        progress: bool = True) -> dict[str, Any]:
    from lxmert.training.recipe import load_recipe

    log = print if progress else (lambda *a, **k: None)
    result: dict[str, Any] = {"recipe": recipe_name, "sets": sets or [], "machine": machine_info(), "batchings": {}}
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-batching-")))
        root = Path(data) if data else work / "corpus"
        extra = []
        if data is None:
            result["corpus"] = real_length_corpus(root)
            extra = CORPUS_SETS if recipe_name.endswith("pretrain") or "pretrain" in recipe_name else []
        for batching in BATCHINGS:
            recipe = load_recipe(recipe_name, [*extra, "train.progress=false", *(sets or []),
                                               f"data.batching={batching}"])
            task = make_task(recipe, root)
            steps = train_steps or recipe.train.max_steps or recipe.train.epochs * (
                len(task.train_dataset()) // recipe.train.batch_size)
            got: dict[str, Any] = {"train_tokens": training_tokens(task, recipe, steps), "eval_tokens": eval_tokens(task)}
            if train_steps:
                recipe.train.max_steps, recipe.train.log_every = train_steps, 1
                log(f"{recipe_name}: training {train_steps} steps with data.batching={batching}", flush=True)
                got["train"] = train(task, recipe, work, batching)
            result["batchings"][batching] = got
    result["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    return result


def report(result: dict[str, Any]) -> str:
    lines = [f"{result['recipe']} {' '.join(result['sets'])}"]
    for batching, got in result["batchings"].items():
        tr, ev = got["train_tokens"], got["eval_tokens"]
        line = (f"  {batching:6}: training {tr['steps']} steps: {tr['padded_tokens']} text ids fed for "
                f"{tr['real_tokens']} real ({100 * tr['padding_fraction']:.1f}% padding)")
        if ev:
            line += f"; validation: {ev['padded_tokens']} for {ev['real_tokens']} ({100 * ev['padding_fraction']:.1f}%)"
        lines.append(line)
        if "train" in got:
            t = got["train"]
            shown = ", ".join(f"{k} {v:.4f}" for k, v in t["last_eval"].items() if isinstance(v, float) and "/" not in k)
            lines.append(f"          run: {t['median_step_s']:.2f} s/step median ({t['mean_step_s']:.2f} mean), "
                         f"{100 * t['padding_fraction']:.1f}% padding fed, loss {statistics.fmean(t['losses'][:5]):.3f}"
                         f" -> {statistics.fmean(t['losses'][-5:]):.3f}; validation: {shown}")
    m = result["machine"]
    lines.append(f"  machine: {m['cpu']}, {m['torch_threads']} threads, load {m['load_avg_1m']:.1f} -> "
                 f"{m['load_avg_1m_end']:.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="lxr955-pretrain")
    parser.add_argument("--data", default=None, help="data root (default: a generated real-length corpus)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--train-steps", type=int, default=0, help="also train N steps with each batching")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    result = run(args.recipe, args.data, args.sets, args.train_steps)
    return finish(result, report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
