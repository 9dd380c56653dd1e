"""Training and validation curves of a run, drawn from RUN_DIR/metrics.jsonl.

A panel only ever holds one kind of quantity, so that its y axis means one thing:

- `loss.png`: the total loss, train against validation where the two are the same
  quantity (see `totals_comparable`); for pre-training also each objective's loss, train
  (solid) against validation (dashed, markers) in one colour per objective.
- `metrics.png` (when there is a validation split): the validation metrics that are
  fractions in [0, 1] (accuracies, consistency, F1, ...), their per-type breakdowns in
  panels of their own; counts such as `num_questions` are never drawn on a fraction
  axis (a constant count goes into the title, a changing one gets its own panel).
- `training.png`: learning rate, throughput and gradient norm, one panel each, plus any
  other number the training records carry: the adversarial terms grouped by kind
  (perturbed vs clean loss, KL, perturbation size), anything unknown alone.

What metrics.jsonl holds (training/trainer.py, training/tasks.py): a train record's
`loss` is what backprop saw - for pre-training the sum of the objectives weighted by
`pretrain.loss_weights`, for adversarial fine-tuning the task loss plus the adversarial
terms - and its per-objective values (`mlm`, `matched`, ...) are unweighted. A validation
record's `loss` is the unweighted sum and its per-objective values are `mlm_loss`, ... .
So the train total is drawn against the validation total only when it is the same sum;
otherwise the unweighted train sum is rebuilt from the per-objective values for that
comparison (adversarial runs: their logged `clean_loss`) and the optimised total gets a
panel of its own.

`plan_figures` decides the panels without matplotlib (what the tests check),
`draw_figures` turns them into matplotlib Figures, `plot_run` writes the PNGs.
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lxmert.training.metrics_log import read_metrics
from lxmert.tasks.pretrain import PRETRAIN_LOSSES
from lxmert.atomic import atomic_open

__all__ = ["Curve", "Panel", "collect_series", "totals_comparable", "plan_figures", "draw_figures",
           "plot_run", "OBJECTIVE_NAMES"]

#: what each pre-training objective measures (legend text next to the metrics.jsonl key)
OBJECTIVE_NAMES = {
    "mlm": "masked words",
    "matched": "image-sentence match",
    "obj": "object class",
    "attr": "attribute",
    "feat": "region-feature regression",
    "qa": "answer",
}

# Bookkeeping fields of every record, not curves.
_META = {"step", "epoch", "time", "split"}
# Relative tolerance when checking that a logged total equals the sum of its logged parts:
# both are float32 means over the same log window, so only rounding separates them.
_SUM_RTOL = 1e-3
# A per-type breakdown with more categories than this is not drawn (it would be a tangle);
# the figure says which and how many.
_MAX_BREAKDOWN = 12
_COUNT = re.compile(r"(^|_)num(_|$)|(^|_)count(_|$)")
_TYPED_BREAKDOWN = re.compile(r"^([^/]+)/([A-Za-z0-9_]+_type)/(.+)$")
# Validation numbers that live in [0, 1] often enough but are not fractions of anything.
_NOT_FRACTIONS = {"distribution"}


@dataclass(frozen=True)
class Curve:
    """One line: `quantity` names what is measured (train and validation curves of one
    quantity share a colour), `key` the metrics.jsonl field it comes from."""

    quantity: str
    split: str
    key: str
    label: str
    steps: tuple[float, ...]
    values: tuple[float, ...]
    same_as: tuple[str, ...] = ()  # keys whose values are identical, drawn as this one line


@dataclass
class Panel:
    """One axis of one kind (`kind`: loss, fraction, count, lr, throughput, grad_norm, other)."""

    kind: str
    title: str
    ylabel: str
    curves: list[Curve] = field(default_factory=list)
    note: str = ""


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.lower() in ("nan", "inf", "-inf"):
        return float(value)  # how MetricsWriter keeps non-finite values; drawn as gaps
    return None


def collect_series(records: list[dict[str, Any]]) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """{split: {key: (steps, values)}} for every numeric field of every record with a step
    (non-finite values, stored as strings, come back as floats)."""
    out: dict[str, dict[str, tuple[list[float], list[float]]]] = defaultdict(dict)
    for rec in records:
        split = str(rec.get("split", "train"))
        step = rec.get("step")
        if step is None:
            continue
        for key, value in rec.items():
            number = _number(value)
            if key in _META or number is None:
                continue
            xs, ys = out[split].setdefault(key, ([], []))
            xs.append(float(step))
            ys.append(number)
    return dict(out)


def _train_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if str(r.get("split", "train")) == "train" and r.get("step") is not None]


def _eval_splits(records: list[dict[str, Any]]) -> list[str]:
    return sorted({str(r.get("split")) for r in records if r.get("split", "train") != "train"})


def _objectives(record: dict[str, Any], split: str) -> set[str]:
    suffix = "" if split == "train" else "_loss"
    return {k for k in PRETRAIN_LOSSES if _number(record.get(k + suffix)) is not None}


def totals_comparable(records: list[dict[str, Any]], split: str = "valid") -> tuple[bool, str]:
    """Whether the train records' `loss` is the same quantity as `split`'s `loss`, and why not.

    The same when the train total is the plain sum of the same objectives the evaluation
    sums: no `pretrain.loss_weights` (the total equals the sum of its logged parts), no
    adversarial terms (`adv_*` keys), and, for pre-training, the same set of objectives at
    every logged step (QA joins training only at `pretrain.qa_from_epoch`, but is always
    evaluated). Task fine-tuning logs no parts: its train and validation losses are the
    same loss function.
    """
    train = _train_records(records)
    evals = [r for r in records if r.get("split") == split]
    if not train or not evals:
        return False, f"no train or {split} records"
    if any(any(k.startswith("adv_") for k in r) for r in train):
        return False, "the train total includes the adversarial terms"
    eval_objectives = set().union(*(_objectives(r, split) for r in evals))
    for r in train:
        parts = _objectives(r, "train")
        total = _number(r.get("loss"))
        if not parts or total is None or not math.isfinite(total):
            continue
        if parts != eval_objectives:
            missing = ", ".join(sorted(eval_objectives ^ parts))
            return False, f"the objectives differ at some steps ({missing})"
        summed = sum(float(r[k]) for k in parts)
        if abs(total - summed) > _SUM_RTOL * max(1.0, abs(summed)):
            return False, "the train total is weighted (pretrain.loss_weights)"
    return True, ""


def _unweighted_train_sum(records: list[dict[str, Any]], objectives: set[str]) -> tuple[list[float], list[float], int]:
    """Steps and sums of the unweighted train objectives, at records that log exactly
    `objectives`; also how many records were left out for logging a different set."""
    xs, ys, skipped = [], [], 0
    for r in _train_records(records):
        parts = _objectives(r, "train")
        if not parts:
            continue
        if parts != objectives:
            skipped += 1
            continue
        xs.append(float(r["step"]))
        ys.append(sum(float(_number(r[k])) for k in sorted(parts)))  # type: ignore[arg-type]
    return xs, ys, skipped


def _curve(quantity: str, split: str, key: str, label: str, xy: tuple[list[float], list[float]]) -> Curve:
    return Curve(quantity=quantity, split=split, key=key, label=label, steps=tuple(xy[0]), values=tuple(xy[1]))


def _loss_panels(records: list[dict[str, Any]], series: dict[str, dict[str, tuple[list[float], list[float]]]],
                 splits: list[str]) -> list[Panel]:
    train = series.get("train", {})
    split = splits[0] if splits else None
    evals = series.get(split, {}) if split else {}
    pretraining = any(k in train for k in PRETRAIN_LOSSES) or any(f"{k}_loss" in evals for k in PRETRAIN_LOSSES)
    what = "unweighted sum of the objectives" if pretraining else "mean per example"
    same, why = totals_comparable(records, split) if split else (True, "")

    total = Panel("loss", f"total loss ({what}): train vs {split}" if split else f"total training loss ({what})",
                  "loss")
    optimised = None
    if "loss" in train and same:
        total.curves.append(_curve("total", "train", "loss", "train: loss", train["loss"]))
    elif "loss" in train:
        # The optimised total is another quantity: it gets an axis of its own, and the
        # comparison uses the train value that is the same quantity as the evaluation's.
        optimised = Panel("loss", f"train loss as optimised; not comparable to {split} because {why}", "loss",
                          [_curve("optimised total", "train", "loss", "train: loss (what backprop saw)",
                                  train["loss"])])
        eval_objectives = set().union(*(_objectives(r, split) for r in records if r.get("split") == split))
        if pretraining and eval_objectives:
            xs, ys, skipped = _unweighted_train_sum(records, eval_objectives)
            if xs:
                total.curves.append(_curve("total", "train", "sum of train objectives",
                                           "train: sum of its objectives (unweighted)", (xs, ys)))
            if skipped:
                total.note = (f"{skipped} train points left out: they log other objectives than "
                              f"{split} (e.g. before QA joins)")
        elif not pretraining and "clean_loss" in train:
            total.curves.append(_curve("total", "train", "clean_loss",
                                       "train: clean_loss (task loss, unperturbed inputs)", train["clean_loss"]))
    for s in splits:
        if "loss" in series.get(s, {}):
            total.curves.append(_curve("total", s, "loss", f"{s}: loss", series[s]["loss"]))
    if total.curves and not any(c.split == "train" for c in total.curves):
        total.title = f"{' / '.join(splits)} loss ({what})"
    panels = [p for p in (total, optimised) if p is not None and p.curves]

    objectives = {c.quantity for c in _objective_curves(series, splits)}
    if pretraining and len(objectives) == 1 and total.curves:
        total.title += f"; the only objective: {objectives.pop()}"
    elif pretraining:
        per = Panel("loss", "loss of each objective (unweighted): train solid, "
                            f"{split or 'validation'} dashed", "loss", _objective_curves(series, splits))
        if per.curves:
            panels.append(per)
    for s in splits:  # losses of an evaluation that no train key pairs with: alone
        for key, xy in sorted(series.get(s, {}).items()):
            if key.endswith("_loss") and key[: -len("_loss")] not in PRETRAIN_LOSSES:
                panels.append(Panel("loss", f"{s} {key}", "loss", [_curve(key, s, key, f"{s}: {key}", xy)]))
    return panels


def _objective_curves(series: dict[str, dict[str, tuple[list[float], list[float]]]], splits: list[str]) -> list[Curve]:
    """Each pre-training objective's train curve (key `mlm`) next to its evaluation
    curves (key `mlm_loss`): the same unweighted quantity under two names."""
    curves = []
    for k in PRETRAIN_LOSSES:
        name = f"{k} ({OBJECTIVE_NAMES[k]})"
        if k in series.get("train", {}):
            curves.append(_curve(k, "train", k, f"train: {name}", series["train"][k]))
        for s in splits:
            if f"{k}_loss" in series.get(s, {}):
                curves.append(_curve(k, s, f"{k}_loss", f"{s}: {name}", series[s][f"{k}_loss"]))
    return curves


def _is_count(key: str) -> bool:
    return bool(_COUNT.search(key.rsplit("/", 1)[-1]))


def _breakdown_group(key: str) -> tuple[str, str, str]:
    """(group id, group title, category) of a per-type key such as `accuracy/yes/no`
    (per answer type) or `accuracy/question_type/how many`."""
    typed = _TYPED_BREAKDOWN.match(key)
    if typed:
        metric, kind, category = typed.groups()
        return f"{metric}/{kind}/", f"{metric} by {kind.replace('_', ' ')}", category
    metric, category = key.split("/", 1)
    if metric == "accuracy":  # lxmert.evaluation flattens per_answer_type to accuracy/<type>
        return "accuracy/", "accuracy by answer type", category
    if metric.endswith("_per_label"):
        return f"{metric}/", f"{metric[: -len('_per_label')]} by label", category
    return f"{metric}/", f"{metric} by category", category


def _metric_panels(series: dict[str, dict[str, tuple[list[float], list[float]]]], splits: list[str]) -> list[Panel]:
    headline = Panel("fraction", "", "fraction (0 = none, 1 = all)")
    groups: dict[str, Panel] = {}
    others: list[Panel] = []
    constant_counts: list[str] = []
    left_out: list[str] = []
    count_panel = Panel("count", "", "count")
    for split in splits:
        for key, xy in sorted(series.get(split, {}).items()):
            if key == "loss" or key.endswith("_loss"):
                continue  # on loss.png
            finite = [v for v in xy[1] if math.isfinite(v)]
            if _is_count(key):
                if len(set(finite)) <= 1:
                    shown = f"{finite[0]:g}" if finite else "nan"
                    constant_counts.append(f"{key} = {shown}" if len(splits) == 1 else f"{split} {key} = {shown}")
                else:
                    count_panel.curves.append(_curve(key, split, key, f"{split}: {key}", xy))
                continue
            fraction = key.rsplit("/", 1)[-1] not in _NOT_FRACTIONS and all(0.0 <= v <= 1.0 for v in finite)
            if not fraction:
                others.append(Panel("other", f"{split} {key}", key, [_curve(key, split, key, f"{split}: {key}", xy)]))
            elif "/" in key:
                gid, title, category = _breakdown_group(key)
                panel = groups.setdefault(gid, Panel("fraction", f"{split} {title}", "fraction (0 = none, 1 = all)"))
                panel.curves.append(_curve(key, split, key, f"{split}: {category}", xy))
            else:
                headline.curves.append(_curve(key, split, key, f"{split}: {key}", xy))
    on = f" (on {', '.join(constant_counts)})" if constant_counts else ""
    headline.title = f"{' / '.join(splits)} metrics{on}"
    panels = [headline] if headline.curves else []
    for gid, panel in groups.items():
        if len({c.key for c in panel.curves}) > _MAX_BREAKDOWN:
            left_out.append(f"{gid}* ({len(panel.curves)} series)")
        else:
            panels.append(panel)
    if left_out:
        note = "not drawn (too many categories; see metrics.jsonl): " + ", ".join(left_out)
        if panels:
            panels[-1].note = note
        else:
            panels.append(Panel("fraction", "", "", note=note))
    if count_panel.curves:
        count_panel.title = "evaluation set sizes"
        panels.append(count_panel)
    if not headline.curves and constant_counts and panels:
        panels[0].title += on
    return panels + others


def _training_panels(series: dict[str, dict[str, tuple[list[float], list[float]]]], used: set[str]) -> list[Panel]:
    train = series.get("train", {})
    panels: list[Panel] = []
    if "lr" in train:
        panels.append(Panel("lr", "learning rate (first parameter group), at each logged step", "learning rate",
                            [_curve("lr", "train", "lr", "train: lr", train["lr"])]))
    if "samples_per_s" in train:
        panels.append(Panel("throughput", "training throughput (all processes), mean over each log window",
                            "samples / s",
                            [_curve("samples_per_s", "train", "samples_per_s", "train: samples_per_s",
                                    train["samples_per_s"])]))
    if "grad_norm" in train:
        values = train["grad_norm"][1]
        if any(v != 0.0 for v in values):
            panels.append(Panel("grad_norm", "gradient norm before clipping, mean over each log window",
                                "L2 norm", [_curve("grad_norm", "train", "grad_norm", "train: grad_norm",
                                                   train["grad_norm"])]))
        else:  # the trainer logs 0 when it does not clip (optim.max_grad_norm = 0)
            note = "gradient norm not measured (optim.max_grad_norm = 0: no clipping)"
            if panels:
                panels[-1].note = note
            else:
                panels.append(Panel("grad_norm", note, "L2 norm", [_curve("grad_norm", "train", "grad_norm",
                                                                          "train: grad_norm", train["grad_norm"])]))
    adversarial = {
        "adv_loss_": Panel("loss", "adversarial training (VILLA): task loss on perturbed vs clean inputs", "loss"),
        "adv_kl_": Panel("other", "adversarial training: symmetric KL between clean and perturbed predictions",
                         "KL divergence"),
        "adv_delta_norm_": Panel("other", "adversarial training: perturbation size, mean per example", "L2 norm"),
    }
    if any(k.startswith("adv_loss_") for k in train) and "clean_loss" in train:
        adversarial["adv_loss_"].curves.append(_curve("clean_loss", "train", "clean_loss", "train: clean_loss",
                                                      train["clean_loss"]))
    for key in sorted(train):
        if key in used or key in ("lr", "samples_per_s", "grad_norm"):
            continue
        prefix = next((p for p in adversarial if key.startswith(p)), None)
        if prefix is not None:
            adversarial[prefix].curves.append(_curve(key, "train", key, f"train: {key}", train[key]))
        elif key != "clean_loss" or not adversarial["adv_loss_"].curves:
            panels.append(Panel("other", f"train {key}", key, [_curve(key, "train", key, f"train: {key}", train[key])]))
    panels += [p for p in adversarial.values() if p.curves]
    return panels


def _merge_identical(panel: Panel) -> None:
    """One line for curves of one split with identical points (VQA soft-label files report
    `accuracy` equal to `label_score`): drawn twice, one would hide the other."""
    kept: list[Curve] = []
    for curve in panel.curves:
        twin = next((i for i, k in enumerate(kept) if k.split == curve.split and k.steps == curve.steps
                     and k.values == curve.values and k.quantity != curve.quantity), None)
        if twin is None:
            kept.append(curve)
        else:
            first = kept[twin]
            name = curve.label.split(": ", 1)[-1]
            label = f"{first.label[:-1]}, {name})" if first.same_as else f"{first.label} (= {name})"
            kept[twin] = replace(first, same_as=(*first.same_as, curve.key), label=label)
    panel.curves = kept


def plan_figures(records: list[dict[str, Any]]) -> dict[str, list[Panel]]:
    """{png name: panels} for a run's metrics records; names with no panel are absent."""
    series = collect_series(records)
    splits = _eval_splits(records)
    out: dict[str, list[Panel]] = {}
    losses = _loss_panels(records, series, splits)
    if losses:
        out["loss.png"] = losses
    metrics = _metric_panels(series, splits)
    if metrics:
        out["metrics.png"] = metrics
    used = {c.key for p in losses for c in p.curves if c.split == "train"}
    training = _training_panels(series, used)
    if training:
        out["training.png"] = training
    for panels in out.values():
        for panel in panels:
            _merge_identical(panel)
    return out


_LINESTYLES_VALID = ("--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P")


def _styles(panel: Panel) -> dict[tuple[str, str], dict[str, Any]]:
    """Matplotlib keywords per (quantity, split): one colour per quantity; train solid
    without markers, evaluation splits dashed with markers; past ten quantities the
    colours repeat with another dash pattern and marker, so no two lines look alike."""
    import matplotlib

    colours = matplotlib.colormaps["tab10"].colors
    quantities = list(dict.fromkeys(c.quantity for c in panel.curves))
    splits = list(dict.fromkeys(c.split for c in panel.curves if c.split != "train"))
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for curve in panel.curves:
        q = quantities.index(curve.quantity)
        colour, variant = colours[q % len(colours)], q // len(colours)
        if curve.split == "train":
            style: dict[str, Any] = {"linestyle": "-", "linewidth": 1.6,
                                     "marker": "." if len(curve.steps) == 1 else "None"}
            if variant:
                style["linestyle"] = (0, (8, 2, 1, 2, 1, 2)[: 2 + 2 * min(variant, 2)])
        else:
            s = splits.index(curve.split)
            style = {"linestyle": _LINESTYLES_VALID[(variant + s) % len(_LINESTYLES_VALID)], "linewidth": 1.2,
                     "marker": _MARKERS[(variant + s) % len(_MARKERS)], "markersize": 4}
        out[(curve.quantity, curve.split)] = {"color": colour, **style}
    return out


def draw_figures(records: list[dict[str, Any]], title: str = "") -> dict[str, Any]:
    """{png name: matplotlib Figure} (what `plot_run` saves): one axis per panel, stacked,
    legends outside the axes on the right so that they never cover a curve."""
    from matplotlib.figure import Figure

    figures: dict[str, Any] = {}
    for name, panels in plan_figures(records).items():
        fig = Figure(figsize=(9.5, 0.6 + 2.9 * len(panels)), layout="constrained")
        axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True)[:, 0]
        for ax, panel in zip(axes, panels):
            styles = _styles(panel)
            for curve in panel.curves:
                (line,) = ax.plot(curve.steps, curve.values, label=curve.label,
                                  **styles[(curve.quantity, curve.split)])
                line.set_gid(f"{curve.split}:{curve.key}")
            ax.set_title(panel.title + (f"\n{panel.note}" if panel.note else ""), fontsize=9, loc="left")
            ax.set_ylabel(panel.ylabel, fontsize=8)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
            values = [v for c in panel.curves for v in c.values if math.isfinite(v)]
            spread = max(values) / min(values) if values and min(values) > 0 else 0.0
            if panel.kind in ("loss", "lr", "grad_norm") and spread > 30:
                ax.set_yscale("log")  # objectives differ by two orders of magnitude
            else:
                ax.ticklabel_format(axis="y", useOffset=False)  # "1e-8+3e-3" ticks read as noise
                if panel.kind == "fraction":
                    ax.set_ylim(-0.02, 1.02)
            if len(panel.curves) > 1 or any(c.split != "train" for c in panel.curves):
                ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
        axes[-1].set_xlabel("optimiser step")
        if title:
            fig.suptitle(title, fontsize=10)
        figures[name] = fig
    return figures


def plot_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> list[Path]:
    """Write loss.png, metrics.png (when there is a validation split) and training.png
    from RUN_DIR/metrics.jsonl; return the paths."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir
    records = list(read_metrics(run_dir))
    if not records:
        raise ValueError(f"{run_dir / 'metrics.jsonl'}: no records to plot")
    figures = draw_figures(records, title=f"{run_dir.name}  ({run_dir})")
    if not figures:
        raise ValueError(f"{run_dir / 'metrics.jsonl'}: no numeric fields with a step to plot")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, fig in figures.items():
        path = out / name
        with atomic_open(path, "wb") as handle:
            fig.savefig(handle, format="png", dpi=110)
        written.append(path)
    return written
