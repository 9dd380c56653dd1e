"""`lxmert quickstart` / `make demo`: the paper's central ablation on a generated world.

1. `lxmert synth`: a world of simple scenes in the release's file formats;
2. pre-train a small LXMERT on the train images in two stages: cross-modality matching
   alone on the region descriptions (`configs/demo-pretrain-ground.toml`, where the
   binding of words to regions is learned), then the five objectives on everything
   (captions, region descriptions, VQA/GQA-style questions with answers;
   `configs/demo-pretrain.toml`) starting from it;
3. fine-tune VQA-, GQA- and NLVR2-style heads on a limited labelled set, once from the
   pre-trained checkpoint (QA head remapped by answer text) and once from scratch, with
   the same recipe;
4. score both on held-out test images that pre-training never saw (VQA test, GQA testdev,
   NLVR2 test: disjoint images, their questions are not in the pre-training json);
5. write OUT/report.json `{"vqa": {"pretrained": x, "scratch": y}, ...}`, OUT/report.md,
   and plots (OUT/comparison.png and each run's curves).

Image-text retrieval is opt-in (`--tasks vqa gqa nlvr2 retrieval`; docs/retrieval.md):
the matching head fine-tuned from the pre-trained checkpoint and from scratch, scored on
every (image, sentence) pair of the 150 test images x 750 captions; its report figure is
the mean of Recall@1/5/10 in both directions, counting a caption that several images share
word for word as found by each of them (`mean_recall_dup`; the strict figure and the
pre-trained head's zero-shot recall are in report.md and report-details.json).

Every step is an ordinary run directory under OUT (config.json, metrics.jsonl,
checkpoints), so any of them can be inspected, plotted or resumed with the normal commands.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from lxmert.atomic import atomic_write_text

__all__ = ["QuickstartOptions", "quickstart", "TASKS", "OPTIONAL_TASKS", "REPORTED", "shown_percent", "shown_gain", "comparison_figure", "report_markdown"]

TASKS = ("vqa", "gqa", "nlvr2")
#: tasks the demo runs only when asked (`tasks=`): not part of `make demo`'s figures
OPTIONAL_TASKS = ("retrieval",)
#: the test metric each task's report row shows
REPORTED = {"vqa": "accuracy", "gqa": "accuracy", "nlvr2": "accuracy", "retrieval": "mean_recall_dup"}
_PREDICTIONS = {"nlvr2": "test_predict.csv", "retrieval": "test_rankings.json"}


@dataclass
class QuickstartOptions:
    """Knobs of the demo; the defaults are what `make demo` runs (< 10 min on 2 cores)."""

    images: int = 1500
    feat_dim: int = 64
    world_seed: int = 0
    max_objects: int = 4  # objects per scene (3..max); boxes = 5 x max_objects
    feature_noise: float = 0.5
    feature_code: str = "dense"  # `SynthConfig.feature_code`
    # NLVR2 statement kinds of the world (`lxmert.data.synth.NLVR2_KINDS`); empty = all of them.
    nlvr2_kinds: tuple[str, ...] = ()
    # NLVR2 sentences per image, each shown with 2 image pairs: 4 gives a 1200-pair test split
    # (one run's accuracy then moves by ~+-1.5 points from sampling alone, not +-3 as with 300).
    nlvr2_per_image: float = 4.0
    tasks: tuple[str, ...] = TASKS
    # One intra-op thread: the demo's matrices are small, and with two OpenMP threads any
    # other load on a small machine makes them spin-wait (docs/training.md); 0 = torch's default.
    threads: int = 1
    # Steps of the first pre-training stage (matching on region descriptions,
    # configs/demo-pretrain-ground.toml); 0 skips it (the mix then starts from scratch).
    ground_steps: int = 3000
    # Overrides of the pre-training recipes, applied to both stages (model sizes must agree).
    pretrain_overrides: list[str] = field(default_factory=list)
    finetune_overrides: list[str] = field(default_factory=list)
    progress: bool = True

    @classmethod
    def tiny(cls, **changes: Any) -> "QuickstartOptions":
        """A smoke run (`lxmert quickstart --tiny`): a 40-image world, a 32-wide model and a
        few steps per stage, so that every stage runs in seconds. It checks an installation,
        not the figures: its accuracies mean nothing."""
        model = ["model.hidden_size=32", "model.num_attention_heads=2", "model.intermediate_size=64",
                 "model.l_layers=1", "model.x_layers=1", "model.r_layers=1", "train.batch_size=8"]
        values: dict[str, Any] = dict(
            images=40, feat_dim=16, ground_steps=2,
            pretrain_overrides=[*model, "train.max_steps=3", "train.eval_every=0", "train.save_every=0",
                                "data.valid_limit=16"],
            finetune_overrides=[*model, "train.max_steps=2", "data.train_limit=32", "data.valid_limit=16"])
        values.update(changes)
        return cls(**values)


def _world(out: Path, opts: QuickstartOptions, log: Callable[[str], None]) -> Path:
    from lxmert.data.synth import SynthConfig, generate_world

    world = out / "world"
    config = SynthConfig(images=opts.images, feat_dim=opts.feat_dim, seed=opts.world_seed,
                         min_objects=min(3, opts.max_objects), max_objects=opts.max_objects,
                         num_boxes=5 * opts.max_objects, feature_noise=opts.feature_noise,
                         feature_code=opts.feature_code, nlvr2_kinds=tuple(opts.nlvr2_kinds),
                         nlvr2_per_image=opts.nlvr2_per_image,
                         # the test scenes as pictures, for `lxmert serve` (docs/serving.md)
                         pictures="test")
    marker = world / "synth.json"
    if marker.is_file():
        try:
            same = json.loads(marker.read_text())["config"] == json.loads(json.dumps(asdict(config)))
        except (ValueError, KeyError):
            same = False
        if same and (world / "features" / "store").is_dir():
            log(f"world: reusing {world}")
            return world
    summary = generate_world(world, config, build_store=True, progress=opts.progress, overwrite=True)
    log(f"world: {sum(summary.images.values())} images ({summary.images}) in {summary.seconds:.1f}s")
    return world


def quickstart(out_dir: str | os.PathLike, options: QuickstartOptions | None = None,
               log: Callable[[str], None] = print) -> dict[str, dict[str, float]]:
    """Run the whole demo into `out_dir`; return the report dict (also in report.json)."""
    import torch

    from lxmert.training.recipe import load_recipe
    from lxmert.api import evaluate, train

    opts = options or QuickstartOptions()
    unknown = set(opts.tasks) - set(TASKS + OPTIONAL_TASKS)
    if unknown:
        raise ValueError(f"unknown demo task(s) {sorted(unknown)}; choose from {TASKS + OPTIONAL_TASKS}")
    if opts.threads > 0:
        torch.set_num_threads(opts.threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.time()
    common = [] if opts.progress else ["train.progress=false"]

    t0 = time.time()
    world = _world(out, opts, log)
    timings["world"] = time.time() - t0

    stage_init: list[str] = []
    ground = None
    if opts.ground_steps > 0:
        t0 = time.time()
        ground_recipe = load_recipe("demo-pretrain-ground", [*common, *opts.pretrain_overrides,
                                                             f"train.max_steps={opts.ground_steps}"])
        log(f"pre-training stage 1, matching on region descriptions ({opts.ground_steps} steps) "
            f"-> {out / 'pretrain-ground'}")
        _fresh(out / "pretrain-ground")
        ground = train(world, out / "pretrain-ground", ground_recipe)
        timings["pretrain-ground"] = time.time() - t0
        log(f"stage 1: {ground.last_checkpoint}; validation {_short(ground.last_eval)}")
        stage_init = [f"model.init={json.dumps(ground.last_checkpoint)}"]

    t0 = time.time()
    pre_recipe = load_recipe("demo-pretrain", [*common, *stage_init, *opts.pretrain_overrides])
    log(f"pre-training ({pre_recipe.train.max_steps or pre_recipe.train.epochs} "
        f"{'steps' if pre_recipe.train.max_steps else 'epochs'}) -> {out / 'pretrain'}")
    _fresh(out / "pretrain")
    pre = train(world, out / "pretrain", pre_recipe)
    timings["pretrain"] = time.time() - t0
    checkpoint = pre.last_checkpoint
    log(f"pre-trained: {checkpoint}; validation {_short(pre.last_eval)}")

    report: dict[str, dict[str, float]] = {}
    details: dict[str, Any] = {"pretrain": {"checkpoint": checkpoint, "valid": pre.last_eval}}
    if ground is not None:
        details["pretrain-ground"] = {"checkpoint": ground.last_checkpoint, "valid": ground.last_eval}
    for task in opts.tasks:
        report[task] = {}
        details[task] = {}
        metric = REPORTED[task]
        if task == "retrieval":  # the pre-trained matching head as it is, before fine-tuning
            zero_shot = evaluate(task, world, checkpoint, split="test", config="demo-retrieval",
                                 overrides=[*common, *opts.finetune_overrides])
            details[task]["zero_shot"] = {"test": zero_shot}
            log(f"{task} / zero-shot pre-trained head: held-out {metric} {zero_shot[metric]:.4f}")
        for variant in ("pretrained", "scratch"):
            t0 = time.time()
            init = [f"model.init={json.dumps(checkpoint)}"] if variant == "pretrained" else []
            recipe = load_recipe(f"demo-{task}", [*common, *init, *opts.finetune_overrides])
            run_dir = out / task / variant
            log(f"{task} / {variant}: fine-tuning on {recipe.data.train_limit or 'all'} labelled examples -> {run_dir}")
            _fresh(run_dir)
            result = train(world, run_dir, recipe)
            best = result.best_checkpoint or result.last_checkpoint
            metrics = evaluate(task, world, best, split=recipe.data.test,
                               predictions_out=run_dir / _PREDICTIONS.get(task, "test_predict.json"))
            atomic_write_text(run_dir / "test_metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
            report[task][variant] = round(float(metrics[metric]), 4)
            details[task][variant] = {"test": metrics, "best_valid": result.best_metric, "best_step": result.best_step,
                                      "seconds": round(time.time() - t0, 1)}
            timings[f"{task}/{variant}"] = time.time() - t0
            log(f"{task} / {variant}: held-out {metric} {metrics[metric]:.4f}")
    timings["total"] = time.time() - started
    details["seconds"] = {k: round(v, 1) for k, v in timings.items()}
    details["options"] = asdict(opts)

    atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "report-details.json", json.dumps(details, indent=2, default=str) + "\n")
    _plots(out, report, opts, log)
    atomic_write_text(out / "report.md", report_markdown(report, details, opts))
    log(f"done in {timings['total'] / 60:.1f} min: {out / 'report.md'}")
    return report


def _fresh(run_dir: Path) -> None:
    """Remove a previous demo run of the same name (the demo's own output) before rerunning."""
    if run_dir.is_dir() and ((run_dir / "last").exists() or (run_dir / "metrics.jsonl").exists()):
        import shutil

        shutil.rmtree(run_dir)


def _short(metrics: dict[str, float]) -> str:
    keys = [k for k in metrics if "accuracy" in k and "/" not in k]
    return ", ".join(f"{k} {metrics[k]:.3f}" for k in keys) or "-"


def shown_percent(fraction: float) -> float:
    """A held-out accuracy (a fraction) as the report shows it: percent, one decimal."""
    return round(100.0 * float(fraction), 1)


def shown_gain(scratch: float, pretrained: float) -> float:
    """The gain of pre-training in points, from the two percentages as shown (one decimal
    each), so that the table's columns subtract exactly to its gain column: 47.0 - 22.3
    is +24.7 even when the unrounded accuracies differ by 24.79."""
    return round(shown_percent(pretrained) - shown_percent(scratch), 1)


def comparison_figure(report: dict[str, dict[str, float]]) -> Any:
    """The bar chart of `comparison.png`: held-out accuracy in percent per task, from
    scratch beside pre-trained, each bar labelled with its value, the gain under the task
    name, the legend outside the axes (it never covers a bar)."""
    from matplotlib.figure import Figure

    tasks = list(report)
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    width = 0.38
    for k, (variant, label, colour) in enumerate((("scratch", "from scratch", "#bbbbbb"),
                                                  ("pretrained", "pre-trained", "#3b75af"))):
        xs = [i + (k - 0.5) * width for i in range(len(tasks))]
        ys = [shown_percent(report[t][variant]) if variant in report[t] else float("nan") for t in tasks]
        bars = ax.bar(xs, ys, width, label=label, color=colour)
        ax.bar_label(bars, labels=[f"{y:.1f}" for y in ys], padding=2, fontsize=8)
    ticks = []
    for t in tasks:
        row = report[t]
        gain = (f"\n{shown_gain(row['scratch'], row['pretrained']):+.1f} points"
                if {"scratch", "pretrained"} <= set(row) else "")
        ticks.append(f"{t.upper()}{gain}")
    ax.set_xticks(range(len(tasks)), ticks, fontsize=9)
    ax.set_ylim(0, 108)  # room for the labels of bars at 100%
    ax.set_ylabel("held-out accuracy (%)" if "retrieval" not in report
                  else "held-out accuracy; retrieval: mean recall (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title("Pre-trained vs. from scratch, held-out test images (generated world)", fontsize=10)
    fig.legend(loc="outside right upper", fontsize=8, frameon=False)
    return fig


def _plots(out: Path, report: dict[str, dict[str, float]], opts: QuickstartOptions,
           log: Callable[[str], None]) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # the viz extra is optional
        log("matplotlib not installed: no plots (pip install 'lxmert[viz]')")
        return
    from lxmert.atomic import atomic_open
    from lxmert.viz.curves import plot_run

    plot_run(out / "pretrain")
    if (out / "pretrain-ground" / "metrics.jsonl").is_file():
        plot_run(out / "pretrain-ground")
    for task in report:
        for variant in report[task]:
            plot_run(out / task / variant)
    fig = comparison_figure(report)
    with atomic_open(out / "comparison.png", "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)


def report_markdown(report: dict[str, dict[str, float]], details: dict[str, Any], opts: QuickstartOptions) -> str:
    """report.md: the table of held-out accuracies (percent, one decimal; the gain from
    `shown_gain`, as in the README), the pre-training validation and the timings."""
    lines = [
        "# LXMERT quickstart: pre-training vs. from scratch",
        "",
        f"Generated world: {opts.images} images (seed {opts.world_seed}, {opts.feat_dim}-d region features). "
        "Fine-tuning uses a limited labelled set; accuracies are on held-out test images that "
        "pre-training never saw.",
        "",
        "| task | metric | from scratch | pre-trained | gain |",
        "|---|---|---|---|---|",
    ]
    names = {"vqa": "VQA accuracy (official)", "gqa": "GQA exact match", "nlvr2": "NLVR2 accuracy",
             "retrieval": "mean of R@1/5/10, both directions (same text)"}
    for task, row in report.items():
        s, p = row.get("scratch", float("nan")), row.get("pretrained", float("nan"))
        lines.append(f"| {task.upper()} | {names[task]} | {shown_percent(s):.1f} | {shown_percent(p):.1f} "
                     f"| {shown_gain(s, p):+.1f} |")
    retrieval = details.get("retrieval", {})
    if retrieval:
        size = retrieval.get("pretrained", retrieval.get("zero_shot", {})).get("test", {})
        lines += ["", f"Retrieval ({size.get('images', 0):.0f} test images x {size.get('sentences', 0):.0f} captions, "
                  "every pair scored): RSUM strict / same text"]
        for variant, label in (("scratch", "from scratch"), ("pretrained", "pre-trained"),
                               ("zero_shot", "pre-trained head, not fine-tuned")):
            test = retrieval.get(variant, {}).get("test")
            if test:
                lines.append(f"- {label}: {test['rsum']:.1f} / {test['rsum_dup']:.1f} (of 600); text->image "
                             f"R@1 {shown_percent(test['t2i_r1']):.1f} / {shown_percent(test['t2i_r1_dup']):.1f}")
    pre = details.get("pretrain", {}).get("valid", {})
    ground = details.get("pretrain-ground", {}).get("valid")
    stage1 = f"Pre-training stage 1 (matching on region descriptions) validation: {_short(ground)}. " if ground else ""
    lines += ["", f"{stage1}Pre-training validation: {_short(pre)}.", "", "Time (s): " +
              ", ".join(f"{k} {v}" for k, v in details.get("seconds", {}).items()), "",
              "Files: `pretrain-ground/`, `pretrain/` and `<task>/{pretrained,scratch}/` are ordinary run directories "
              "(`lxmert plot DIR`), `comparison.png` the bar chart, `report.json` the numbers.", ""]
    return "\n".join(lines)
