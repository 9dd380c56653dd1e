"""Optimiser update of the full pre-training model (228M parameters): which implementation.

Times one `optimizer.step()` over every parameter of `LxmertForPreTraining` with random
gradients, alternating: torch AdamW as a per-tensor loop (torch's default on CPU),
`foreach=True`, `fused=True`, and the release's BertAdam (`lxmert.training.optim`) three
ways: the per-parameter loop, multi-tensor (`foreach`), and on torch's fused kernel (the
default on CPU / CUDA).
On a CPU the update is memory-bound (it streams ~3.6 GB of parameters, gradients and
moments), so the figure that matters is how many passes over memory each makes.
Run: `python benchmarks/bench_optimizer.py [--reps 5] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import finish, alternate, configure_threads, format_table, machine_info  # noqa: E402

from lxmert import LxmertConfig, LxmertForPreTraining  # noqa: E402


def run(reps: int = 5, threads: int | None = None, config: LxmertConfig | None = None,
        progress: bool = True) -> dict[str, Any]:
    from lxmert.training.optim import BertAdam

    configure_threads(threads)
    model = LxmertForPreTraining(config or LxmertConfig())
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    optimizers = {
        "AdamW loop (torch default on CPU)": torch.optim.AdamW(params, lr=1e-4, foreach=False),
        "AdamW foreach": torch.optim.AdamW(params, lr=1e-4, foreach=True),
        "AdamW fused": torch.optim.AdamW(params, lr=1e-4, fused=True),
        "BertAdam loop (the release's code)": BertAdam(params, lr=1e-4, fused=False, foreach=False),
        "BertAdam foreach": BertAdam(params, lr=1e-4, fused=False, foreach=True),
        "BertAdam fused (default)": BertAdam(params, lr=1e-4, fused=True),
    }
    t = alternate({name: (lambda i, o=opt: o.step()) for name, opt in optimizers.items()},
                  reps=reps, warmup=1, progress=progress)
    return {"figure": "optimizer", "parameters": sum(p.numel() for p in params), "machine": machine_info(),
            "timings": {name: timing.to_dict() for name, timing in t.items()}}


def report(result: dict[str, Any]) -> str:
    base = result["timings"]["AdamW loop (torch default on CPU)"]["median_s"]
    rows = [[name, t["median_s"], base / t["median_s"]] for name, t in result["timings"].items()]
    return (f"optimiser step over {result['parameters'] / 1e6:.0f}M parameters on {result['machine']['cpu']}\n"
            + format_table(rows, ["optimiser", "seconds / step (median)", "speed vs loop"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    result = run(reps=args.reps, threads=args.threads)
    return finish(result, report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
