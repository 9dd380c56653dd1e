"""Throughput of feature extraction with the full VG Faster R-CNN (ResNet-101 C4).

Times the path ``lxmert extract`` runs, ``FeatureExtractor.extract(items, batch_size=B)``,
on decoded images of COCO's usual sizes (640x480, 500x375, 480x640, 640x427: after
resizing 600x800, 600x800, 800x600 and 600x899, so a batch mixes orientations and sizes,
and two images share one), one image at a time and in batches, for each requested number
of torch threads.
Random weights: the real checkpoint cannot be downloaded here, and the computation is the
same (300 proposals, 14x14 RoIPool, res5 on every proposal).

For every case it reports images/s, where the time goes (forward hooks on the model's
backbone, RPN, RoI heads, res5 and predictors; "roi_pool" is what the RoI heads spend
outside res5 and the predictors; "rest" is preprocessing, batch assembly and the 36-box
selection), how many backbone passes ran (images of one size share one), and how the
batched records compare with the one-at-a-time records of the same round (box counts, ids, largest box and
feature differences).

    python benchmarks/bench_detector.py --threads 1,2 --batches 1,2,4 --images 4 --rounds 2 \\
        --json benchmarks/results/detector_cpu_run1.json
    python benchmarks/bench_detector.py --device cuda --batches 1,2,4,8 --images 16
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from common import format_table, machine_info, write_json
from lxmert.detector import DetectorConfig, FeatureExtractor

STAGE_COLUMNS = ("backbone", "rpn", "roi_pool", "res5", "box_predictor", "rest")

#: decoded (h, w) of the benchmark images, cycled: the common COCO sizes
SHAPES = [(480, 640), (375, 500), (640, 480), (427, 640)]


def picture(h: int, w: int, seed: int) -> np.ndarray:
    """A blocky random RGB picture (content does not change the amount of computation)."""
    rng = np.random.RandomState(seed)
    small = rng.rand(h // 16 + 1, w // 16 + 1, 3)
    return (np.kron(small, np.ones((16, 16, 1)))[:h, :w] * 255).astype(np.uint8)


class StageClock:
    """Wall time spent inside the model's stages (forward hooks on the real modules).

    ``roi_heads`` contains ``res5`` (called once per chunk of proposals) and
    ``box_predictor``; what is left of it is RoI pooling and the per-image bookkeeping.
    """

    STAGES = ("backbone", "rpn", "roi_heads", "res5", "box_predictor")

    def __init__(self, ex: FeatureExtractor):
        self.device = ex.device
        self.seconds = dict.fromkeys(self.STAGES, 0.0)
        self.calls = dict.fromkeys(self.STAGES, 0)
        self._start: dict[str, float] = {}
        m = ex.model
        modules = (m.backbone, m.proposal_generator, m.roi_heads, m.roi_heads.res5, m.roi_heads.box_predictor)
        for name, module in zip(self.STAGES, modules):
            module.register_forward_pre_hook(self._pre(name))
            module.register_forward_hook(self._post(name))

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _pre(self, name: str):
        def hook(*_: Any) -> None:
            self._sync()
            self._start[name] = time.perf_counter()
        return hook

    def _post(self, name: str):
        def hook(*_: Any) -> None:
            self._sync()
            self.seconds[name] += time.perf_counter() - self._start[name]
            self.calls[name] += 1
        return hook

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.STAGES, 0.0)
        self.calls = dict.fromkeys(self.STAGES, 0)


def code_version() -> str:
    """The git commit the figures were measured with, and whether code (src/, benchmarks/) differed from it."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "benchmarks"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}{' + uncommitted code changes' if dirty else ''}" if head else "unknown"


def compare(single: list[dict], batched: list[dict]) -> dict[str, Any]:
    """Batched records against one-at-a-time records: discrete fields must agree exactly,
    numbers to float rounding; boxes are matched by position (tied scores may reorder)."""
    same_counts = same_ids = True
    box_diff = feat_rel = conf_diff = 0.0
    reordered = 0
    for a, b in zip(single, batched):
        if a["num_boxes"] != b["num_boxes"]:
            same_counts = False
            continue
        dist = np.abs(a["boxes"][:, None, :] - b["boxes"][None, :, :]).max(-1)
        perm = dist.argmin(1)
        if sorted(perm.tolist()) != list(range(a["num_boxes"])):
            same_ids = False
            continue
        reordered += int((perm != np.arange(len(perm))).sum())
        box_diff = max(box_diff, float(dist[np.arange(len(perm)), perm].max()))
        feat_rel = max(feat_rel, float(np.abs(a["features"] - b["features"][perm]).max()
                                       / np.abs(a["features"]).max()))
        conf_diff = max(conf_diff, float(np.abs(a["objects_conf"] - b["objects_conf"][perm]).max()))
        same_ids &= bool(np.array_equal(a["objects_id"], b["objects_id"][perm])
                         and np.array_equal(a["attrs_id"], b["attrs_id"][perm]))
    return {"same_box_counts": same_counts, "same_boxes_and_ids": same_ids, "boxes_reordered_by_ties": reordered,
            "max_box_diff_px": box_diff, "max_feature_diff_rel": feat_rel, "max_conf_diff": conf_diff}


def run_case(ex: FeatureExtractor, clock: StageClock, items: list, batch: int) -> tuple[dict[str, Any], list]:
    clock.reset()
    if ex.device.type == "cuda":
        torch.cuda.synchronize(ex.device)
    t0 = time.perf_counter()
    records = list(ex.extract(items, batch_size=batch))
    if ex.device.type == "cuda":
        torch.cuda.synchronize(ex.device)
    total = time.perf_counter() - t0
    t = dict(clock.seconds)
    stages = {"backbone": t["backbone"], "rpn": t["rpn"], "roi_pool": t["roi_heads"] - t["res5"] - t["box_predictor"],
              "res5": t["res5"], "box_predictor": t["box_predictor"]}
    stages["rest"] = total - t["backbone"] - t["rpn"] - t["roi_heads"]
    n = len(items)
    return {"batch": batch, "images": n, "seconds": total, "images_per_s": n / total,
            "seconds_per_image": total / n, "stages_s_per_image": {k: v / n for k, v in stages.items()},
            "backbone_passes": clock.calls["backbone"]}, records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=4, help="images per case (default 4; cases with a larger "
                                                         "batch than this are skipped)")
    ap.add_argument("--threads", default=None, help="comma list of torch thread counts (default: torch's)")
    ap.add_argument("--batches", default="1,2,4", help="comma list of batch sizes (default 1,2,4); 1 always runs")
    ap.add_argument("--rounds", type=int, default=1, help="measure every case this many times, interleaved; "
                                                          "the fastest round is reported (default 1)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    ap.add_argument("--json", default=None, help="write the raw results to this JSON file")
    a = ap.parse_args()
    if a.images < 1 or a.rounds < 1:
        ap.error("--images and --rounds must be >= 1")
    threads = [int(t) for t in a.threads.split(",")] if a.threads else [torch.get_num_threads()]
    batches = sorted({1, *(int(b) for b in a.batches.split(","))})
    dev = torch.device(a.device)
    ex = FeatureExtractor.from_weights(None, DetectorConfig(), random_init=True, device=dev)
    clock = StageClock(ex)
    items = [(f"img{i}", picture(*SHAPES[i % len(SHAPES)], seed=i)) for i in range(a.images)]
    result: dict[str, Any] = {
        "code": code_version(),
        "machine": machine_info(), "device": str(dev) if dev.type != "cuda" else torch.cuda.get_device_name(dev),
        "config": "DetectorConfig() defaults (ResNet-101 C4, 300 proposals, 14x14 RoIPool), random weights",
        "image_shapes_decoded": [list(SHAPES[i % len(SHAPES)]) for i in range(a.images)],
        "image_shapes_resized": [list(ex.prepare(im).size) for _, im in items],
        "cases": [],
    }
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    for t in threads:
        torch.set_num_threads(t)
        next(iter(ex.extract(items[:1])))  # warm-up: allocator, oneDNN/cuDNN kernel selection
        runs: dict[int, list[dict[str, Any]]] = {b: [] for b in batches if b <= a.images}
        for b in batches:
            if b > a.images:
                print(f"threads {t}: batch {b} skipped (only {a.images} images)", flush=True)
        # rounds interleave the cases, so a neighbour's load drifting over the run hits all of them
        for r in range(a.rounds):
            single: list = []
            for b in runs:
                case, records = run_case(ex, clock, items, b)
                if b == 1:
                    single = records
                else:
                    case["vs_one_at_a_time"] = compare(single, records)
                runs[b].append(case)
                st = case["stages_s_per_image"]
                print(f"threads {t} round {r + 1} batch {b}: {case['images_per_s']:.4f} images/s "
                      f"({case['seconds_per_image']:.1f} s/image: " + ", ".join(f"{k} {v:.2f}" for k, v in st.items())
                      + f"; {case['backbone_passes']} backbone passes)"
                      + (f"; vs batch 1: {case['vs_one_at_a_time']}" if b > 1 else ""), flush=True)
        for b, cases in runs.items():
            # the fastest round: a neighbour's load only ever adds time
            best = min(cases, key=lambda c: c["seconds"])
            result["cases"].append({**best, "threads": t, "rounds": len(cases),
                                    "images_per_s_each_round": [c["images_per_s"] for c in cases],
                                    "round_details": cases})
    result["started"], result["finished"] = started, time.strftime("%Y-%m-%d %H:%M:%S")
    result["load_avg_1m_end"] = machine_info()["load_avg_1m"]
    rows = []
    for c in result["cases"]:
        base = next(x for x in result["cases"] if x["threads"] == c["threads"] and x["batch"] == 1)
        st = c["stages_s_per_image"]
        rows.append([c["threads"], c["batch"], c["images_per_s"], c["images_per_s"] / base["images_per_s"],
                     *(st[k] for k in STAGE_COLUMNS), c["backbone_passes"]])
    print(f"\n{result['device']}, {result['machine']['cpu']}, torch {torch.__version__}, "
          f"{a.images} images {result['image_shapes_resized']} (resized)")
    print(format_table(rows, ["threads", "batch", "images/s (best round)", "vs batch 1",
                              *(f"{k} s/img" for k in STAGE_COLUMNS), "backbone passes"]))
    if a.json:
        write_json(a.json, result)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
