"""`lxmert prune CKPT --sparsity 0.5 --out DIR`: magnitude-prune a checkpoint, report per module."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prune", help="magnitude-prune a checkpoint (zeros in plain tensors) with a sparsity report",
        description="Zero the smallest-magnitude weights of a checkpoint so that SPARSITY of the prunable "
                    "weight matrices is zero. The output loads and runs like any checkpoint. Lottery "
                    "ticket: --rewind an earlier checkpoint, retrain with `lxmert finetune --init OUT "
                    "--keep-sparsity`, repeat at a higher sparsity (or lxmert.techniques.pruning.lottery_ticket).")
    p.add_argument("checkpoint", help="checkpoint directory or weights file (ours, HF or the release's .pth)")
    p.add_argument("--sparsity", type=float, required=True, help="fraction of prunable weights to zero, e.g. 0.5")
    p.add_argument("--out", required=True, help="output checkpoint directory")
    p.add_argument("--scope", choices=("global", "layer"), default="global",
                   help="rank weights over all tensors (global) or prune each tensor equally (layer)")
    p.add_argument("--keep-embeddings", action="store_true", help="do not prune word/position/type embeddings")
    p.add_argument("--keep-head", action="store_true",
                   help="do not prune the task heads (everything outside the encoder)")
    p.add_argument("--rewind", metavar="CKPT",
                   help="lottery ticket: apply the masks to this earlier checkpoint's weights (init or an "
                        "early step) and save those; retrain with `lxmert finetune --init OUT --keep-sparsity`")
    p.add_argument("--tensors", action="store_true", help="also print the sparsity of every tensor")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lxmert.techniques.pruning import format_report, prune_checkpoint

    record = prune_checkpoint(args.checkpoint, args.out, args.sparsity, scope=args.scope,
                              keep_embeddings=args.keep_embeddings, keep_head=args.keep_head,
                              rewind=args.rewind)
    report = record["report"]
    print(f"{record['class']} from {record['source']}: {args.scope} magnitude pruning to "
          f"{100 * args.sparsity:.1f}% (was {100 * record['sparsity_before']:.2f}% zeros)")
    if record["rewound_to"]:
        print(f"masks chosen on {record['source']}, applied to the weights of {record['rewound_to']}")
    print(format_report(report))
    if args.tensors:
        for name, t in report["tensors"].items():
            print(f"  {name:<70} {100 * t['sparsity']:6.2f}%  of {t['numel']:,}")
    print(f"wrote {args.out} (report in {args.out}/pruning.json)")
    return 0
