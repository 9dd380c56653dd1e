"""`lxmert quantize CKPT OUT`: int8 dynamic quantisation of a checkpoint's Linear layers."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "quantize", help="write an int8 (dynamic) copy of a checkpoint for CPU inference",
        description="Quantise every Linear layer to int8 (weights per output channel, activations "
                    "dynamically per batch) and write OUT/model.int8.safetensors + config.json. "
                    "Load it with lxmert.quantize.load_quantized(OUT).")
    p.add_argument("checkpoint", help="our directory, a Hugging Face directory, or an authors' .pth file")
    p.add_argument("out", help="output directory")
    p.add_argument("--per-tensor", action="store_true",
                   help="one scale per weight matrix instead of one per output channel")
    p.add_argument("--skip", action="append", default=None, metavar="MODULE",
                   help="module name to keep in fp32 (repeatable; default: the tied MLM decoder)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lxmert.quantize import DEFAULT_SKIP, QUANTIZED_WEIGHTS_NAME, quantize_checkpoint

    skip = tuple(DEFAULT_SKIP) + tuple(args.skip or ())
    out = quantize_checkpoint(args.checkpoint, args.out, per_channel=not args.per_tensor, skip=skip)
    size = (Path(out) / QUANTIZED_WEIGHTS_NAME).stat().st_size
    print(f"wrote {out}/{QUANTIZED_WEIGHTS_NAME} ({size / 2**20:.1f} MiB, "
          f"{'per-tensor' if args.per_tensor else 'per-channel'} int8); "
          f"load with lxmert.quantize.load_quantized({str(out)!r})")
    return 0
