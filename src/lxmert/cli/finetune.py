"""`lxmert finetune {vqa,gqa,nlvr2}`: fine-tune with the release's recipe for that task."""

from __future__ import annotations

import argparse
import json

from lxmert.cli._train_args import add_run_arguments, collect_overrides


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "finetune", help="fine-tune on VQA, GQA or NLVR2 (best-on-validation checkpoint kept)",
        description="Fine-tune from a pre-trained checkpoint (--init; the QA head is remapped by "
                    "answer text) or from scratch (no --init). Writes RUN_DIR/best, checkpoints, "
                    "metrics.jsonl. Under torchrun it runs DDP.",
    )
    p.add_argument("task", choices=("vqa", "gqa", "nlvr2", "aokvqa", "vizwiz", "classify"))
    add_run_arguments(p, default_config=None)
    p.add_argument("--init", help="pre-trained checkpoint directory or file (model.init)")
    from lxmert.techniques.adversarial import add_adv_arguments

    add_adv_arguments(p)
    p.add_argument("--keep-sparsity", action="store_true",
                   help="retrain a pruned checkpoint (lxmert prune): encoder weights that are zero stay zero")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lxmert.training.recipe import load_recipe
    from lxmert.training.run import train

    from lxmert.techniques.adversarial import adv_overrides

    recipe = load_recipe(args.config or args.task, collect_overrides(args) + adv_overrides(args)
                         + (["train.keep_sparsity=true"] if args.keep_sparsity else []), task=args.task)
    result = train(args.data, args.out, recipe, resume=args.resume)
    print(json.dumps({"steps": result.steps, "best_metric": result.best_metric,
                      "best_checkpoint": result.best_checkpoint, "valid": result.last_eval}, indent=2))
    return 0
