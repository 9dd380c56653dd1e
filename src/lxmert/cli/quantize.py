"""`lxmert quantize CKPT OUT`: int8 dynamic quantisation of a checkpoint's Linear layers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "quantize", help="write an int8 (dynamic) copy of a checkpoint for CPU inference",
        description="Quantise the encoder's Linear layers to int8 (weights per output channel, "
                    "activations dynamically per batch; the pooler and the task heads stay fp32 unless "
                    "--quantize-heads) and write OUT/model.int8.safetensors + config.json. "
                    "Load it with lxmert.quantize.load_quantized(OUT).")
    p.add_argument("checkpoint", help="our directory, a Hugging Face directory, or an authors' .pth file")
    p.add_argument("out", help="output directory")
    p.add_argument("--per-tensor", action="store_true",
                   help="one scale per weight matrix instead of one per output channel")
    p.add_argument("--skip", action="append", default=None, metavar="MODULE",
                   help="module name to keep in fp32 (repeatable; always kept: the tied MLM decoder, and "
                        "unless --quantize-heads the pooler and the task heads)")
    p.add_argument("--quantize-heads", action="store_true",
                   help="quantise the pooler and the task heads too (~0.1%% of the FLOPs; they write the "
                        "logits, so fp32 there keeps more answers the same)")
    p.add_argument("--activation-range", default="auto", choices=["auto", "full", "reduced"],
                   help="activations in 8 bits (full) or torch's 7 (reduced); auto: 8 where this CPU's "
                        "int8 kernels do not saturate (VNNI / AMX), probed at run time (default auto)")
    p.add_argument("--check-data", default=None, metavar="DIR",
                   help="also measure, on a labelled split of this data root, how often the int8 model "
                        "gives the fp32 model's top answer, and both models' accuracy (QA checkpoints)")
    p.add_argument("--task", default="vqa", choices=["vqa", "gqa"], help="task of --check-data (default vqa)")
    p.add_argument("--split", default=None, help="split of --check-data (default: the recipe's validation split)")
    p.add_argument("--report", default=None, metavar="FILE",
                   help="write the agreement and accuracies as JSON (default OUT/agreement.json)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lxmert.api import quantize
    from lxmert.atomic import atomic_write_text
    from lxmert.quantize import QUANTIZED_WEIGHTS_NAME

    result = quantize(args.checkpoint, args.out, per_channel=not args.per_tensor, skip=args.skip,
                      quantize_heads=args.quantize_heads, activation_range=args.activation_range,
                      check_data=args.check_data, task=args.task, split=args.split)
    out = result["out"]
    size = (Path(out) / QUANTIZED_WEIGHTS_NAME).stat().st_size
    print(f"wrote {out}/{QUANTIZED_WEIGHTS_NAME} ({size / 2**20:.1f} MiB, "
          f"{'per-tensor' if args.per_tensor else 'per-channel'} int8); "
          f"load with lxmert.quantize.load_quantized({str(out)!r}) or Model.from_pretrained")
    report = result.get("agreement")
    if report is not None:
        target = Path(args.report) if args.report else Path(out) / "agreement.json"
        atomic_write_text(target, json.dumps(report, indent=2) + "\n")
        print(f"{report['task']} {report['split']}: same top answer on {report['top1_agreement']:.2%} of "
              f"{report['samples']} questions; accuracy fp32 {report['accuracy_fp32']:.4f}, "
              f"int8 {report['accuracy_int8']:.4f} -> {target}")
        print(f"  int8 weights with fp32 activations: {report['weight_rounding_agreement']:.2%} same top answer "
              f"(the ceiling for any activation scheme); median fp32 top-1/top-2 logit margin "
              f"{report['median_margin']:.3f}, mean |logit change| {report['mean_abs_logit_diff']:.4f}")
    return 0
