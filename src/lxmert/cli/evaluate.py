"""`lxmert evaluate TASK --data DIR --checkpoint CKPT`: official metrics on a labelled split."""

from __future__ import annotations

import argparse
import json

from lxmert.cli.arguments import add_amp_argument, add_compile_argument, add_threads_argument, apply_threads
from lxmert.tasks import task_names


def add_inference_arguments(p: argparse.ArgumentParser) -> None:
    """What `evaluate` and `predict` share: where the data, checkpoint and settings come from."""
    p.add_argument("task", choices=task_names())
    p.add_argument("--data", required=True, help="data root")
    p.add_argument("--checkpoint", required=True, help="checkpoint directory (e.g. RUN_DIR/best)")
    p.add_argument("--config", default=None,
                   help="recipe to take splits, stores and batch size from (default: the checkpoint's "
                        "recipe.json, else the task's packaged recipe)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="recipe override, e.g. --set data.features=['features/store']")
    p.add_argument("--device", default="auto")
    add_compile_argument(p, "the model (inductor freezes the weights into the graph; ~20 s to compile)")
    add_amp_argument(p)
    add_threads_argument(p)


def add_vqa_rules_argument(p: argparse.ArgumentParser) -> None:
    """`--vqa-eval master|legacy`: which official VQA evaluator's rules (docs/evaluation.md)."""
    p.add_argument("--vqa-eval", choices=("master", "legacy"), default=None,
                   help="VQA only: the official evaluator's current rules (master, the default) or "
                        "its pre-2021 rules (legacy: the numbers published before 2021, the release's "
                        "included, came from those)")


def vqa_rules_options(args: argparse.Namespace) -> dict[str, str]:
    """The metric option of `--vqa-eval`; refused for a task that is not VQA."""
    if args.vqa_eval is None:
        return {}
    if args.task != "vqa":
        raise ValueError(f"--vqa-eval applies to vqa, not {args.task}")
    return {"rules": args.vqa_eval}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help="score a checkpoint on a labelled split with the task's official metric",
    )
    add_inference_arguments(p)
    p.add_argument("--split", help="split name (default: the recipe's validation split)")
    add_vqa_rules_argument(p)
    p.add_argument("--out", help="also write the metrics as JSON here")
    p.add_argument("--predictions", help="also write the predictions (test-server format) here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lxmert.api import evaluate
    from lxmert.atomic import atomic_write_text

    apply_threads(args)
    options = vqa_rules_options(args)
    metrics = evaluate(args.task, args.data, args.checkpoint, split=args.split, overrides=args.overrides,
                       device=args.device, predictions_out=args.predictions, compile=args.compile, amp=args.amp,
                       config=args.config, metric_options=options)
    text = json.dumps(metrics, indent=2, sort_keys=True)
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    return 0
