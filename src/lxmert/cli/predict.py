"""`lxmert predict TASK --data DIR --checkpoint CKPT --out FILE`: test-server prediction files.

VQA: `[{"question_id": int, "answer": str}]` json; GQA: `[{"questionId": str,
"prediction": str}]` json; NLVR2: `identifier,True|False` csv.
"""

from __future__ import annotations

import argparse

from lxmert.cli._train_args import add_amp_argument, add_compile_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("predict", help="write test-server prediction files (VQA/GQA json, NLVR2 csv)")
    p.add_argument("task", choices=("vqa", "gqa", "nlvr2", "aokvqa", "vizwiz", "classify"))
    p.add_argument("--data", required=True, help="data root")
    p.add_argument("--checkpoint", required=True, help="checkpoint directory (e.g. RUN_DIR/best)")
    p.add_argument("--out", required=True, help="prediction file to write")
    p.add_argument("--split", help="split name (default: the recipe's test split)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--device", default="auto")
    add_compile_argument(p, "the model (inductor freezes the weights into the graph; ~20 s to compile)")
    add_amp_argument(p)
    p.add_argument("--debug", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lxmert.training.run import predict

    path = predict(args.task, args.data, args.checkpoint, args.out, split=args.split,
                   overrides=args.overrides, device=args.device, compile=args.compile, amp=args.amp)
    print(path)
    return 0
