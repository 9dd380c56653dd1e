"""`lxmert predict TASK --data DIR --checkpoint CKPT --out FILE`: test-server prediction files.

VQA: `[{"question_id": int, "answer": str}]` json; GQA: `[{"questionId": str,
"prediction": str}]` json; NLVR2: `identifier,True|False` csv; A-OKVQA, VizWiz and
classification in their leaderboards' formats.
"""

from __future__ import annotations

import argparse

from lxmert.cli.arguments import apply_threads
from lxmert.cli.evaluate import add_inference_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("predict", help="write a test-server prediction file for a split")
    add_inference_arguments(p)
    p.add_argument("--out", required=True, help="prediction file to write")
    p.add_argument("--split", help="split name (default: the recipe's test split)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lxmert.api import predict

    apply_threads(args)
    path = predict(args.task, args.data, args.checkpoint, args.out, split=args.split, overrides=args.overrides,
                   device=args.device, compile=args.compile, amp=args.amp, config=args.config)
    print(path)
    return 0
