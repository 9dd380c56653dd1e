"""`lxmert pretrain`: the five pre-training objectives (recipe: lxr955-pretrain)."""

from __future__ import annotations

import argparse
import json

from lxmert.cli.arguments import add_run_arguments, apply_threads, collect_overrides
from lxmert.tasks import PRETRAINING_TASK


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pretrain", help="pre-train LXMERT (MLM, object prediction, matching, QA)",
        description="Pre-train with the release's recipe. Under `torchrun --nproc_per_node N` "
                    "the same command runs DDP (the batch size stays global).",
    )
    add_run_arguments(p, default_config="lxr955-pretrain")
    p.add_argument("--init", help="start from this checkpoint instead of random weights (model.init)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lxmert.api import load_recipe, train

    apply_threads(args)
    recipe = load_recipe(args.config, collect_overrides(args), task=PRETRAINING_TASK)
    result = train(args.data, args.out, recipe, resume=args.resume)
    print(json.dumps({"steps": result.steps, "last_checkpoint": result.last_checkpoint,
                      "valid": result.last_eval}, indent=2))
    return 0
