"""Throughput of feature extraction with the full VG Faster R-CNN (ResNet-101 C4).

Random weights (the real checkpoint cannot be downloaded here; the amount of computation
is the same: 300 proposals, 14x14 RoIPool, res5 on every proposal), images of 600x1000
after resizing, one image per forward pass as the release did. Prints images/s and the
time of each stage, and optionally the effect of batching two images of different sizes.

    python benchmarks/bench_detector.py --images 3 --threads 2
    python benchmarks/bench_detector.py --images 2 --batch-compare
    python benchmarks/bench_detector.py --device cuda --images 10
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from lxmert.detector import DetectorConfig, FeatureExtractor
from lxmert.detector.preprocess import batch_images


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def picture(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.RandomState(seed)
    small = rng.rand(h // 16 + 1, w // 16 + 1, 3)
    return (np.kron(small, np.ones((16, 16, 1)))[:h, :w] * 255).astype(np.uint8)


def stage_times(ex: FeatureExtractor, img: np.ndarray) -> dict[str, float]:
    """One image through the pipeline with a timer around every stage."""
    dev = ex.device
    m = ex.model
    t = {}
    t0 = time.perf_counter()
    prep = ex.prepare(img)
    x, sizes = batch_images([prep])
    x = x.to(dev)
    t["preprocess"] = time.perf_counter() - t0
    with torch.inference_mode():
        t0 = time.perf_counter()
        feats = m.backbone(x)
        sync(dev)
        t["backbone"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        props = m.proposal_generator(feats, sizes)
        sync(dev)
        t["rpn"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        pooled = m.roi_heads.pooled_features(feats, props)
        sync(dev)
        t["roipool+res5"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        cls, attr = m.roi_heads.box_predictor(pooled)
        from lxmert.detector.model import DetectorOutput

        out = DetectorOutput(boxes=props[0], features=pooled, cls_probs=cls.softmax(-1), attr_probs=attr.softmax(-1))
        ex._record("x", prep, out)
        sync(dev)
        t["predict+select"] = time.perf_counter() - t0
    t["proposals"] = len(props[0])
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=3, help="timed images (after one warm-up; at least 1)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-compare", action="store_true",
                    help="also extract a 600x1000 and a 600x800 image batched together vs one by one")
    ap.add_argument("--json", default=None, help="write the figures to this JSON file")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    ex = FeatureExtractor.from_weights(None, DetectorConfig(), random_init=True, device=dev)
    img = picture(600, 1000, 0)  # already at the target size: shortest side 600, longest 1000

    stage_times(ex, img)  # warm-up (allocator, oneDNN/cuDNN kernel selection)
    runs = [stage_times(ex, picture(600, 1000, i + 1)) for i in range(max(a.images, 1))]
    keys = [k for k in runs[0] if k != "proposals"]
    mean = {k: float(np.mean([r[k] for r in runs])) for k in keys}
    total = sum(mean.values())
    result = {
        "device": str(dev) if dev.type != "cuda" else torch.cuda.get_device_name(dev),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "images": a.images,
        "input": "600x1000",
        "proposals": int(np.mean([r["proposals"] for r in runs])),
        "seconds_per_image": total,
        "images_per_s": 1.0 / total,
        "stages_s": mean,
    }
    print(f"device {result['device']}  threads {result['threads']}  torch {torch.__version__}")
    print(f"{a.images} images 600x1000, batch 1, {result['proposals']} proposals each")
    for k in keys:
        print(f"  {k:<15} {mean[k]:8.3f} s  ({100 * mean[k] / total:4.1f} %)")
    print(f"  {'total':<15} {total:8.3f} s/image  = {1 / total:.3f} images/s")

    if a.batch_compare:
        big, small = picture(600, 1000, 11), picture(600, 800, 12)
        t0 = time.perf_counter()
        single = [next(iter(ex.extract([(str(i), im)]))) for i, im in enumerate((big, small))]
        t_single = time.perf_counter() - t0
        t0 = time.perf_counter()
        batched = list(ex.extract([("0", big), ("1", small)], batch_size=2))
        t_batch = time.perf_counter() - t0
        cmp = {}
        for i, name in enumerate(("600x1000 (not padded)", "600x800 (padded to 600x1000)")):
            s_, b_ = single[i], batched[i]
            # match boxes between the two runs; compare features of the boxes both kept
            d = np.abs(s_["boxes"][:, None, :] - b_["boxes"][None, :, :]).max(-1)
            pairs = [(j, int(d[j].argmin())) for j in range(len(d)) if d[j].min() < 1e-3]
            fs = np.stack([s_["features"][j] for j, _ in pairs]) if pairs else np.zeros((0, 1))
            fb = np.stack([b_["features"][k] for _, k in pairs]) if pairs else np.zeros((0, 1))
            rel = [float(np.linalg.norm(x - y) / max(np.linalg.norm(x), 1e-12)) for x, y in zip(fs, fb)]
            cmp[name] = {
                "boxes_in_common": len(pairs), "of": int(s_["num_boxes"]),
                "features_rel_l2_common_boxes_median": float(np.median(rel)) if rel else None,
                "features_rel_l2_common_boxes_max": float(np.max(rel)) if rel else None,
                "features_max_abs_diff_common_boxes": float(np.abs(fs - fb).max()) if pairs else None,
            }
        result["batch_compare"] = {"single_s": t_single, "batch2_s": t_batch, "images": cmp}
        print(f"batch of 2 vs one by one: {t_batch:.2f} s vs {t_single:.2f} s")
        for name, c in cmp.items():
            print(f"  {name}: {c['boxes_in_common']}/{c['of']} boxes in common; feature change on those "
                  f"(relative L2) median {c['features_rel_l2_common_boxes_median']}, "
                  f"max {c['features_rel_l2_common_boxes_max']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
