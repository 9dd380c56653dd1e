"""Arguments shared by `lxmert pretrain` and `lxmert finetune`, and `--compile` / `--amp`
for evaluate / predict.

Every recipe field is reachable through `--set section.key=value`; the common ones also
have their own flags, which win over both the recipe and `--set`.
"""

from __future__ import annotations

import argparse
import json

#: the `--amp` choices (lxmert.training.precision.AMP_CHOICES, repeated here so that
#: building the parser does not import torch; a test keeps the two equal)
AMP_CHOICES = ("none", "bf16", "fp16")


def add_run_arguments(p: argparse.ArgumentParser, default_config: str | None) -> None:
    p.add_argument("--data", required=True, help="data root (lxmert/, vqa/, gqa/, nlvr2/, features/store)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, metrics.jsonl, recipe.json)")
    p.add_argument("--config", default=default_config,
                   help="recipe: a .toml path or the name of a packaged recipe (`lxmert recipes`); "
                        + (f"default {default_config}" if default_config else "default: the task's own recipe"))
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
    add_threads_argument(p)
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar (logs still go to metrics.jsonl)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def add_amp_argument(p: argparse.ArgumentParser, default: str | None = "none") -> None:
    """`--amp`: autocast precision (lxmert.training.precision)."""
    p.add_argument("--amp", choices=AMP_CHOICES, default=default,
                   help="mixed precision: bf16 on CUDA or on CPUs with AMX, fp16 on CUDA only")


def add_compile_argument(p: argparse.ArgumentParser, what: str, default: str | None = "") -> None:
    """`--compile [BACKEND]`: run `what` through `torch.compile` (bare flag = inductor)."""
    p.add_argument("--compile", metavar="BACKEND", nargs="?", const="inductor", default=default,
                   help=f"torch.compile {what} (default backend inductor; '' = eager)")


def add_threads_argument(p: argparse.ArgumentParser) -> None:
    """`--threads N`: torch's intra-op threads (on a shared machine fewer can be faster)."""
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice, the number of cores; on a busy "
                        "machine 1 thread per free core is often fastest)")


def apply_threads(args: argparse.Namespace) -> None:
    """Apply `--threads` (before any work)."""
    threads = getattr(args, "threads", None)
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)


def add_adv_arguments(p: argparse.ArgumentParser) -> None:
    """The `--adv*` flags of `lxmert finetune` (they set the recipe's [adv] section)."""
    g = p.add_argument_group("adversarial fine-tuning (VILLA; lxmert.techniques.adversarial)")
    g.add_argument("--adv", metavar="MODALITIES", help="perturb 'text', 'image' or 'text,image' (off by default)")
    g.add_argument("--adv-steps", type=int, help="ascent steps K per batch (default 3)")
    g.add_argument("--adv-lr", type=float, help="L2-normalised ascent step size (default 1e-3)")
    g.add_argument("--adv-kl", type=float, help="weight of the symmetric KL term (default 1.5)")
    g.add_argument("--adv-init", type=float, help="uniform init magnitude of the perturbation (default 0)")
    g.add_argument("--adv-max-norm", type=float, help="L2 radius per example, 0 = unbounded (default 0)")
    g.add_argument("--adv-task-weight", type=float, help="weight of the adversarial task loss (default 1)")


def adv_overrides(args: argparse.Namespace) -> list[str]:
    """Recipe overrides (`adv.*=...`) from the `--adv*` flags that were given."""
    out = []
    if getattr(args, "adv", None):  # the values are checked with the rest of [adv] when the run starts
        out.append("adv.modalities=" + json.dumps([t.strip() for t in args.adv.split(",")]))
    for attr, key in (("adv_steps", "steps"), ("adv_lr", "lr"), ("adv_kl", "kl"), ("adv_init", "init"),
                      ("adv_max_norm", "max_norm"), ("adv_task_weight", "task_weight")):
        value = getattr(args, attr, None)
        if value is not None:
            out.append(f"adv.{key}={value!r}")
    return out


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
