"""`lxmert plot` figures hold like-for-like curves only, checked on real short runs.

A pre-training run (the demo recipe, whose train `loss` is weighted by
`pretrain.loss_weights`) and a VQA fine-tuning run are trained for a few steps on a small
generated world; the matplotlib Figures that `plot_run` saves are then inspected: which
metrics.jsonl keys sit on which axis, no count on a fraction axis, a distinct look per
line, train/valid pairs in one colour, legends off the data, and the rule that the
weighted train total is never drawn against the unweighted validation total.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from support.world import make_world
from lxmert.cli import main
from lxmert.training.metrics_log import read_metrics
from lxmert.tasks.pretrain import PRETRAIN_LOSSES
from lxmert.viz.curves import draw_figures, plan_figures, totals_comparable

TINY = ["model.hidden_size=32", "model.num_attention_heads=2", "model.intermediate_size=64",
        "model.l_layers=1", "model.x_layers=1", "model.r_layers=1", "train.progress=false",
        "data.num_workers=0", "train.log_every=1", "train.eval_every=3", "train.save_every=0"]


def _sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("viz_runs")
    world = make_world(root, images=40)
    pre, qa = root / "pretrain", root / "vqa"
    assert main(["pretrain", "--data", str(world), "--out", str(pre), "--config", "demo-pretrain",
                 "--max-steps", "6", "--batch-size", "8", *_sets(*TINY, "data.valid_limit=16")]) == 0
    assert main(["finetune", "vqa", "--data", str(world), "--out", str(qa), "--config", "demo-vqa",
                 "--max-steps", "6", "--batch-size", "8", *_sets(*TINY, "data.valid_limit=24")]) == 0
    return {"pretrain": pre, "vqa": qa}


def _kind(split: str, key: str) -> str:
    """What a metrics.jsonl key measures, decided here independently of the plotting code."""
    if key in ("loss", "clean_loss", "sum of train objectives") or key.endswith("_loss") \
            or (split == "train" and key in PRETRAIN_LOSSES):
        return "loss"
    if key in ("lr", "samples_per_s", "grad_norm"):
        return key
    if key.startswith("num_") or "_num_" in key:
        return "count"
    return "fraction"


def _axes_keys(fig) -> list[tuple[object, list[tuple[str, str]]]]:
    out = []
    for ax in fig.axes:
        keys = [tuple(line.get_gid().split(":", 1)) for line in ax.get_lines()]
        out.append((ax, keys))
    return out


def _check_like_for_like(figures: dict) -> None:
    for name, fig in figures.items():
        canvas = FigureCanvasAgg(fig)  # what savefig(format="png") renders with
        canvas.draw()  # lay out, so that extents are final
        renderer = canvas.get_renderer()
        for ax, keys in _axes_keys(fig):
            assert keys, f"{name}: an empty axis"
            kinds = {_kind(s, k) for s, k in keys}
            assert len(kinds) == 1, f"{name} {ax.get_title(loc='left')!r}: mixes {kinds}: {keys}"
            assert "count" not in kinds or ax.get_ylabel() == "count"
            if kinds == {"fraction"}:
                for line in ax.get_lines():
                    ys = [y for y in line.get_ydata() if math.isfinite(y)]
                    assert all(0.0 <= y <= 1.0 for y in ys), line.get_gid()
            assert ax.get_ylabel() and ax.get_title(loc="left")
            looks = [(line.get_color(), str(line.get_linestyle()), line.get_marker()) for line in ax.get_lines()]
            assert len(set(looks)) == len(looks), f"{name} {ax.get_title(loc='left')!r}: two lines look alike: {looks}"
            for line in ax.get_lines():
                split = line.get_gid().split(":", 1)[0]
                if split == "train":
                    assert line.get_linestyle() == "-"
                else:
                    assert line.get_linestyle() == "--" and line.get_marker() not in ("None", "", None)
            legend = ax.get_legend()
            if legend is not None:  # outside the axes: it covers no curve
                assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
                assert [t.get_text() for t in legend.get_texts()] == [ln.get_label() for ln in ax.get_lines()]
        assert fig.axes[-1].get_xlabel() == "optimiser step"


def test_pretraining_figures_pair_each_objective_and_never_the_weighted_total(runs):
    records = list(read_metrics(runs["pretrain"]))
    figures = draw_figures(records)
    assert set(figures) == {"loss.png", "metrics.png", "training.png"}
    _check_like_for_like(figures)

    same, why = totals_comparable(records)
    assert not same and "loss_weights" in why  # demo-pretrain scales mlm/obj/attr/feat by 0.1
    loss_axes = _axes_keys(figures["loss.png"])
    for ax, keys in loss_axes:  # the weighted train total never shares an axis with the valid total
        assert not {("train", "loss"), ("valid", "loss")} <= set(keys)
    (alone,) = [ax for ax, keys in loss_axes if keys == [("train", "loss")]]
    assert "not comparable" in alone.get_title(loc="left") and "loss_weights" in alone.get_title(loc="left")

    # the valid total is drawn against the unweighted sum of the train objectives
    (total,) = [ax for ax, keys in loss_axes if ("valid", "loss") in keys]
    rebuilt = {ln.get_gid(): ln for ln in total.get_lines()}["train:sum of train objectives"]
    train = [r for r in records if r["split"] == "train"]
    expected = [sum(r[k] for k in PRETRAIN_LOSSES if k in r) for r in train]
    assert list(rebuilt.get_xdata()) == [r["step"] for r in train]
    assert list(rebuilt.get_ydata()) == pytest.approx(expected, rel=1e-9)
    assert any(abs(r["loss"] - e) > 0.1 for r, e in zip(train, expected))  # the weighted one differs

    # each objective: train `k` and valid `k_loss` on one axis, in one colour
    (per,) = [ax for ax, keys in loss_axes if ("train", "mlm") in keys]
    lines = {ln.get_gid(): ln for ln in per.get_lines()}
    valid = [r for r in records if r["split"] == "valid"]
    for k in PRETRAIN_LOSSES:
        assert f"train:{k}" in lines and f"valid:{k}_loss" in lines, k
        assert lines[f"train:{k}"].get_color() == lines[f"valid:{k}_loss"].get_color()
        assert list(lines[f"valid:{k}_loss"].get_ydata()) == [r[f"{k}_loss"] for r in valid]
    assert len({lines[f"train:{k}"].get_color() for k in PRETRAIN_LOSSES}) == len(PRETRAIN_LOSSES)

    # identical curves (here often several accuracies still at 0) are one line naming them all
    metrics = {k for p in plan_figures(records)["metrics.png"] for c in p.curves for k in (c.key, *c.same_as)}
    assert {"mlm_accuracy", "matched_accuracy", "qa_accuracy", "obj_accuracy", "attr_accuracy"} <= metrics
    training = [keys for _, keys in _axes_keys(figures["training.png"])]
    assert [("train", "lr")] in training and [("train", "samples_per_s")] in training
    assert [("train", "grad_norm")] in training


def test_qa_figures_keep_counts_off_the_accuracy_axes(runs):
    records = list(read_metrics(runs["vqa"]))
    valid = [r for r in records if r["split"] == "valid"]
    assert valid and all("num_questions" in r and r["num_questions"] > 1 for r in valid)
    figures = draw_figures(records)
    _check_like_for_like(figures)
    drawn = {k for panels in plan_figures(records).values() for p in panels for c in p.curves
             for k in (c.key, *c.same_as)}
    assert "num_questions" not in drawn
    (headline,) = [ax for ax, keys in _axes_keys(figures["metrics.png"]) if ("valid", "accuracy") in keys]
    assert f"num_questions = {valid[0]['num_questions']:g}" in headline.get_title(loc="left")
    # every breakdown of the evaluation is drawn, each on a fraction axis of its group
    breakdown = {k for r in valid for k in r if "/" in k}
    assert breakdown and breakdown <= drawn
    # the task loss is one loss function on both splits: drawn together
    assert totals_comparable(records) == (True, "")
    (loss,) = [keys for _, keys in _axes_keys(figures["loss.png"])]
    assert set(loss) == {("train", "loss"), ("valid", "loss")}


def test_plot_cli_writes_the_planned_figures(runs, tmp_path):
    assert main(["plot", str(runs["vqa"]), "--out", str(tmp_path)]) == 0
    planned = plan_figures(list(read_metrics(runs["vqa"])))
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(planned)
    for name in planned:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _rec(split: str, step: int, **values: float) -> dict:
    return {"split": split, "step": step, **values}


UNWEIGHTED = [_rec("train", 1, loss=3.0, mlm=2.0, matched=1.0), _rec("valid", 1, loss=3.5, mlm_loss=2.4,
                                                                   matched_loss=1.1)]
CASES = [
    ("unweighted sum of the same objectives", UNWEIGHTED, True, ""),
    ("weighted total", [_rec("train", 1, loss=1.2, mlm=2.0, matched=1.0), UNWEIGHTED[1]], False, "loss_weights"),
    ("QA joins later", [_rec("train", 1, loss=3.0, mlm=2.0, matched=1.0),
                        _rec("valid", 1, loss=5.0, mlm_loss=2.0, matched_loss=1.0, qa_loss=2.0)], False, "qa"),
    ("adversarial terms", [_rec("train", 1, loss=9.0, clean_loss=3.0, adv_loss_text=3.0, adv_kl_text=0.1),
                           _rec("valid", 1, loss=3.2)], False, "adversarial"),
    ("task loss, no parts", [_rec("train", 1, loss=0.7), _rec("valid", 1, loss=0.69)], True, ""),
    ("no validation", [_rec("train", 1, loss=0.7)], False, "no train or valid"),
]


@pytest.mark.parametrize("name,records,same,why", CASES, ids=[c[0] for c in CASES])
def test_totals_pairing_rule(name, records, same, why):
    got, reason = totals_comparable(records)
    assert got is same and why in reason
    keys = [[(c.split, c.key) for c in p.curves] for p in plan_figures(records).get("loss.png", [])]
    together = any({("train", "loss"), ("valid", "loss")} <= set(k) for k in keys)
    assert together is same
    if not same and any(r["split"] == "valid" for r in records):
        assert [("train", "loss")] in keys  # the optimised total, alone


def test_identical_metrics_are_one_line_and_non_finite_values_are_gaps():
    records = [_rec("train", 1, loss=2.0), _rec("train", 2, loss="nan"),
               _rec("valid", 2, accuracy=0.5, label_score=0.5, num_questions=200.0),
               _rec("valid", 4, accuracy=0.6, label_score=0.6, num_questions=200.0)]
    panels = plan_figures(records)
    (headline,) = panels["metrics.png"]
    (curve,) = headline.curves
    assert curve.key == "accuracy" and curve.same_as == ("label_score",) and "label_score" in curve.label
    (total,) = panels["loss.png"]
    train = next(c for c in total.curves if c.split == "train")
    assert train.steps == (1.0, 2.0) and math.isnan(train.values[1])


def test_changing_counts_get_their_own_axis():
    records = [_rec("valid", 1, accuracy=0.5, num_questions=100.0), _rec("valid", 2, accuracy=0.6, num_questions=150.0)]
    panels = plan_figures(records)["metrics.png"]
    kinds = {p.kind: [c.key for c in p.curves] for p in panels}
    assert kinds == {"fraction": ["accuracy"], "count": ["num_questions"]}
