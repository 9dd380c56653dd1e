"""Loss and accuracy curves of a run, drawn from RUN_DIR/metrics.jsonl.

Two figures: `loss.png` (total and per-objective training losses against the step, with
validation losses as markers) and `metrics.png` (every validation accuracy-like number:
keys that do not contain "loss"). Uses the non-interactive Agg backend, so it works on a
headless machine; writes are atomic.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from lxmert.training.metrics import read_metrics
from lxmert.utils import atomic_open

__all__ = ["plot_run", "collect_series"]

_SKIP = {"step", "epoch", "time", "split", "lr", "samples_per_s", "grad_norm"}


def collect_series(records: list[dict[str, Any]]) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """{split: {metric: (steps, values)}} for every numeric field of every record."""
    out: dict[str, dict[str, tuple[list[float], list[float]]]] = defaultdict(dict)
    for rec in records:
        split = str(rec.get("split", "train"))
        step = rec.get("step")
        if step is None:
            continue
        for key, value in rec.items():
            if key in _SKIP or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            xs, ys = out[split].setdefault(key, ([], []))
            xs.append(float(step))
            ys.append(float(value))
    return dict(out)


def _save(fig: Any, path: Path) -> None:
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")


def plot_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> list[Path]:
    """Write loss.png (and metrics.png when there are validation metrics); return the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir
    out.mkdir(parents=True, exist_ok=True)
    records = list(read_metrics(run_dir))
    if not records:
        raise ValueError(f"{run_dir / 'metrics.jsonl'}: no records to plot")
    series = collect_series(records)
    written: list[Path] = []

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, (xs, ys) in sorted(series.get("train", {}).items()):
        if name == "loss" or "loss" in name or name in ("mlm", "matched", "obj", "attr", "feat", "qa"):
            ax.plot(xs, ys, label=f"train {name}", linewidth=2.0 if name == "loss" else 1.0)
    for split, metrics in sorted(series.items()):
        if split == "train":
            continue
        for name, (xs, ys) in sorted(metrics.items()):
            if "loss" in name:
                ax.plot(xs, ys, marker="o", linestyle="--", label=f"{split} {name}")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss")
    ax.set_title(f"{run_dir.name}: losses")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7, ncol=2)
    path = out / "loss.png"
    _save(fig, path)
    plt.close(fig)
    written.append(path)

    acc = {(split, name): xy for split, metrics in series.items() if split != "train"
           for name, xy in metrics.items() if "loss" not in name}
    if acc:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for (split, name), (xs, ys) in sorted(acc.items()):
            ax.plot(xs, ys, marker="o", label=f"{split} {name}")
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("value")
        ax.set_title(f"{run_dir.name}: validation metrics")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        path = out / "metrics.png"
        _save(fig, path)
        plt.close(fig)
        written.append(path)
    return written
