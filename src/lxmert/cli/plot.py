"""`lxmert plot RUN_DIR`: curves (PNG) from RUN_DIR/metrics.jsonl, one kind of quantity per panel."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "plot", help="draw loss/accuracy curves of a run (PNG)",
        description="Write loss.png (total and per-objective losses, train vs validation where they are "
                    "the same quantity), metrics.png (validation accuracies and their breakdowns) and "
                    "training.png (learning rate, throughput, gradient norm) from RUN_DIR/metrics.jsonl.")
    p.add_argument("run_dir", help="run directory containing metrics.jsonl")
    p.add_argument("--out", default=None, help="folder for the PNGs (default: RUN_DIR)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lxmert.viz.curves import plot_run

    for path in plot_run(args.run_dir, args.out):
        print(path)
    return 0
