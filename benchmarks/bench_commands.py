"""The real entry points, timed side by side with a transformers loop doing the same work.

On a generated corpus whose sentences have the real corpora's lengths
(`common.real_length_corpus`: 36 boxes x 2048-d features per image, pre-training text in the
release's source proportions), in one process:

- pretrain: `Trainer` steps of the lxr955 recipe, i.e. what `lxmert pretrain --config
  lxr955-pretrain --max-steps N` runs (`lxmert.api.train` = `make_task` + `Trainer.fit`),
  at B=32 on CPU, interleaved step by step with the transformers loop: a hook runs, before
  each of lxmert's steps, one step of transformers' `LxmertForPreTraining` (from the same
  initial weights; the same dataset's examples with the same objectives - lxr955 adds QA
  at epoch 10, so none in these steps; shuffled batches padded to 20 as its demo; torch's
  AdamW with default settings; the same clipping and warm-up schedule) and a GEMM probe,
  each timed apart. lxmert's step is the loop's own time (metrics.jsonl, data loading
  included) minus those two. Interleaving steps, not runs, is what makes the ratio
  stable on a machine whose speed other jobs change from one minute to the next.
- evaluate / predict: `lxmert.api.evaluate` / `lxmert.api.predict` on a full-size VQA
  checkpoint (3129 answers), whole calls timed (loading the checkpoint and the split,
  batching, forward, the official metric / the test-server file). Against: transformers'
  `LxmertForQuestionAnswering` loaded from an HF-format copy of the same weights, the same
  dataset in file order padded to 20, under `inference_mode`, arg-max, the same metric /
  writer. The two sides alternate call by call for `--rounds` rounds (order flipped each
  round); the figure is the median of the rounds' ratios.

The training step's model FLOP/s (GEMMs and attention products of the shapes fed, MLM and
feature regression at masked rows only, 3x forward) is divided by the large-GEMM probe run
next to that step (median over the steps). `--profile` adds a `torch.profiler` table of lxmert's training steps (through
the same loop) grouped by what the time goes to.

Run:  python benchmarks/bench_commands.py [--rounds 3] [--steps 12] [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
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

from common import (finish, StepRecorder, configure_threads, format_table, gemm_rate, hf_model_from_ours,  # noqa: E402
                    machine_info, real_length_corpus, step_flops, step_seconds)

from lxmert.training.hooks import TrainerHook  # noqa: E402

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


class PeerSteps(TrainerHook):
    """Interleaves the transformers loop with the real one, step by step: before each of
    lxmert's micro-steps it runs one transformers training step and a GEMM probe, timed
    apart, so that both sides (and the probe) meet the same neighbours on a shared machine.
    It returns None: the loop then runs its own step, which the metrics time (minus these)."""

    def __init__(self, task, recipe, seed: int) -> None:
        self.task, self.recipe, self.seed = task, recipe, seed
        self.seconds: list[float] = []
        self.probe_seconds: list[float] = []
        self.probe_rates: list[float] = []
        self.micro: list[dict[str, Any]] = []

    def on_setup(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        import transformers
        from torch.utils.data import DataLoader

        self.model = hf_model_from_ours(model, "LxmertForPreTraining").train()  # the same initial weights
        dataset = self.task.train_dataset()
        loader = DataLoader(dataset, batch_size=self.recipe.train.batch_size, shuffle=True, drop_last=True,
                            collate_fn=self.task.collate, generator=torch.Generator().manual_seed(self.seed))
        self.batches = iter(loader)
        o, steps = self.recipe.optim, self.recipe.train.max_steps
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=o.lr, betas=tuple(o.betas), eps=o.eps,
                                           weight_decay=o.weight_decay)  # torch's default implementation
        self.schedule = transformers.get_linear_schedule_with_warmup(self.optimizer, int(o.warmup * steps), steps)

    def micro_step(self, model, inputs, loss_fn, **kwargs) -> None:
        start = time.perf_counter()
        peer = pad_text(self.task.targets(next(self.batches).inputs, 0))  # lxr955: no QA before epoch 10
        loss = self.model(**peer).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.optim.max_grad_norm)
        self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.seconds.append(time.perf_counter() - start)
        if not math.isfinite(float(loss.detach())):
            raise RuntimeError(f"transformers loss is {float(loss.detach())}")
        self.micro.append(shapes_of(peer))
        start = time.perf_counter()
        self.probe_rates.append(gemm_rate(reps=1))
        self.probe_seconds.append(time.perf_counter() - start)
        return None


def run_pretrain_pair(corpus: Path, recipe, work: Path, skip: int, seed: int) -> dict[str, Any]:
    """`Trainer.fit` as `lxmert.api.train` runs it (+ the recording and peer hooks); lxmert's
    per-step seconds from its metrics.jsonl minus the peer's step and the probe."""
    from lxmert.api import make_task
    from lxmert.training.trainer import Trainer

    out = work / "lxmert-run"
    shutil.rmtree(out, ignore_errors=True)
    recorder = StepRecorder()
    task = make_task(recipe, corpus)
    peer = PeerSteps(task, recipe, seed)
    Trainer(recipe, task, out, hooks=[peer, recorder]).fit()
    logged = step_seconds(out, recipe.train.batch_size)
    shutil.rmtree(out, ignore_errors=True)
    ours = [t - p - g for t, p, g in zip(logged, peer.seconds, peer.probe_seconds)]
    config = recorder.config
    return {"lxmert": {"seconds": ours[skip:], "micro": recorder.micro[skip:], "padding": recorder.summary(skip)},
            "transformers": {"seconds": peer.seconds[skip:], "micro": peer.micro[skip:]},
            "gemm_probe_per_step": peer.probe_rates[skip:], "config": config}


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
    from lxmert.text import AnswerTable

    start = time.perf_counter()
    model = transformers.LxmertForQuestionAnswering.from_pretrained(hf_dir).eval()
    task = make_task(inference_recipe("vqa", checkpoint, inference_sets([])), corpus)
    # the table the checkpoint's head was built with (qa_checkpoint), as lxmert's side uses
    # it (Task.load_model); the data root's own table may be another
    task.answers = AnswerTable.from_name("vqa")
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


def run(quick: bool = False, rounds: int = 3, steps: int | None = None, batch_size: int | None = None,
        figures: tuple[str, ...] = FIGURES, amp: str = "none", threads: int | None = None,
        corpus_dir: str | None = None, profile: bool = False, progress: bool = True,
        reps: int | None = None, pretrain_rounds: int = 1) -> dict[str, Any]:
    """Measure and return a JSON-ready dict (`reps` is an alias of `rounds` for `lxmert bench`)."""
    configure_threads(threads)
    rounds = reps or rounds
    steps = steps or (3 if quick else 12)
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
            for r in range(pretrain_rounds):
                log(f"pretrain round {r + 1}/{pretrain_rounds}: {steps} interleaved steps of {batch_size} "
                    f"(lxmert's Trainer, a transformers step and a GEMM probe before each)", flush=True)
                got = {"load_avg_1m": os.getloadavg()[0], **run_pretrain_pair(corpus, recipe, work, skip, seed=r)}
                result["pretrain"].append(_training_figure(got, batch_size))
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
                result[f"{kind}_median_ratio"] = statistics.median(g["ratio"] for g in result[kind])
        if profile:
            log("profile: lxmert training steps under torch.profiler", flush=True)
            result["profile"] = profile_steps(corpus, pretrain_recipe(batch_size, steps + 2, [*model_sets, *amp_sets]),
                                              steps + 2)
        result["gemm_flops"] = statistics.median(result["gemm_probes"])
        for got in result.get("pretrain", []):
            for side in ("lxmert", "transformers"):
                got[side]["gemm_fraction"] = got[side]["gemm_fraction_per_step"]
        result["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    return result


def _training_figure(got: dict[str, Any], batch_size: int) -> dict[str, Any]:
    config = got.pop("config")
    probes = got.pop("gemm_probe_per_step")
    for side in ("lxmert", "transformers"):
        fig = got[side]
        total = sum(fig["seconds"])
        fig["samples_per_s"] = batch_size * len(fig["seconds"]) / total
        fig["median_step_s"] = statistics.median(fig["seconds"])
        flops = [useful_flops(config, m) for m in fig["micro"]]
        fig["model_flops_per_s"] = sum(flops) / total
        # each step against the probe run next to it: robust to the machine's rate moving
        fig["gemm_fraction_per_step"] = statistics.median(f / t / g for f, t, g in zip(flops, fig["seconds"], probes))
        fig["mean_width"] = statistics.fmean(m["width"] for m in fig["micro"])
        fig["mean_tokens"] = statistics.fmean(m["tokens"] / m["batch"] for m in fig["micro"])
        del fig["micro"]
    got["gemm_probe_median"] = statistics.median(probes)
    got["ratio"] = got["lxmert"]["samples_per_s"] / got["transformers"]["samples_per_s"]
    got["ratio_of_median_steps"] = got["transformers"]["median_step_s"] / got["lxmert"]["median_step_s"]
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
            ratio = (f"{got['ratio']:.2f} (medians {got['ratio_of_median_steps']:.2f})"
                     if "ratio_of_median_steps" in got else got["ratio"])
            rows.append([f"{label}, round {r + 1}", got["lxmert"]["samples_per_s"],
                         got["transformers"]["samples_per_s"], ratio, frac, width, got["load_avg_1m"]])
    m = result["machine"]
    head = (f"real entry points vs transformers on {m['cpu']} ({m['torch_threads']} threads), B={result['batch_size']}, "
            f"amp {result['amp']}; corpus: {result['corpus']['mean_ids_pretraining']:.1f} ids per pre-training "
            f"sentence; GEMM {result['gemm_flops'] / 1e9:.0f} GFLOP/s; load {m['load_avg_1m']:.1f} -> "
            f"{m['load_avg_1m_end']:.1f}" + (" (QUICK: tiny model, not a figure)" if result["quick"] else ""))
    table = format_table(rows, ["figure", "lxmert samples/s", "transformers samples/s", "ratio",
                                "lxmert FLOP/s / GEMM", "text ids padded (lxmert vs transformers)", "load"])
    medians = [f"{kind} {result[f'{kind}_median_ratio']:.2f}x" for kind in ("evaluate", "predict")
               if f"{kind}_median_ratio" in result]
    out = head + "\n" + table + (f"\nmedian ratio over the rounds: {', '.join(medians)}" if medians else "")
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
    parser.add_argument("--rounds", type=int, default=3, help="alternating evaluate / predict rounds (default 3)")
    parser.add_argument("--pretrain-rounds", type=int, default=1, help="interleaved training runs (default 1)")
    parser.add_argument("--steps", type=int, default=None, help="interleaved training steps per run (default 12)")
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
    result = run(quick=args.quick, rounds=args.rounds, pretrain_rounds=args.pretrain_rounds, steps=args.steps,
                 batch_size=args.batch_size,
                 figures=figures, amp=args.amp, threads=args.threads, corpus_dir=args.corpus,
                 profile=args.profile)
    return finish(result, report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
