"""Arguments shared by `lxmert pretrain` and `lxmert finetune`, and `--compile` / `--amp` for evaluate / predict.

Every recipe field is reachable through `--set section.key=value`; the common ones also
have their own flags, which win over both the recipe and `--set`.
"""

from __future__ import annotations

import argparse


def add_run_arguments(p: argparse.ArgumentParser, default_config: str | None) -> None:
    p.add_argument("--data", required=True, help="data root (lxmert/, vqa/, gqa/, nlvr2/, features/store)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, metrics.jsonl, config.json)")
    p.add_argument("--config", default=default_config,
                   help="recipe: a .toml path or a name from configs/ (default %(default)s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field, e.g. --set optim.lr=1e-4 (repeatable)")
    p.add_argument("--max-steps", type=int, help="stop after N optimiser updates (schedule spans N)")
    p.add_argument("--save-every", type=int, help="checkpoint every K updates (and at each epoch end)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last if it exists")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="GLOBAL batch size (split over ranks)")
    p.add_argument("--grad-accum", type=int)
    p.add_argument("--lr", type=float)
    add_amp_argument(p, default=None)
    add_compile_argument(p, "the training step", default=None)
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--num-workers", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar (logs still go to metrics.jsonl)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def add_amp_argument(p: argparse.ArgumentParser, default: str | None = "none") -> None:
    """`--amp`: autocast precision (lxmert.training.precision)."""
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default=default,
                   help="mixed precision: bf16 on CUDA or on CPUs with AMX (~2x here), fp16 on CUDA only")


def add_compile_argument(p: argparse.ArgumentParser, what: str, default: str | None = "") -> None:
    """`--compile [BACKEND]`: run `what` through `torch.compile` (bare flag = inductor)."""
    p.add_argument("--compile", metavar="BACKEND", nargs="?", const="inductor", default=default,
                   help=f"torch.compile {what} (default backend inductor; '' = eager)")


def collect_overrides(args: argparse.Namespace) -> list[str]:
    """`--set` values, then the dedicated flags (so the flags win)."""
    out = list(args.overrides)
    flags = {
        "max_steps": "train.max_steps", "save_every": "train.save_every", "epochs": "train.epochs",
        "batch_size": "train.batch_size", "grad_accum": "train.grad_accum", "lr": "optim.lr",
        "amp": "train.amp", "device": "train.device", "num_workers": "data.num_workers",
        "seed": "train.seed", "init": "model.init", "compile": "train.compile",
    }
    for attr, key in flags.items():
        value = getattr(args, attr, None)
        if value is None:
            continue
        out.append(f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}")
    if getattr(args, "no_progress", False):
        out.append("train.progress=false")
    return out
