"""`lxmert bench`: run the CPU benchmark suite (benchmarks/*.py) and print one table.

The benchmark scripts live in the repository's `benchmarks/` folder, not in the installed
package (they import `transformers` and measure against it); this command finds that
folder (next to the source tree of an editable install, or `--benchmarks-dir`), calls the
scripts' `run()` functions in this process, and prints their tables plus a summary.
"commands" times the real entry points (`Trainer` steps of `lxmert pretrain`, `lxmert
evaluate|predict` through `lxmert.api`) against a transformers loop doing the same work
(`bench_commands.py`); "pretrain" and "qa" are the models alone on the same tensors;
"int8" compares lxmert's int8 copy with its fp32 model. The data pipeline, feature store
and detector benchmarks (owned by their features) are run as subprocesses with `--with`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

MODEL_SUITE = ("commands", "pretrain", "qa", "int8")
MODULES = {"commands": "bench_commands", "pretrain": "bench_pretrain_step", "qa": "bench_qa_inference",
           "int8": "bench_int8"}
OTHER_SUITE = {  # name: (script, quick arguments, full arguments)
    "pipeline": ("bench_pipeline.py", ["--images", "64", "--batches", "5", "--model-steps", "0"], []),
    "store": ("bench_store.py", ["--images", "200"], []),
    "detector": ("bench_detector.py", ["--images", "1"], []),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="run the CPU benchmark suite against transformers and print a table",
                              description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="B=8 and 3 repetitions: checks the suite runs (minutes), not the targets' figures")
    p.add_argument("--only", default=",".join(MODEL_SUITE),
                   help=f"comma list from {', '.join(MODEL_SUITE)} (default: all)")
    p.add_argument("--with", dest="with_", default="",
                   help=f"also run other features' benchmarks: comma list from {', '.join(OTHER_SUITE)}")
    p.add_argument("--bf16", action="store_true",
                   help="also lxmert under bf16 autocast vs transformers fp32: the commands again with "
                        "--amp bf16, and the bf16 figures of pretrain and qa (fast on CPUs with AMX)")
    p.add_argument("--reps", type=int, default=None,
                   help="repetitions per case (default 3 quick, 7-9 full; commands: alternating rounds, 2)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--json", type=Path, default=None, help="write every result to this file (atomically)")
    p.add_argument("--benchmarks-dir", type=Path, default=None, help="where benchmarks/common.py lives")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=run)


def find_benchmarks(explicit: Path | None = None) -> Path:
    """The folder holding benchmarks/common.py: explicit, else near cwd or the source tree."""
    if explicit is not None:
        if not (explicit / "common.py").is_file():
            raise FileNotFoundError(f"{explicit}: no common.py here (not a benchmarks folder)")
        return explicit.resolve()
    here = Path(__file__).resolve()
    for base in [Path.cwd(), *Path.cwd().parents, *here.parents]:
        candidate = base / "benchmarks"
        if (candidate / "common.py").is_file() and (candidate / "bench_pretrain_step.py").is_file():
            return candidate
    raise FileNotFoundError("benchmarks/ not found: run from the repository checkout or pass --benchmarks-dir")


def _import(bench_dir: Path, name: str):
    if str(bench_dir) not in sys.path:
        sys.path.insert(0, str(bench_dir))
    return importlib.import_module(name)


def _summary_rows(results: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for key, amp in (("commands", "fp32"), ("commands_bf16", "lxmert bf16 autocast vs transformers fp32")):
        res = results.get(key)
        if not res:
            continue
        for kind, label in (("pretrain", "`lxmert pretrain` (Trainer steps, lxr955)"),
                            ("evaluate", "`lxmert evaluate vqa`"), ("predict", "`lxmert predict vqa`")):
            for r, got in enumerate(res.get(kind, [])):
                rows.append([f"{label}, {amp}, B={res['batch_size']}, round {r + 1}",
                             got["lxmert"]["samples_per_s"], got["transformers"]["samples_per_s"], got["ratio"],
                             got["lxmert"].get("gemm_fraction", float("nan"))])
    labels = {"pretrain": "pre-training step", "qa": "QA inference"}
    names = {"same": "fp32, same tensors",
             "bf16": "same tensors, lxmert bf16 autocast vs transformers fp32 (FLOP/s vs the bf16 GEMM)"}
    for key, label in labels.items():
        res = results.get(key)
        if not res:
            continue
        for fig, name in names.items():
            if fig in res:
                f = res[fig]
                rows.append([f"{label}, {name}, B={res['batch_size']}",
                             f["lxmert"]["samples_per_s"], f["transformers"]["samples_per_s"], f["ratio"],
                             f["lxmert"]["gemm_fraction"]])
    if results.get("int8"):
        r = results["int8"]
        rows.append([f"int8 vs fp32 lxmert QA, B={r['batch_size']} (agreement "
                     f"{100 * r['agreement']['top1_agreement']:.1f}%)",
                     r["int8"]["samples_per_s"], r["fp32"]["samples_per_s"], r["ratio"], float("nan")])
    return rows


def run(args: argparse.Namespace) -> int:
    bench_dir = find_benchmarks(args.benchmarks_dir)
    selected = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(selected) - set(MODEL_SUITE))
    if unknown:
        raise ValueError(f"--only: unknown benchmark(s) {unknown}; choose from {list(MODEL_SUITE)}")
    others = [s.strip() for s in args.with_.split(",") if s.strip()]
    unknown = sorted(set(others) - set(OTHER_SUITE))
    if unknown:
        raise ValueError(f"--with: unknown benchmark(s) {unknown}; choose from {list(OTHER_SUITE)}")
    common = _import(bench_dir, "common")
    results: dict[str, Any] = {}
    for name in selected:
        module = _import(bench_dir, MODULES[name])
        print(f"== {name} ({module.__file__})", flush=True)
        kwargs = {"figures": ("same", "bf16")} if args.bf16 and name in ("pretrain", "qa") else {}
        result = module.run(quick=args.quick, reps=args.reps, threads=args.threads, **kwargs)
        print(module.report(result), flush=True)
        results[name] = result
        if name == "commands" and args.bf16:
            print("== commands, lxmert --amp bf16", flush=True)
            result = module.run(quick=args.quick, reps=args.reps, threads=args.threads, amp="bf16")
            print(module.report(result), flush=True)
            results["commands_bf16"] = result
    for name in others:
        script, quick_args, full_args = OTHER_SUITE[name]
        path = bench_dir / script
        if not path.is_file():
            print(f"== {name}: {path} not found, skipped", flush=True)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            cmd = [sys.executable, str(path), *(quick_args if args.quick else full_args), "--json", str(out)]
            print(f"== {name}: {' '.join(cmd)}", flush=True)
            proc = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
            if proc.returncode != 0:
                print(f"== {name}: exited with {proc.returncode}", flush=True)
            elif out.is_file():
                results[name] = json.loads(out.read_text())
    rows = _summary_rows(results)
    if rows:
        machine = next(iter(r["machine"] for r in results.values() if isinstance(r, dict) and "machine" in r), {})
        print(f"\nsummary ({machine.get('cpu', '?')}, {machine.get('torch_threads', '?')} threads"
              f"{', QUICK: not the targets figures' if args.quick else ''})")
        print(common.format_table(rows, ["figure", "lxmert samples/s", "baseline samples/s", "ratio",
                                         "lxmert FLOP/s / GEMM"]))
    if args.json:
        common.write_json(args.json, results)
        print(f"wrote {args.json}")
    return 0
