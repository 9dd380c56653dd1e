"""The real entry points, timed side by side with a transformers loop doing the same work.

On a generated corpus whose sentences have the real corpora's lengths
(`common.real_length_corpus`: 36 boxes x 2048-d features per image, pre-training text in the
release's source proportions), in one process, alternating the two sides each round (the
order flips every round):

- pretrain: `Trainer` steps of the lxr955 recipe, i.e. what `lxmert pretrain --config
  lxr955-pretrain --max-steps N` runs (`lxmert.api.train` = `make_task` + `Trainer.fit`;
  here with a hook that only records the batches' shapes), at B=32 on CPU. Seconds per step
  come from the loop's own metrics.jsonl (data loading included). Against: transformers'
  `LxmertForPreTraining` from the same initial weights, the same dataset's examples with
  the same objectives (lxr955 adds QA at epoch 10, so none in these steps), shuffled
  batches padded to 20 (its demo), torch's AdamW (default settings), the same clipping and
  warm-up schedule.
- evaluate / predict: `lxmert.api.evaluate` / `lxmert.api.predict` on a full-size VQA
  checkpoint (3129 answers), whole calls timed (loading the checkpoint and the split,
  batching, forward, the official metric / the test-server file). Against: transformers'
  `LxmertForQuestionAnswering` loaded from an HF-format copy of the same weights, the same
  dataset in file order padded to 20, under `inference_mode`, arg-max, the same metric /
  writer.

The training step's model FLOP/s (GEMMs and attention products of the shapes fed, MLM and
feature regression at masked rows only, 3x forward) is divided by a large-GEMM probe of the
same process. `--profile` adds a `torch.profiler` table of lxmert's training steps (through
the same loop) grouped by what the time goes to.

Run:  python benchmarks/bench_commands.py [--rounds 2] [--steps 10] [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (StepRecorder, configure_threads, format_table, gemm_rate, hf_model_from_ours,  # noqa: E402
                    machine_info, real_length_corpus, step_flops, step_seconds, write_json)

FIGURES = ("pretrain", "evaluate", "predict")
#: what the quick run shrinks the model to (a check that everything runs, not a figure)
QUICK_MODEL = ["model.hidden_size=64", "model.num_attention_heads=2", "model.intermediate_size=128",
               "model.l_layers=1", "model.x_layers=1", "model.r_layers=1"]
PAD_TO = 20  # the transformers demo pads every batch to 20 word pieces


def pad_text(inputs: dict[str, Any], width: int = PAD_TO) -> dict[str, Any]:
    """The batch padded as the transformers demo does: text to `width` ids (labels -100)."""
    out = dict(inputs)
    for key, value in (("input_ids", 0), ("attention_mask", 0), ("token_type_ids", 0), ("labels", -100)):
        t = out.get(key)
        if isinstance(t, torch.Tensor) and t.dim() == 2 and t.shape[1] < width and \
                (key != "labels" or t.shape == inputs["input_ids"].shape):
            out[key] = torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)
    return out


def pretrain_recipe(batch_size: int, steps: int, extra: list[str]):
    from lxmert.training.recipe import load_recipe

    return load_recipe("lxr955-pretrain", [
        'data.train=["mscoco_train"]', 'data.valid=""', 'data.features=["features/store"]', "data.num_workers=0",
        f"train.batch_size={batch_size}", f"train.max_steps={steps}", "train.log_every=1", "train.save_every=0",
        "train.keep_last=1", "train.progress=false", *extra])


def useful_flops(config, record: dict[str, Any], heads=("mlm", "matched", "obj")) -> float:
    b = record["batch"]
    return step_flops(config, [record["width"]] * b, record["objects"], mlm_rows=record.get("mlm_rows"),
                      heads=heads, training=True, feat_rows=record.get("feat_rows"))


def shapes_of(inputs: dict[str, Any]) -> dict[str, Any]:
    recorder = StepRecorder()
    recorder.micro_step(None, inputs, None)
    return recorder.micro[0]


def run_lxmert_pretrain(corpus: Path, recipe, work: Path, skip: int) -> dict[str, Any]:
    """`Trainer.fit` as `lxmert.api.train` runs it; per-step seconds from its metrics."""
    from lxmert.api import make_task
    from lxmert.training.trainer import Trainer

    out = work / "lxmert-run"
    shutil.rmtree(out, ignore_errors=True)
    recorder = StepRecorder()
    started = time.perf_counter()
    Trainer(recipe, make_task(recipe, corpus), out, hooks=[recorder]).fit()
    wall = time.perf_counter() - started
    seconds = step_seconds(out, recipe.train.batch_size)
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": seconds[skip:], "wall_s": wall, "micro": recorder.micro[skip:],
            "config": recorder.config.to_dict() if hasattr(recorder.config, "to_dict") else None,
            "padding": recorder.summary(skip)}


def run_transformers_pretrain(corpus: Path, recipe, skip: int, seed: int) -> dict[str, Any]:
    """The transformers loop: same initial weights, data, objectives, schedule; padded to 20."""
    import transformers
    from torch.utils.data import DataLoader

    from lxmert.api import make_task

    task = make_task(recipe, corpus)
    torch.manual_seed(recipe.train.seed % 2**32)  # the Trainer's initialisation
    ours = task.build_model()
    model = hf_model_from_ours(ours, "LxmertForPreTraining").train()
    del ours
    dataset = task.train_dataset()
    dataset.set_epoch(0)
    loader = DataLoader(dataset, batch_size=recipe.train.batch_size, shuffle=True, drop_last=True,
                        collate_fn=task.collate, generator=torch.Generator().manual_seed(seed))
    o, steps = recipe.optim, recipe.train.max_steps
    optimizer = torch.optim.AdamW(model.parameters(), lr=o.lr, betas=tuple(o.betas), eps=o.eps,
                                  weight_decay=o.weight_decay)
    schedule = transformers.get_linear_schedule_with_warmup(optimizer, int(o.warmup * steps), steps)
    seconds, micro, batches = [], [], iter(loader)
    for _ in range(steps):
        start = time.perf_counter()
        inputs = pad_text(task.targets(next(batches).inputs, 0))
        loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), o.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        seconds.append(time.perf_counter() - start)
        micro.append(shapes_of(inputs))
        if not math.isfinite(float(loss.detach())):
            raise RuntimeError(f"transformers loss is {float(loss.detach())}")
    return {"seconds": seconds[skip:], "micro": micro[skip:]}


def qa_checkpoint(work: Path, model_sets: list[str], seed: int, feat_dim: int) -> tuple[Path, Path]:
    """A full-size VQA checkpoint (ours, 3129 answers) and its HF-format copy."""
    from lxmert import LxmertConfig, LxmertForQuestionAnswering
    from lxmert.text import AnswerTable

    ours_dir, hf_dir = work / "vqa-checkpoint", work / "vqa-checkpoint-hf"
    if (ours_dir / "config.json").is_file() and (hf_dir / "config.json").is_file():
        return ours_dir, hf_dir
    table = AnswerTable.from_name("vqa")
    sizes = {s.split("=")[0].split(".")[1]: int(s.split("=")[1]) for s in model_sets}
    torch.manual_seed(seed)
    model = LxmertForQuestionAnswering(LxmertConfig(num_qa_labels=len(table), visual_feat_dim=feat_dim, **sizes),
                                       answers=table.answers)
    model.save_pretrained(ours_dir)
    hf_model_from_ours(model, "LxmertForQuestionAnswering").save_pretrained(hf_dir)
    return ours_dir, hf_dir


def inference_sets(model_sets: list[str]) -> list[str]:
    return ['data.features=["features/store"]', "data.num_workers=0"]


def run_lxmert_inference(kind: str, corpus: Path, checkpoint: Path, split: str, work: Path,
                         amp: str) -> dict[str, Any]:
    from lxmert import api

    start = time.perf_counter()
    if kind == "evaluate":
        result: Any = api.evaluate("vqa", corpus, checkpoint, split=split, overrides=inference_sets([]),
                                   device="cpu", amp=amp)
    else:
        result = str(api.predict("vqa", corpus, checkpoint, work / "lxmert-predict.json", split=split,
                                 overrides=inference_sets([]), device="cpu", amp=amp))
    return {"seconds": time.perf_counter() - start, "accuracy": result.get("accuracy") if kind == "evaluate" else None}


def run_transformers_inference(kind: str, corpus: Path, checkpoint: Path, hf_dir: Path, split: str,
                               work: Path, batch_size: int) -> dict[str, Any]:
    """Load the HF copy, read the same split, batches in file order padded to 20, arg-max,
    then the same metric (evaluate) or test-server writer (predict)."""
    import transformers
    from torch.utils.data import DataLoader

    from lxmert.api import inference_recipe, make_task
    from lxmert.evaluation import get_metric
    from lxmert.evaluation.submissions import write_predictions

    start = time.perf_counter()
    model = transformers.LxmertForQuestionAnswering.from_pretrained(hf_dir).eval()
    task = make_task(inference_recipe("vqa", checkpoint, inference_sets([])), corpus)
    answers = task.answers.answers
    dataset = task.make_dataset(split, train=False)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=dataset.collate)
    by_id: dict[Any, str] = {}
    with torch.inference_mode():
        for batch in loader:
            inputs = pad_text({k: v for k, v in batch.inputs.items() if k != "labels"})
            scores = model(**inputs).question_answering_score
            for qid, k in zip(batch.meta["question_id"], scores.argmax(-1).tolist()):
                by_id[qid] = answers[k]
    accuracy = None
    if kind == "evaluate":
        accuracy = get_metric("vqa")(by_id, dataset.raw)["accuracy"]
    else:
        write_predictions("vqa", work / "transformers-predict.json", by_id)
    return {"seconds": time.perf_counter() - start, "accuracy": accuracy, "questions": len(by_id)}


def profile_steps(corpus: Path, recipe, steps: int) -> dict[str, Any]:
    """`torch.profiler` over lxmert's training steps 3..steps of the real loop (the hook
    steps the profiler at each micro-batch, so the window covers data, forward, backward and
    the optimiser), grouped by what the time goes to."""
    from torch.profiler import ProfilerActivity, profile, schedule

    from lxmert.api import make_task
    from lxmert.training.hooks import TrainerHook
    from lxmert.training.trainer import Trainer

    class Stepper(TrainerHook):
        def __init__(self, prof):
            self.prof = prof

        def micro_step(self, *args, **kwargs):
            self.prof.step()
            return None

    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        with profile(activities=[ProfilerActivity.CPU],
                     schedule=schedule(wait=1, warmup=1, active=steps - 2, repeat=1)) as prof:
            Trainer(recipe, make_task(recipe, corpus), Path(tmp) / "run", hooks=[Stepper(prof)]).fit()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    groups = {"GEMM (mm, addmm, bmm, baddbmm)": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"),
              "attention kernels (SDPA, softmax)": ("aten::_scaled_dot_product", "aten::_softmax",
                                                    "aten::_softmax_backward_data"),
              "copies / layout (copy_, cat, stack, contiguous)": ("aten::copy_", "aten::cat", "aten::stack",
                                                                  "aten::clone"),
              "dropout (bernoulli_, mul by mask)": ("aten::bernoulli_",),
              "optimiser (fused AdamW)": ("aten::_fused_adamw", "aten::_fused_adam"),
              "gradient fills / zeros": ("aten::fill_", "aten::zero_"),
              "LayerNorm fwd+bwd": ("aten::native_layer_norm",),
              "GeLU fwd+bwd": ("aten::gelu",)}
    shares = {name: 0.0 for name in groups}
    for e in events:
        for name, prefixes in groups.items():
            if e.key.startswith(prefixes):
                shares[name] += e.self_cpu_time_total
                break
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:25]
    return {"steps": steps - 2, "total_self_cpu_s": total / 1e6,
            "groups": {k: v / total for k, v in shares.items()},
            "other": 1.0 - sum(shares.values()) / total,
            "top_ops": [{"op": e.key, "share": e.self_cpu_time_total / total, "calls": e.count} for e in top]}


def run(quick: bool = False, rounds: int = 2, steps: int | None = None, batch_size: int | None = None,
        figures: tuple[str, ...] = FIGURES, amp: str = "none", threads: int | None = None,
        corpus_dir: str | None = None, profile: bool = False, progress: bool = True,
        reps: int | None = None) -> dict[str, Any]:
    """Measure and return a JSON-ready dict (`reps` is an alias of `rounds` for `lxmert bench`)."""
    configure_threads(threads)
    rounds = reps or rounds
    steps = steps or (3 if quick else 10)
    batch_size = batch_size or (8 if quick else 32)
    skip = 1 if quick else 2  # the first steps allocate and warm the kernels
    model_sets = QUICK_MODEL if quick else []
    log = print if progress else (lambda *a, **k: None)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-commands-")))
        corpus = Path(corpus_dir) if corpus_dir else work / "corpus"
        feat_dim = 64 if quick else 2048
        corpus_stats = real_length_corpus(corpus, images=30 if quick else 300,
                                          questions_per_image=10 if quick else 30, feat_dim=feat_dim)
        result: dict[str, Any] = {"figure": "commands", "batch_size": batch_size, "steps": steps, "skip": skip,
                                  "rounds": rounds, "amp": amp, "quick": quick, "machine": machine_info(),
                                  "corpus": corpus_stats, "gemm_probes": [gemm_rate()]}
        log(f"corpus {corpus}: mean ids per pre-training sentence {corpus_stats['mean_ids_pretraining']:.1f}; "
            f"load {result['machine']['load_avg_1m']:.1f}")
        amp_sets = [f"train.amp={amp}"] if amp != "none" else []
        recipe = pretrain_recipe(batch_size, steps, [*model_sets, *amp_sets])
        if "pretrain" in figures:
            result["pretrain"] = []
            for r in range(rounds):
                sides = ["lxmert", "transformers"] if r % 2 == 0 else ["transformers", "lxmert"]
                got: dict[str, Any] = {"load_avg_1m": os.getloadavg()[0]}
                for side in sides:
                    log(f"pretrain round {r + 1}/{rounds}: {side} ({steps} steps of {batch_size})", flush=True)
                    got[side] = (run_lxmert_pretrain(corpus, recipe, work, skip) if side == "lxmert"
                                 else run_transformers_pretrain(corpus, recipe, skip, seed=r))
                result["pretrain"].append(_training_figure(got, recipe, batch_size))
                result["gemm_probes"].append(gemm_rate())
        if "evaluate" in figures or "predict" in figures:
            checkpoint, hf_dir = qa_checkpoint(work, model_sets, seed=0, feat_dim=feat_dim)
            eval_batch = recipe.train.batch_size
            for kind, split in (("evaluate", "minival"), ("predict", "test")):
                if kind not in figures:
                    continue
                result[kind] = []
                for r in range(rounds):
                    sides = ["lxmert", "transformers"] if r % 2 == 0 else ["transformers", "lxmert"]
                    got = {"load_avg_1m": os.getloadavg()[0]}
                    for side in sides:
                        log(f"{kind} round {r + 1}/{rounds}: {side}", flush=True)
                        got[side] = (run_lxmert_inference(kind, corpus, checkpoint, split, work, amp)
                                     if side == "lxmert" else
                                     run_transformers_inference(kind, corpus, checkpoint, hf_dir, split, work,
                                                                eval_batch))
                    n = got["transformers"]["questions"]
                    for side in ("lxmert", "transformers"):
                        got[side]["samples_per_s"] = n / got[side]["seconds"]
                    got["ratio"] = got["lxmert"]["samples_per_s"] / got["transformers"]["samples_per_s"]
                    result[kind].append(got)
        if profile:
            log("profile: lxmert training steps under torch.profiler", flush=True)
            result["profile"] = profile_steps(corpus, pretrain_recipe(batch_size, steps + 2, [*model_sets, *amp_sets]),
                                              steps + 2)
        result["gemm_flops"] = statistics.median(result["gemm_probes"])
        for got in result.get("pretrain", []):
            got["lxmert"]["gemm_fraction"] = got["lxmert"]["model_flops_per_s"] / result["gemm_flops"]
            got["transformers"]["gemm_fraction"] = got["transformers"]["model_flops_per_s"] / result["gemm_flops"]
        result["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    return result


def _training_figure(got: dict[str, Any], recipe, batch_size: int) -> dict[str, Any]:
    from lxmert import LxmertConfig

    config = LxmertConfig(**{k: v for k, v in got["lxmert"].pop("config").items()
                             if k in LxmertConfig.__dataclass_fields__})
    for side in ("lxmert", "transformers"):
        fig = got[side]
        total = sum(fig["seconds"])
        fig["samples_per_s"] = batch_size * len(fig["seconds"]) / total
        fig["median_step_s"] = statistics.median(fig["seconds"])
        flops = sum(useful_flops(config, m) for m in fig["micro"])
        fig["model_flops_per_s"] = flops / total
        fig["mean_width"] = statistics.fmean(m["width"] for m in fig["micro"])
        fig["mean_tokens"] = statistics.fmean(m["tokens"] / m["batch"] for m in fig["micro"])
        del fig["micro"]
    got["ratio"] = got["lxmert"]["samples_per_s"] / got["transformers"]["samples_per_s"]
    return got


def report(result: dict[str, Any]) -> str:
    rows = []
    for kind, label in (("pretrain", "`lxmert pretrain` (Trainer steps, lxr955)"),
                        ("evaluate", "`lxmert evaluate vqa` (whole call)"),
                        ("predict", "`lxmert predict vqa` (whole call)")):
        for r, got in enumerate(result.get(kind, [])):
            frac = got["lxmert"].get("gemm_fraction", math.nan)
            width = (f"{got['lxmert']['mean_width']:.1f} vs {got['transformers']['mean_width']:.0f}"
                     if "mean_width" in got["lxmert"] else "-")
            rows.append([f"{label}, round {r + 1}", got["lxmert"]["samples_per_s"],
                         got["transformers"]["samples_per_s"], got["ratio"], frac, width, got["load_avg_1m"]])
    m = result["machine"]
    head = (f"real entry points vs transformers on {m['cpu']} ({m['torch_threads']} threads), B={result['batch_size']}, "
            f"amp {result['amp']}; corpus: {result['corpus']['mean_ids_pretraining']:.1f} ids per pre-training "
            f"sentence; GEMM {result['gemm_flops'] / 1e9:.0f} GFLOP/s; load {m['load_avg_1m']:.1f} -> "
            f"{m['load_avg_1m_end']:.1f}" + (" (QUICK: tiny model, not a figure)" if result["quick"] else ""))
    table = format_table(rows, ["figure", "lxmert samples/s", "transformers samples/s", "ratio",
                                "lxmert FLOP/s / GEMM", "text ids padded (lxmert vs transformers)", "load"])
    out = head + "\n" + table
    if "profile" in result:
        p = result["profile"]
        lines = [f"\nprofile of {p['steps']} lxmert training steps ({p['total_self_cpu_s']:.1f} s self CPU):"]
        lines += [f"  {share:6.1%}  {name}" for name, share in sorted(p["groups"].items(), key=lambda x: -x[1])]
        lines.append(f"  {p['other']:6.1%}  other; the largest ops:")
        lines += [f"  {op['share']:6.1%}  {op['op']} ({op['calls']} calls)" for op in p["top_ops"][:12]]
        out += "\n".join(lines)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, few steps: checks that it runs")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per figure (default 2)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per side and round (default 10)")
    parser.add_argument("--batch-size", type=int, default=None, help="training batch (default 32)")
    parser.add_argument("--figures", default=",".join(FIGURES), help=f"comma list of: {', '.join(FIGURES)}")
    parser.add_argument("--amp", default="none", choices=("none", "bf16"),
                        help="lxmert's precision (transformers stays fp32)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--corpus", default=None, help="keep / reuse the generated corpus here")
    parser.add_argument("--profile", action="store_true", help="also profile lxmert's training steps")
    parser.add_argument("--json", type=Path, default=None, help="write the raw result here (atomically)")
    args = parser.parse_args(argv)
    figures = tuple(f.strip() for f in args.figures.split(",") if f.strip())
    unknown = sorted(set(figures) - set(FIGURES))
    if unknown:
        parser.error(f"--figures: unknown {unknown}; choose from {list(FIGURES)}")
    result = run(quick=args.quick, rounds=args.rounds, steps=args.steps, batch_size=args.batch_size,
                 figures=figures, amp=args.amp, threads=args.threads, corpus_dir=args.corpus,
                 profile=args.profile)
    print(report(result))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
