"""Pre-training step (forward + backward + optimiser update), lxmert vs transformers.

Model-level figures on the SAME tensors, same random weights, same process, alternating
(what `lxmert pretrain` itself gets - its batching, dynamic padding, fused optimiser,
data loading - is `bench_commands.py`'s figure; this script's former "system level"
figure fed benchmark-made batches and is gone):

- same tensors: both get the identical padded-to-20 batch (sentences with word counts
  drawn like the pre-training corpus, or one source with --source) and the same optimiser
  (torch AdamW, default settings), so only the model implementations differ; lxmert
  still uses `sparse_mlm=True` (a model option: it changes no input).
- bf16 (`--figures ...,bf16`): as "same tensors", lxmert's step under CPU bf16 autocast
  (`train.amp = "bf16"`; fast on CPUs with AMX) vs transformers in fp32 (both torch AdamW, fused for lxmert); lxmert's model
  FLOP/s is divided by a bf16 GEMM rate measured the same way.

Model FLOP/s counts the step's useful FLOPs (see common.forward_flops; MLM only at
masked positions, feature regression only on masked objects, 3x forward) and is divided by a large-GEMM rate measured in the same
process. Run: `python benchmarks/bench_pretrain_step.py [--quick] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (finish, PRETRAIN_MIX, SOURCES, SentenceSampler, alternate, comparison_report, configure_threads,  # noqa: E402
                    gemm_rate, load_pretraining_pair, machine_info, pretraining_targets, set_gemm_fractions,
                    step_flops, text_batches, visual_inputs)

from lxmert.config import LxmertConfig  # noqa: E402
from lxmert.text import LxmertTokenizer  # noqa: E402

N_OBJECTS = 36


def make_batches(config: LxmertConfig, batch_size: int, n_batches: int, source: str, seed: int = 0,
                 pool_batches: int = 50) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, float]]:
    """(ours, theirs, stats): pre-training batches with targets, both ways of batching."""
    tok = LxmertTokenizer.from_vocab()
    mix = PRETRAIN_MIX if source == "pretrain_mix" else source
    sentences = SentenceSampler(tok, seed=seed).sentences(batch_size * max(pool_batches, n_batches), mix)
    tb = text_batches(tok, sentences, batch_size, n_batches, seed=seed)
    g = torch.Generator().manual_seed(seed + 7)

    def complete(text: dict[str, torch.Tensor]) -> dict[str, Any]:
        vis = visual_inputs(batch_size, N_OBJECTS, config.visual_feat_dim, g)
        targets = pretraining_targets(text["input_ids"], text["attention_mask"], vis["visual_feats"], config, g)
        return {"attention_mask": text["attention_mask"], "token_type_ids": text["token_type_ids"],
                "visual_pos": vis["visual_pos"], **targets}

    ours = [complete(b) for b in tb.ours]
    theirs = [complete(b) for b in tb.theirs]
    stats = {"mean_pieces": tb.mean_pieces, "mean_padded_ours": tb.mean_padded_ours,
             "mean_padded_theirs": tb.mean_padded_theirs, "bucketing": tb.bucketing}
    return ours, theirs, stats


def useful_flops(config: LxmertConfig, batch: dict[str, Any]) -> float:
    """Training FLOPs of the step on the shapes fed, MLM and feature regression at masked rows only."""
    b, length = batch["input_ids"].shape
    rows = (batch["labels"] != -100).sum(dim=1).tolist()
    feat_rows = (batch["obj_labels"]["feat"][1] != 0).sum(dim=1).tolist()
    heads = ["mlm", "matched", "obj"] + (["qa"] if config.task_qa else [])
    return step_flops(config, [length] * b, N_OBJECTS, mlm_rows=rows, heads=heads, training=True,
                      feat_rows=feat_rows)


def make_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: list[dict[str, Any]],
              amp: str = "none", **forward_kwargs: Any):
    """A closure running one full training step on batch `rep` (warm-up: the last ones);
    the forward under `amp` autocast as the trainer runs it (backward and update outside)."""
    from lxmert.training.precision import autocast

    def step(rep: int) -> None:
        batch = batches[rep % len(batches)]
        with autocast(amp, "cpu"):
            loss = model(**batch, **forward_kwargs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def run(quick: bool = False, reps: int | None = None, warmup: int = 1, batch_size: int | None = None,
        source: str = "pretrain_mix", threads: int | None = None, figures: tuple[str, ...] = ("same",),
        config: LxmertConfig | None = None, progress: bool = True) -> dict[str, Any]:
    """Measure and return a JSON-ready dict (one entry per figure)."""
    configure_threads(threads)
    reps = reps or (3 if quick else 7)
    batch_size = batch_size or (8 if quick else 32)
    config = config or LxmertConfig()
    ours, theirs = load_pretraining_pair(config)
    ours.train()
    theirs.train()
    n_batches = reps + warmup
    ours_batches, theirs_batches, stats = make_batches(config, batch_size, n_batches, source)
    # warm-up calls use the indices -1, -2, ...: Python's negative indexing picks the last batches
    rates = [gemm_rate()]
    bf16_rates = [gemm_rate(dtype=torch.bfloat16)] if "bf16" in figures else []
    result: dict[str, Any] = {"figure": "pretrain_step", "batch_size": batch_size, "source": source,
                              "reps": reps, "machine": machine_info(), **stats}

    if "same" in figures:
        opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-4)
        opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=1e-4)
        if progress:
            print(f"same tensors: both padded to 20, torch AdamW (default); {reps} reps", flush=True)
        t = alternate({"lxmert": make_step(ours, opt_ours, theirs_batches, sparse_mlm=True),
                       "transformers": make_step(theirs, opt_theirs, theirs_batches)},
                      reps=reps, warmup=warmup, samples_per_call=batch_size, progress=progress)
        result["same"] = _summarise(t, config, theirs_batches, theirs_batches, batch_size, reps)
        del opt_ours, opt_theirs
        rates.append(gemm_rate())

    if "bf16" in figures:
        opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-4, fused=True)
        opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=1e-4)
        if progress:
            print(f"bf16: same tensors, lxmert under bf16 autocast, transformers fp32; {reps} reps", flush=True)
        t = alternate({"lxmert": make_step(ours, opt_ours, theirs_batches, amp="bf16", sparse_mlm=True),
                       "transformers": make_step(theirs, opt_theirs, theirs_batches)},
                      reps=reps, warmup=warmup, samples_per_call=batch_size, progress=progress)
        result["bf16"] = _summarise(t, config, theirs_batches, theirs_batches, batch_size, reps)
        del opt_ours, opt_theirs
        rates.append(gemm_rate())
        bf16_rates.append(gemm_rate(dtype=torch.bfloat16))
        result["gemm_bf16_flops"] = statistics.median(bf16_rates)

    result["gemm_flops"] = statistics.median(rates)
    set_gemm_fractions(result, figures)
    result["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    return result


def _summarise(t, config, ours_batches, theirs_batches, batch_size, reps) -> dict[str, Any]:
    """Medians, ratio, and model FLOP/s (median over reps of each rep's FLOPs / time)."""
    out: dict[str, Any] = {"ratio": t["lxmert"].samples_per_s / t["transformers"].samples_per_s}
    for side, batches in (("lxmert", ours_batches), ("transformers", theirs_batches)):
        flops = [useful_flops(config, batches[i]) for i in range(reps)]
        # FLOPs of the shapes each side is fed (padding included), MLM at masked rows
        per_rep = [f / s for f, s in zip(flops, t[side].seconds)]
        out[side] = {**t[side].to_dict(), "model_flops_per_s": statistics.median(per_rep)}
    return out


def report(result: dict[str, Any]) -> str:
    labels = {"same": "pre-training step, same tensors",
              "bf16": "pre-training step, same tensors, lxmert bf16 autocast (fraction of the bf16 GEMM) "
                      "vs transformers fp32"}
    return comparison_report(result, "pre-training step", labels, "sentences")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="B=8, 3 reps (a smoke figure, not the target's)")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--source", default="pretrain_mix", choices=["pretrain_mix", *SOURCES])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--figures", default="same", help="comma list of: same, bf16")
    parser.add_argument("--json", type=Path, default=None, help="write the result here (atomically)")
    args = parser.parse_args(argv)
    result = run(quick=args.quick, reps=args.reps, batch_size=args.batch_size, source=args.source,
                 threads=args.threads, figures=tuple(args.figures.split(",")))
    return finish(result, report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
