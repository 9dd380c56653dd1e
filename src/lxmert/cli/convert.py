"""`lxmert convert SRC DST [--to lxmert|hf|original]` and `lxmert inspect CKPT`."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("convert", help="convert a checkpoint (authors' .pth, Hugging Face, ours)")
    p.add_argument("src", help="checkpoint file or directory (layout detected from its keys)")
    p.add_argument("dst", help="output directory (or .pth file with --to original)")
    p.add_argument("--to", choices=["lxmert", "hf", "original"], default="lxmert",
                   help="target format (default: lxmert = config.json + model.safetensors)")
    p.add_argument("--num-attention-heads", type=int, default=None,
                   help="head count for .pth files without a config (needed unless 768 wide: 12)")
    p.add_argument("--force", action="store_true", help="write into DST even if it exists and is not empty")
    p.set_defaults(func=run_convert)

    q = subparsers.add_parser("inspect", help="print a checkpoint's layout, config, parameter counts, heads")
    q.add_argument("ckpt")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=run_inspect)


def run_convert(args: argparse.Namespace) -> int:
    from lxmert.api import convert

    overrides = {}
    if args.num_attention_heads:
        overrides["num_attention_heads"] = args.num_attention_heads
    out = convert(args.src, args.dst, to=args.to, force=args.force, **overrides)
    print(f"wrote {out} ({args.to})")
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from lxmert.api import describe

    info = describe(args.ckpt)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['path']}\n  layout: {info['layout']}\n  model: {info['model_class']}")
    print(f"  heads: {', '.join(info['heads']) or 'none (encoder only)'}")
    if info["answers"]:
        print(f"  answers: {info['answers']}")
    print(f"  dtypes: {', '.join(info['dtypes'])}")
    print("  parameters:")
    for part, count in info["parameters"].items():
        print(f"    {part:<28} {count / 1e6:10.3f} M")
    cfg = info["config"]
    keys = ["hidden_size", "num_attention_heads", "intermediate_size", "l_layers", "r_layers", "x_layers",
            "visual_feat_dim", "num_qa_labels", "num_object_labels", "num_attr_labels", "vocab_size"]
    print("  config: " + ", ".join(f"{k}={cfg[k]}" for k in keys))
    return 0
