"""Feature store vs. TSV parsing: import speed, random access, and memory.

Generates a TSV of realistic rows (36 boxes x 2048 float32 features, ~384 KiB of base64
per image), imports it into float16 and float32 stores, then measures - each in a fresh
child process so that peak-RSS figures (VmHWM) belong to one method only:

* ``tsv-load``: what the original release does (``load_obj_tsv``): read the whole file
  with ``csv.DictReader`` and decode every row into numpy arrays held in a list. We report
  the load time, the per-image decode rate and the peak RSS (all rows are private memory).
* ``store-get``: ``FeatureStore.get`` on every image in random order, warm page cache,
  and ``get_many`` in batches of 32.
* ``store-cold``: the same after evicting the store's pages from the page cache
  (``posix_fadvise(DONTNEED)``), i.e. reads that go to the disk.
* ``store-budget``: every image once in random order while holding the store's resident
  pages under a budget smaller than the store: every ``budget / row_bytes`` images the
  maps are dropped (munmap) and the pages evicted. Peak RSS stays near
  baseline + budget whatever the store size, which is what a memory-limited container
  would see (the kernel reclaims file pages the same way; we cannot create cgroups here).

Run:  python benchmarks/bench_store.py [--images 3000] [--budget-mb 128]
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def proc_status() -> dict[str, int]:
    """VmRSS/VmHWM/RssAnon/RssFile in KiB from /proc/self/status."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(rest.split()[0])
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def evict(path: Path) -> None:
    """Drop a file's clean pages from the page cache (no root needed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------ children


def child_tsv_load(tsv: str) -> dict:
    """The original's approach: whole file -> list of dicts of numpy arrays."""
    before = proc_status()
    csv.field_size_limit(sys.maxsize)
    fields = ["img_id", "img_h", "img_w", "objects_id", "objects_conf", "attrs_id",
              "attrs_conf", "num_boxes", "boxes", "features"]
    t0 = time.perf_counter()
    data = []
    with open(tsv, newline="") as f:
        for item in csv.DictReader(f, fields, delimiter="\t"):
            n = int(item["num_boxes"])
            rec = {"img_id": item["img_id"], "img_h": int(item["img_h"]), "img_w": int(item["img_w"]),
                   "num_boxes": n}
            for key, shape, dtype in (("objects_id", (n,), np.int64), ("objects_conf", (n,), np.float32),
                                      ("attrs_id", (n,), np.int64), ("attrs_conf", (n,), np.float32),
                                      ("boxes", (n, 4), np.float32), ("features", (n, -1), np.float32)):
                rec[key] = np.frombuffer(base64.b64decode(item[key]), dtype=dtype).reshape(shape)
            data.append(rec)
    load_s = time.perf_counter() - t0
    # random access after the load is a dict lookup
    index = {r["img_id"]: r for r in data}
    ids = list(index)
    random.Random(0).shuffle(ids)
    t0 = time.perf_counter()
    for i in ids:
        r = index[i]
        r["features"].copy()  # the copy a loader makes: timed, not used
        boxes = r["boxes"].copy()
        boxes[:, (0, 2)] /= r["img_w"]
        boxes[:, (1, 3)] /= r["img_h"]
    get_s = time.perf_counter() - t0
    after = proc_status()
    return {"images": len(data), "load_s": load_s, "get_s": get_s, "before": before, "after": after}


def child_tsv_decode(tsv: str) -> dict:
    """Streaming decode with lxmert.features.tsv.read_tsv (constant memory)."""
    from lxmert.features.tsv import read_tsv

    before = proc_status()
    t0 = time.perf_counter()
    n = sum(1 for _ in read_tsv(tsv))
    return {"images": n, "load_s": time.perf_counter() - t0, "before": before, "after": proc_status()}


def child_store(store: str, mode: str, budget_mb: float) -> dict:
    from lxmert.features.store import FeatureStore

    t0 = time.perf_counter()
    st = FeatureStore.open(store, max_boxes=36)
    open_s = time.perf_counter() - t0
    ids = list(st.ids)
    random.Random(0).shuffle(ids)
    files = [Path(store) / m["file"] for m in st.manifest["arrays"].values()]
    if mode in ("cold", "budget"):
        for f in files:
            evict(f)
    st.get(ids[0])  # map the files
    before = proc_status()
    row_bytes = sum(m["bytes"] for m in st.manifest["arrays"].values()) / len(st)
    every = max(1, int(budget_mb * 2**20 / row_bytes)) if mode == "budget" else None
    t0 = time.perf_counter()
    for k, i in enumerate(ids, start=1):
        g = st.get(i)
        assert g["num_boxes"] > 0
        if every and k % every == 0:
            st.close()
            for f in files:
                evict(f)
    get_s = time.perf_counter() - t0
    out = {"images": len(ids), "open_s": open_s, "get_s": get_s, "before": before, "after": proc_status()}
    if mode == "warm":
        t0 = time.perf_counter()
        for b in range(0, len(ids), 32):
            st.get_many(ids[b:b + 32])
        out["get_many_s"] = time.perf_counter() - t0
    return out


# ------------------------------------------------------------------------------ parent


def generate(path: Path, images: int, boxes: int, dim: int) -> None:
    from lxmert.features.tsv import write_tsv

    rng = np.random.default_rng(0)

    def records():
        for k in range(images):
            h, w = int(rng.integers(300, 640)), int(rng.integers(300, 640))
            x1 = rng.random(boxes, dtype=np.float32) * w / 2
            y1 = rng.random(boxes, dtype=np.float32) * h / 2
            yield {
                "img_id": f"COCO_train2014_{k:012d}", "img_h": h, "img_w": w, "num_boxes": boxes,
                "objects_id": rng.integers(0, 1600, boxes), "objects_conf": rng.random(boxes, dtype=np.float32),
                "attrs_id": rng.integers(0, 400, boxes), "attrs_conf": rng.random(boxes, dtype=np.float32),
                "boxes": np.stack([x1, y1, x1 + w / 3, y1 + h / 3], 1).astype(np.float32),
                # post-ReLU pooled features: non-negative, mostly small, a few large
                "features": (rng.exponential(0.5, (boxes, dim))).astype(np.float32),
            }

    write_tsv(path, records())


def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def mib(kib: int) -> str:
    return f"{kib / 1024:,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--boxes", type=int, default=36)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--budget-mb", type=float, default=128)
    ap.add_argument("--workdir", type=Path, default=None, help="default: a temporary directory")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        kind, *rest = args.child
        if kind == "tsv-load":
            res = child_tsv_load(rest[0])
        elif kind == "tsv-decode":
            res = child_tsv_decode(rest[0])
        else:
            res = child_store(rest[0], rest[1], float(rest[2]))
        print(json.dumps(res))
        return

    from lxmert.features.build import build_store

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_store-"))
    work.mkdir(parents=True, exist_ok=True)
    tsv = work / "bench.tsv"
    try:
        t0 = time.perf_counter()
        generate(tsv, args.images, args.boxes, args.dim)
        gen_s = time.perf_counter() - t0
        tsv_mb = tsv.stat().st_size / 2**20
        print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
              f"numpy {np.__version__}; load average at start {os.getloadavg()[0]:.1f}")
        print(f"TSV: {args.images} images x {args.boxes} boxes x {args.dim} float32, "
              f"{tsv_mb:,.0f} MiB (generated in {gen_s:.1f} s)\n")

        imports = {}
        for dtype, workers in (("float16", 1), ("float16", 0), ("float32", 0)):
            t0 = time.perf_counter()
            info = build_store(tsv, work / f"store-{dtype}", dtype=dtype, progress=False, overwrite=True,
                               workers=workers)
            imports[(dtype, workers)] = (time.perf_counter() - t0, info.nbytes / 2**20)

        print("import (two passes: scan + decode/write; workers 0 = auto)")
        for (dtype, workers), (secs, size) in imports.items():
            print(f"  {dtype} workers={workers}: {secs:6.1f} s  {args.images / secs:7.0f} img/s  "
                  f"{tsv_mb / secs:6.0f} MiB/s of TSV  store {size:,.0f} MiB")

        load = run_child("tsv-load", str(tsv))
        dec = run_child("tsv-decode", str(tsv))
        res = {dtype: {mode: run_child("store", str(work / f"store-{dtype}"), mode, str(args.budget_mb))
                       for mode in ("warm", "cold", "budget")} for dtype in ("float16", "float32")}

        n = args.images
        print("\nreading (random order, every image once; peak = VmHWM of a fresh process)")
        head = f"  {'method':<42} {'setup':>10} {'img/s':>9} {'base MiB':>9} {'peak MiB':>9} {'anon MiB':>9}"
        print(head)
        print("  " + "-" * (len(head) - 2))
        print(f"  {'TSV whole-file load (original), then get':<42} {load['load_s']:>9.1f}s "
              f"{n / load['get_s']:>9.0f} {mib(load['before']['VmRSS']):>9} {mib(load['after']['VmHWM']):>9} "
              f"{mib(load['after']['RssAnon']):>9}")
        print(f"  {'  = TSV decode rate (csv + base64)':<42} {'':>10} {n / load['load_s']:>9.0f}")
        print(f"  {'TSV streaming decode (read_tsv)':<42} {'':>10} {n / dec['load_s']:>9.0f} "
              f"{mib(dec['before']['VmRSS']):>9} {mib(dec['after']['VmHWM']):>9} {mib(dec['after']['RssAnon']):>9}")
        for dtype in ("float16", "float32"):
            for mode in ("warm", "cold", "budget"):
                r = res[dtype][mode]
                label = {"warm": "get, warm cache", "cold": "get, cold cache",
                         "budget": f"get, page budget {args.budget_mb:.0f} MiB"}[mode]
                print(f"  {f'store {dtype} {label}':<42} {r['open_s'] * 1e3:>8.1f}ms {n / r['get_s']:>9.0f} "
                      f"{mib(r['before']['VmRSS']):>9} {mib(r['after']['VmHWM']):>9} {mib(r['after']['RssAnon']):>9}")
                if mode == "warm":
                    print(f"  {f'store {dtype} get_many(32), warm':<42} {'':>10} {n / r['get_many_s']:>9.0f}")
        print(f"\nload average at end {os.getloadavg()[0]:.1f} (other jobs on the machine slow every figure)")
        print("setup = TSV load time or store open time; base = RSS before reading; peak includes "
              "file-backed (page-cache) pages of the maps, anon = private memory at the end.")
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
