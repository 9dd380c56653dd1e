"""Question-answering inference, B=32, fp32: lxmert vs transformers on the same weights.

Model-level figures on the SAME tensors (what the real command gains on top, from length
sorting, dynamic padding and its own batching, is `bench_commands.py`'s `lxmert
evaluate|predict` figure; this script's former "system level" figure fed benchmark-made
batches and is gone):

- same tensors: both get the identical padded-to-20 batch (questions with VQA-like word
  counts, or --source) under `torch.inference_mode()`.
- compiled (`--figures ...,compiled`): as "same tensors", lxmert through `torch.compile`
  (inductor, weight freezing on; compile time reported, not timed) vs transformers eager.
- bf16 (`--figures ...,bf16`): as "same tensors", lxmert under CPU bf16 autocast
  (`lxmert evaluate/predict --amp bf16`; fast on CPUs with AMX) vs transformers in fp32. Its
  model FLOP/s is divided by a bf16 GEMM rate measured the same way.

The answer head has 3129 rows (the VQA answer table). Model FLOP/s counts the forward of
the shapes fed (encoder + pooler + answer head) and is divided by a large-GEMM rate
measured in the same process. Run: `python benchmarks/bench_qa_inference.py [--quick]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (finish, SOURCES, SentenceSampler, alternate, comparison_report, configure_threads,  # noqa: E402
                    gemm_rate, hf_model_from_ours, machine_info, set_gemm_fractions, step_flops, text_batches,
                    visual_inputs)

from lxmert.config import LxmertConfig  # noqa: E402
from lxmert.text import LxmertTokenizer  # noqa: E402

N_OBJECTS = 36
VQA_ANSWERS = 3129


def qa_config(**overrides: Any) -> LxmertConfig:
    return LxmertConfig(**{"num_qa_labels": VQA_ANSWERS, **overrides})


def make_batches(config: LxmertConfig, batch_size: int, n_batches: int, source: str, seed: int = 0,
                 pool_batches: int = 50) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, float]]:
    """(ours, theirs, stats): QA input batches; both sides get the same objects per index."""
    tok = LxmertTokenizer.from_vocab()
    sentences = SentenceSampler(tok, seed=seed).sentences(batch_size * max(pool_batches, n_batches), source)
    tb = text_batches(tok, sentences, batch_size, n_batches, seed=seed)
    g = torch.Generator().manual_seed(seed + 11)
    visual = [visual_inputs(batch_size, N_OBJECTS, config.visual_feat_dim, g) for _ in range(n_batches)]
    ours = [{**text, **vis} for text, vis in zip(tb.ours, visual)]
    theirs = [{**text, **vis} for text, vis in zip(tb.theirs, visual)]
    stats = {"mean_pieces": tb.mean_pieces, "mean_padded_ours": tb.mean_padded_ours,
             "mean_padded_theirs": tb.mean_padded_theirs, "bucketing": tb.bucketing}
    return ours, theirs, stats


def forward_flops_of(config: LxmertConfig, batch: dict[str, Any]) -> float:
    b, length = batch["input_ids"].shape
    return step_flops(config, [length] * b, batch["visual_feats"].shape[1], heads=["qa"])


def bf16_inference():
    """inference_mode + CPU bf16 autocast, as `lxmert evaluate --amp bf16`."""
    from contextlib import ExitStack

    from lxmert.training.precision import autocast

    stack = ExitStack()
    stack.enter_context(torch.inference_mode())
    stack.enter_context(autocast("bf16", "cpu"))
    return stack


def make_call(model: torch.nn.Module, batches: list[dict[str, Any]], context):
    def call(rep: int) -> None:
        with context():
            model(**batches[rep % len(batches)])

    return call


def load_pair(config: LxmertConfig, seed: int = 0):
    """(ours, theirs): QA twins with identical random weights, in eval mode."""
    from lxmert import LxmertForQuestionAnswering

    torch.manual_seed(seed)
    ours = LxmertForQuestionAnswering(config).eval()
    return ours, hf_model_from_ours(ours, "LxmertForQuestionAnswering").eval()


def run(quick: bool = False, reps: int | None = None, warmup: int = 1, batch_size: int | None = None,
        source: str = "vqa_question", threads: int | None = None, figures: tuple[str, ...] = ("same",),
        config: LxmertConfig | None = None, progress: bool = True) -> dict[str, Any]:
    configure_threads(threads)
    reps = reps or (3 if quick else 9)
    batch_size = batch_size or (8 if quick else 32)
    config = config or qa_config()
    ours, theirs = load_pair(config)
    ours_batches, theirs_batches, stats = make_batches(config, batch_size, reps + warmup, source)
    rates = [gemm_rate()]
    bf16_rates = [gemm_rate(dtype=torch.bfloat16)] if "bf16" in figures else []
    result: dict[str, Any] = {"figure": "qa_inference", "batch_size": batch_size, "source": source, "reps": reps,
                              "num_answers": config.num_qa_labels, "machine": machine_info(), **stats}
    compiled = None
    if "compiled" in figures:
        # weights frozen into the graph (inference only), as `lxmert evaluate/predict --compile`
        compiled = torch.compile(ours, options={"freezing": True})
        start = time.perf_counter()
        with torch.inference_mode():
            compiled(**theirs_batches[0])
        result["compile_seconds"] = time.perf_counter() - start
        with torch.inference_mode():
            diff = (compiled(**theirs_batches[0]).question_answering_score
                    - ours(**theirs_batches[0]).question_answering_score).abs().max()
        result["compiled_max_abs_diff"] = float(diff)
    plans = {
        "same": ({"lxmert": make_call(ours, theirs_batches, torch.inference_mode),
                  "transformers": make_call(theirs, theirs_batches, torch.inference_mode)},
                 {"lxmert": theirs_batches, "transformers": theirs_batches}),
        "compiled": ({"lxmert": make_call(compiled, theirs_batches, torch.inference_mode),
                      "transformers": make_call(theirs, theirs_batches, torch.inference_mode)},
                     {"lxmert": theirs_batches, "transformers": theirs_batches}),
        "bf16": ({"lxmert": make_call(ours, theirs_batches, bf16_inference),
                  "transformers": make_call(theirs, theirs_batches, torch.inference_mode)},
                 {"lxmert": theirs_batches, "transformers": theirs_batches}),
    }
    for name in figures:
        cases, fed = plans[name]
        if progress:
            print(f"QA inference, {name}: {reps} reps", flush=True)
        t = alternate(cases, reps=reps, warmup=warmup, samples_per_call=batch_size, progress=progress)
        fig: dict[str, Any] = {"ratio": t["lxmert"].samples_per_s / t["transformers"].samples_per_s}
        for side in ("lxmert", "transformers"):
            per_rep = [forward_flops_of(config, fed[side][i]) / s for i, s in enumerate(t[side].seconds)]
            fig[side] = {**t[side].to_dict(), "model_flops_per_s": statistics.median(per_rep)}
        result[name] = fig
        rates.append(gemm_rate())
    result["gemm_flops"] = statistics.median(rates)
    if bf16_rates:
        bf16_rates.append(gemm_rate(dtype=torch.bfloat16))
        result["gemm_bf16_flops"] = statistics.median(bf16_rates)
    set_gemm_fractions(result, figures)
    result["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    return result


def report(result: dict[str, Any]) -> str:
    labels = {"same": "QA inference fp32, same tensors",
              "compiled": "QA inference fp32, same tensors, lxmert torch.compile",
              "bf16": "QA inference, same tensors, lxmert bf16 autocast (fraction of the bf16 GEMM) "
                      "vs transformers fp32"}
    return comparison_report(result, "QA inference", labels, "questions")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="B=8, 3 reps (a smoke figure, not the target's)")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--source", default="vqa_question", choices=list(SOURCES))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--figures", default="same", help="comma list of: same, compiled, bf16")
    parser.add_argument("--json", type=Path, default=None, help="write the result here (atomically)")
    args = parser.parse_args(argv)
    result = run(quick=args.quick, reps=args.reps, batch_size=args.batch_size, source=args.source,
                 threads=args.threads, figures=tuple(args.figures.split(",")))
    return finish(result, report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
