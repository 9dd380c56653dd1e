"""`lxmert split FILE --valid-fraction F`: hold out a validation split of a split file, by image."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "split", help="hold out a validation part of a split file, by image (for data without a validation split)",
        description="Write FILE's entries into <stem>.fit and <stem>.held files so that no image is in both "
                    "(images held out by a hash of seed and image id: reproducible). Then train with "
                    "--set data.train='[\"<stem>.fit\"]' --set data.valid=<stem>.held.")
    p.add_argument("file", help="a split file: json list (VQA, GQA, NLVR2, VizWiz, A-OKVQA, pre-training) or JSONL")
    p.add_argument("--valid-fraction", type=float, required=True, help="share of the images to hold out, e.g. 0.1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default=None, help="where to write the two files (default: beside FILE)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lxmert.data.splits import hold_out_by_image

    done = hold_out_by_image(args.file, args.valid_fraction, seed=args.seed, out_dir=args.out_dir)
    print(f"{done.fit}: {done.fit_entries} entries over {done.fit_images} images")
    print(f"{done.held}: {done.held_entries} entries over {done.held_images} images (held out)")
    print(f"train with: --set 'data.train=[\"{done.fit.stem}\"]' --set data.valid={done.held.stem}")
    return 0
