"""`lxmert finetune TASK`: fine-tune with the task's recipe (any task of the registry)."""

from __future__ import annotations

import argparse
import json

from lxmert.cli.arguments import add_adv_arguments, add_run_arguments, adv_overrides, apply_threads, collect_overrides
from lxmert.tasks import PRETRAINING_TASK, task_names


def register(subparsers: argparse._SubParsersAction) -> None:
    tasks = [t for t in task_names() if t != PRETRAINING_TASK]
    p = subparsers.add_parser(
        "finetune", help=f"fine-tune on a task ({', '.join(tasks)}); the best-on-validation checkpoint is kept",
        description="Fine-tune from a pre-trained checkpoint (--init; the QA head is remapped by "
                    "answer text) or from scratch (no --init). Writes RUN_DIR/best, checkpoints, "
                    "metrics.jsonl. Under torchrun it runs DDP.",
    )
    p.add_argument("task", choices=tasks)
    add_run_arguments(p, default_config=None)
    p.add_argument("--init", help="pre-trained checkpoint directory or file (model.init)")
    add_adv_arguments(p)
    p.add_argument("--keep-sparsity", action="store_true",
                   help="retrain a pruned checkpoint (lxmert prune): encoder weights that are zero stay zero")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lxmert.api import load_recipe, train
    from lxmert.tasks import get_task

    apply_threads(args)
    recipe = load_recipe(args.config or get_task(args.task).default_recipe,
                         collect_overrides(args) + adv_overrides(args)
                         + (["train.keep_sparsity=true"] if args.keep_sparsity else []), task=args.task)
    result = train(args.data, args.out, recipe, resume=args.resume)
    print(json.dumps({"steps": result.steps, "best_metric": result.best_metric,
                      "best_checkpoint": result.best_checkpoint, "valid": result.last_eval}, indent=2))
    return 0
