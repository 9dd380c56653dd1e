"""Int8 dynamic quantisation: samples/s against fp32 and how often the top answer agrees.

Both models are lxmert `LxmertForQuestionAnswering` (3129 VQA answers) fed lxmert's
system-level batches (VQA-like questions, length bucketing, dynamic padding, 36
objects) under `torch.inference_mode()`, alternating each repetition. The int8 model is
`lxmert.quantize.quantize_model` of the fp32 one (per-channel int8 weights, dynamic int8
activations, every Linear).

Agreement: the share of questions whose arg-max answer is the same, on `--agree-batches`
further batches. Which weights: by default the full-size model with RANDOM weights; a
random model's answer logits depend weakly on the input, which can make agreement look
easy (one answer for everything) or hard (near-ties between answers): the script
therefore also prints how many distinct answers fp32 gives and the median top-1/top-2
logit margin. It also trains a small model (hidden 256, 2+2+2 layers, 100 answers) for a
few hundred steps on a toy cross-modal task (answer = which feature dimension is raised
on the objects x which key word the question holds) and measures agreement on held-out
questions, where logits depend on the input. With `--checkpoint DIR` the timed model
uses trained weights instead.
Run: `python benchmarks/bench_int8.py [--quick] [--checkpoint DIR] [--json out.json]`.
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

from bench_qa_inference import N_OBJECTS, qa_config  # noqa: E402
from common import (finish, SOURCES, SentenceSampler, alternate, configure_threads, format_table,  # noqa: E402
                    machine_info, text_batches, visual_inputs)

from lxmert.config import LxmertConfig  # noqa: E402
from lxmert.quantize import answer_agreement, quantize_model  # noqa: E402
from lxmert.text import LxmertTokenizer  # noqa: E402


def lxmert_batches(config: LxmertConfig, batch_size: int, n_batches: int, source: str,
                   seed: int) -> tuple[list[dict[str, torch.Tensor]], float]:
    tok = LxmertTokenizer.from_vocab()
    sentences = SentenceSampler(tok, seed=seed).sentences(batch_size * max(40, n_batches), source)
    tb = text_batches(tok, sentences, batch_size, n_batches, seed=seed)
    g = torch.Generator().manual_seed(seed + 3)
    return ([{**text, **visual_inputs(batch_size, N_OBJECTS, config.visual_feat_dim, g)} for text in tb.ours],
            tb.mean_padded_ours)


@torch.inference_mode()
def answer_spread(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Distinct arg-max answers and the median top-1 minus top-2 logit margin."""
    tops, margins = [], []
    for batch in batches:
        logits = model(**batch).question_answering_score.float()
        top2 = logits.topk(2, dim=-1).values
        tops += logits.argmax(-1).tolist()
        margins += (top2[:, 0] - top2[:, 1]).tolist()
    return {"distinct_answers": len(set(tops)), "median_margin": statistics.median(margins)}


SMALL = dict(hidden_size=256, num_attention_heads=4, intermediate_size=1024, l_layers=2, r_layers=2, x_layers=2,
             num_qa_labels=100)


def _toy_batch(config: LxmertConfig, tok, sampler: SentenceSampler, batch_size: int,
               g: torch.Generator) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """A cross-modal toy QA task: answer = 10 * (which of 10 feature dims is raised on the
    objects) + (which of 10 key words the question contains): needs both modalities."""
    key_ids = tok.convert_tokens_to_ids(["red", "blue", "green", "left", "right", "top", "bottom", "small",
                                         "large", "many"])
    sentences = sampler.sentences(batch_size, "vqa_question")
    ids = tok.encode_batch(sentences)
    k = torch.randint(0, 10, (batch_size,), generator=g)
    ids = [[seq[0], key_ids[int(kk)], *seq[1:]][:20] for seq, kk in zip(ids, k)]
    for seq in ids:
        seq[-1] = tok.sep_id
    text = tok.pad(ids)
    vis = visual_inputs(batch_size, N_OBJECTS, config.visual_feat_dim, g)
    j = torch.randint(0, 10, (batch_size,), generator=g)
    vis["visual_feats"][torch.arange(batch_size), :, j] += 2.0  # the image's "colour": one raised dimension
    label = j * 10 + k
    return {**text, **vis}, label


def trained_small_model(steps: int, batch_size: int = 32, seed: int = 0, progress: bool = True):
    """Briefly train a small LXMERT on the toy task so that its answers depend on the input.

    A random-weight model gives nearly the same logits for every question, which makes
    fp32/int8 agreement an artefact of near-ties; a trained one has real margins.
    Returns (model, held-out batches, held-out accuracy).
    """
    from lxmert import LxmertForQuestionAnswering

    torch.manual_seed(seed)
    config = LxmertConfig(**SMALL)
    model = LxmertForQuestionAnswering(config).train()
    tok = LxmertTokenizer.from_vocab()
    sampler = SentenceSampler(tok, seed=seed)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, fused=True)
    for step in range(steps):
        batch, label = _toy_batch(config, tok, sampler, batch_size, g)
        loss = model(**batch, labels=label).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if progress and (step + 1) % 100 == 0:
            print(f"  toy training step {step + 1}/{steps}: loss {loss.item():.3f}", flush=True)
    model.eval()
    held = [_toy_batch(config, tok, sampler, batch_size, g) for _ in range(8)]
    with torch.inference_mode():
        correct = sum(int((model(**b).question_answering_score.argmax(-1) == y).sum()) for b, y in held)
    return model, [b for b, _ in held], correct / (batch_size * len(held))


def run(quick: bool = False, reps: int | None = None, warmup: int = 1, batch_size: int | None = None,
        agree_batches: int | None = None, source: str = "vqa_question", threads: int | None = None,
        checkpoint: str | None = None, config: LxmertConfig | None = None, toy_steps: int | None = None,
        progress: bool = True) -> dict[str, Any]:
    from lxmert import LxmertForQuestionAnswering

    configure_threads(threads)
    reps = reps or (3 if quick else 9)
    batch_size = batch_size or (8 if quick else 32)
    agree_batches = agree_batches or (2 if quick else 16)
    if checkpoint:
        fp32 = LxmertForQuestionAnswering.from_pretrained(checkpoint).eval()
        weights = f"checkpoint {checkpoint}"
    else:
        torch.manual_seed(0)
        fp32 = LxmertForQuestionAnswering(config or qa_config()).eval()
        weights = "random init (seed 0), full size" if config is None else "random init (seed 0), custom config"
    int8 = quantize_model(fp32)
    cfg = fp32.config
    timed, padded = lxmert_batches(cfg, batch_size, reps + warmup, source, seed=0)
    if progress:
        print(f"int8 vs fp32, lxmert QA B={batch_size}, {reps} reps", flush=True)

    def call(model):
        def fn(rep: int) -> None:
            with torch.inference_mode():
                model(**timed[rep % len(timed)])
        return fn

    t = alternate({"int8": call(int8), "fp32": call(fp32)}, reps=reps, warmup=warmup,
                  samples_per_call=batch_size, progress=progress)
    agree_set, _ = lxmert_batches(cfg, batch_size, agree_batches, source, seed=1)
    agreement = answer_agreement(fp32, int8, agree_set)
    toy_steps = (50 if quick else 300) if toy_steps is None else toy_steps
    toy: dict[str, Any] = {}
    if toy_steps:
        if progress:
            print(f"training a small model {SMALL} on the toy task for {toy_steps} steps", flush=True)
        small, held, accuracy = trained_small_model(toy_steps, progress=progress)
        toy = {"config": SMALL, "steps": toy_steps, "accuracy": accuracy,
               "agreement": answer_agreement(small, quantize_model(small), held).to_dict(),
               "fp32_answers": answer_spread(small, held)}
    return {
        "toy": toy,
        "figure": "int8", "weights": weights, "batch_size": batch_size, "source": source, "reps": reps,
        "mean_padded": padded, "machine": {**machine_info(), "load_avg_1m_end": os.getloadavg()[0]},
        "int8": t["int8"].to_dict(), "fp32": t["fp32"].to_dict(),
        "ratio": t["int8"].samples_per_s / t["fp32"].samples_per_s,
        "agreement": agreement.to_dict(), "fp32_answers": answer_spread(fp32, agree_set),
    }


def report(result: dict[str, Any]) -> str:
    a = result["agreement"]
    rows = [[f"int8 dynamic vs fp32 (lxmert QA, B={result['batch_size']})", result["int8"]["samples_per_s"],
             result["fp32"]["samples_per_s"], result["ratio"], f"{100 * a['top1_agreement']:.2f}%",
             a["samples"], result["fp32_answers"]["distinct_answers"]]]
    head = (f"int8 on {result['machine']['cpu']} ({result['machine']['torch_threads']} threads), weights: "
            f"{result['weights']}; median top-1/top-2 margin {result['fp32_answers']['median_margin']:.3g}, "
            f"max |logit diff| {a['max_abs_logit_diff']:.3g}; load {result['machine']['load_avg_1m']:.1f} -> "
            f"{result['machine']['load_avg_1m_end']:.1f}")
    if result.get("toy"):
        toy = result["toy"]
        rows.append([f"briefly trained small model ({toy['steps']} steps, accuracy {100 * toy['accuracy']:.0f}%)",
                     float("nan"), float("nan"), float("nan"), f"{100 * toy['agreement']['top1_agreement']:.2f}%",
                     toy["agreement"]["samples"], toy["fp32_answers"]["distinct_answers"]])
    return head + "\n" + format_table(rows, ["figure", "int8 samples/s", "fp32 samples/s", "ratio",
                                             "same top answer", "questions", "distinct fp32 answers"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="B=8, 3 reps (a smoke figure, not the target's)")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--agree-batches", type=int, default=None)
    parser.add_argument("--source", default="vqa_question", choices=list(SOURCES))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--checkpoint", default=None, help="a trained QA checkpoint instead of random weights")
    parser.add_argument("--toy-steps", type=int, default=None,
                        help="training steps of the small model whose agreement is also measured (0: skip)")
    parser.add_argument("--json", type=Path, default=None, help="write the result here (atomically)")
    args = parser.parse_args(argv)
    result = run(quick=args.quick, reps=args.reps, batch_size=args.batch_size, agree_batches=args.agree_batches,
                 source=args.source, threads=args.threads, checkpoint=args.checkpoint,
                 toy_steps=args.toy_steps)
    return finish(result, report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
