"""``lxmert extract``: bottom-up-attention features from image files into a TSV and a store."""

from __future__ import annotations

import argparse
import os
import sys

RANDOM_WARNING = (
    "WARNING: --random-init: the detector has RANDOM weights. The features are useless for "
    "anything but testing the pipeline."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "extract",
        help="extract 36 region features per image (VG Faster R-CNN) into a TSV and a feature store",
        description=(
            "Run the Visual Genome Faster R-CNN of bottom-up attention on images and write the "
            "release's TSV rows (36 boxes, 2048-d features, objects, attributes), then a "
            "memory-mapped feature store. Resumable: rerunning skips images already extracted."
        ),
    )
    p.add_argument("images", nargs="+", help="image files and/or directories of images")
    p.add_argument("--weights", default=None,
                   help="pytorch_model.bin of unc-nlp/frcnn-vg-finetuned (see docs/extraction.md)")
    p.add_argument("--config", default=None,
                   help="detector config: our JSON or the demo's config.yaml (default: built-in)")
    p.add_argument("--out", required=True, help="feature store directory to (re)build from the TSV")
    p.add_argument("--tsv", default=None, help="TSV file to write / resume (default: <out>.tsv)")
    p.add_argument("--batch", type=int, default=1,
                   help="images per forward pass (default 1); a speed setting: every image gets the boxes and "
                        "features it gets alone")
    p.add_argument("--dtype", choices=["float16", "float32"], default="float16", help="store dtype")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--random-init", action="store_true",
                   help="random detector weights (pipeline tests only: features are meaningless)")
    p.add_argument("--seed", type=int, default=0, help="seed for --random-init")
    p.add_argument("--no-store", action="store_true", help="write only the TSV")
    p.add_argument("--force", action="store_true", help="replace an existing --out not built from this TSV")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _sha256(path: str) -> str:
    """Fingerprint of the detector weights: resuming with other weights is refused."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run(args: argparse.Namespace) -> int:
    import torch

    from lxmert.detector import FeatureExtractor
    from lxmert.detector.extract import collect_images, extract_to_tsv

    if args.random_init and args.weights:
        raise ValueError("give either --weights or --random-init, not both")
    if not args.random_init and not args.weights:
        raise ValueError("--weights is required (or --random-init for a pipeline test)")
    if args.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = os.path.normpath(args.out)
    tsv = args.tsv or out + ".tsv"
    if (not args.no_store and os.path.exists(out) and not args.force
            and not (os.path.exists(tsv) or os.path.exists(tsv + ".partial"))):
        raise ValueError(f"{out} exists and was not built from {tsv}; pass --force to replace it")

    items = collect_images(args.images)
    if not items:
        raise ValueError(f"no images found in {args.images}")
    if args.random_init:
        print(RANDOM_WARNING, file=sys.stderr)
    extractor = FeatureExtractor.from_weights(
        args.weights, args.config, random_init=args.random_init, seed=args.seed, device=args.device)
    provenance = {
        "weights": os.path.abspath(args.weights) if args.weights else None,
        "weights_sha256": _sha256(args.weights) if args.weights else None,
        "random_init": bool(args.random_init),
        "seed": args.seed if args.random_init else None,
        "config": extractor.cfg.to_dict(),
        "batch_size": args.batch,
    }
    summary = extract_to_tsv(extractor, items, tsv, batch_size=args.batch, progress=not args.quiet,
                             provenance=provenance)
    rate = summary["images_per_s"]
    print(f"{tsv}: {summary['extracted']} images extracted, {summary['skipped']} already there"
          + (f" ({rate:.3f} images/s)" if rate else ""))
    if not args.no_store:
        from lxmert.features.build import build_store

        # the store records the detector's own class counts: ids are checked against them at
        # import, and pre-training checks them against the model's label counts
        info = build_store(tsv, out, dtype=args.dtype, progress=not args.quiet, overwrite=True,
                           num_object_labels=extractor.cfg.num_classes, num_attr_labels=extractor.cfg.num_attrs)
        print(info.summary())
    if args.random_init:
        print(RANDOM_WARNING, file=sys.stderr)
    return 0
