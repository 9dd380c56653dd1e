"""Is the pre-training input pipeline fast enough to keep the model busy?

Measures, on this machine, side by side:

* the full pre-training pipeline - feature store (memory-mapped) + word/object masking +
  mismatched sentences + answer sampling + collate, i.e. `PretrainingDataset` behind a
  `DataLoader` - in batches/s at B=32 with realistic 2048-d features, for 0 and 2 worker
  processes (the worker start-up is reported apart, since it happens once per epoch);
* the model's consumption: forward + backward of the full-size `LxmertForPreTraining`
  (lxr955, all five objectives, sparse MLM) on the same batches, in samples/s;

and reports their ratio (pipeline samples/s / model samples/s; > 1 means the data is
ready before the model wants it). Data come from a generated world (`lxmert synth`) with
36 boxes x 2048 features per image, imported into a float16 store, as real data would be.

Run:  python benchmarks/bench_pipeline.py [--images 512] [--batches 40] [--model-steps 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from lxmert.data.pretraining import PretrainingDataset
from lxmert.data.synth import SynthConfig, generate_world


def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "load_avg_1m": os.getloadavg()[0]}


def time_pipeline(ds: PretrainingDataset, workers: int, batch_size: int, batches: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, generator=generator, num_workers=workers,
                        collate_fn=ds.collate, drop_last=True)
    it = iter(loader)
    next(it)  # start-up: worker processes forked, first batch prefetched
    startup = time.perf_counter() - start
    for _ in range(2 * max(workers, 1) - 1):  # let the workers' prefetch queues drain once
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    seconds = time.perf_counter() - t0
    del it
    return {"workers": workers, "batches": batches, "seconds": seconds, "batches_per_s": batches / seconds,
            "samples_per_s": batches * batch_size / seconds, "startup_s": startup}


def time_parts(ds: PretrainingDataset, batch_size: int, reps: int = 5) -> dict:
    """Where the in-process time goes: per-example __getitem__ vs the collate."""
    get, coll = [], []
    for r in range(reps):
        t0 = time.perf_counter()
        items = [ds[(r * batch_size + i) % len(ds)] for i in range(batch_size)]
        t1 = time.perf_counter()
        ds.collate(items)
        t2 = time.perf_counter()
        get.append((t1 - t0) / batch_size)
        coll.append(t2 - t1)
    return {"getitem_ms": 1e3 * statistics.median(get), "collate_ms": 1e3 * statistics.median(coll)}


def time_model(ds: PretrainingDataset, batch_size: int, steps: int) -> dict:
    from lxmert import LxmertConfig, LxmertForPreTraining

    torch.manual_seed(0)
    config = LxmertConfig()  # lxr955 with the 9500-answer head, as pre-trained
    model = LxmertForPreTraining(config).train()
    params = sum(p.numel() for p in model.parameters())
    batch = ds.collate([ds[i] for i in range(batch_size)])
    times = []
    for step in range(steps + 1):  # the first step warms up allocator and kernels
        t0 = time.perf_counter()
        out = model(**batch, sparse_mlm=True)
        out.loss.backward()
        model.zero_grad(set_to_none=True)
        if step:
            times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    return {"params_m": params / 1e6, "steps": steps, "seconds_per_step": seconds,
            "samples_per_s": batch_size / seconds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=512, help="images of the generated world")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--batches", type=int, default=40, help="timed batches per worker setting")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--model-steps", type=int, default=2, help="timed forward+backward steps (0 = skip)")
    ap.add_argument("--store-dtype", default="float16", choices=("float16", "float32"))
    ap.add_argument("--workdir", help="keep the generated world here instead of a temp dir")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        root = Path(args.workdir or tmp)
        world = root / "world"
        t0 = time.perf_counter()
        if not (world / "synth.json").exists():
            generate_world(world, SynthConfig(images=args.images, feat_dim=2048), build_store=True,
                           store_dtype=args.store_dtype, progress=False)
        gen_s = time.perf_counter() - t0
        ds = PretrainingDataset(world / "lxmert/mscoco_train.json", world / "features/store",
                                answer_table=world / "lxmert/all_ans.json")
        info = machine()
        print(f"machine: {info['cpu']}, {info['cpus']} CPUs, torch {info['torch']} "
              f"({info['torch_threads']} threads), load avg {info['load_avg_1m']:.2f}")
        print(f"world: {args.images} images x 36 boxes x 2048-d ({args.store_dtype} store), "
              f"{len(ds)} pre-training examples, generated+imported in {gen_s:.1f}s")
        parts = time_parts(ds, args.batch_size)
        print(f"in-process: __getitem__ {parts['getitem_ms']:.2f} ms/example, "
              f"collate {parts['collate_ms']:.1f} ms/batch of {args.batch_size}")
        results = {"machine": info, "parts": parts, "pipeline": [], "model": None}
        for workers in args.workers:
            r = time_pipeline(ds, workers, args.batch_size, args.batches)
            results["pipeline"].append(r)
        model = time_model(ds, args.batch_size, args.model_steps) if args.model_steps > 0 else None
        results["model"] = model

    print()
    print(f"{'':34}{'batches/s':>10}{'samples/s':>11}{'start-up s':>12}{'x model':>9}")
    for r in results["pipeline"]:
        ratio = r["samples_per_s"] / model["samples_per_s"] if model else float("nan")
        r["ratio_to_model"] = ratio
        print(f"{'pipeline, ' + str(r['workers']) + ' workers':34}{r['batches_per_s']:>10.2f}"
              f"{r['samples_per_s']:>11.1f}{r['startup_s']:>12.2f}{ratio:>9.1f}")
    if model:
        print(f"{'model fwd+bwd (%.0fM params)' % model['params_m']:34}"
              f"{model['samples_per_s'] / args.batch_size:>10.3f}{model['samples_per_s']:>11.2f}{'':>12}{1.0:>9.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
