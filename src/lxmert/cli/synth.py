"""`lxmert synth OUT`: write a generated world in the original file formats."""

from __future__ import annotations

import argparse
import sys

from lxmert.data.synth import FEATURE_CODES, PICTURE_CHOICES, SynthConfig, generate_world


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = SynthConfig()
    p = subparsers.add_parser(
        "synth",
        help="generate a synthetic world (features TSV, pre-training/VQA/GQA/NLVR2 json)",
        description="Generate a world of simple scenes written in the release's file formats "
                    "(see docs/data.md). Deterministic for a given seed.",
    )
    p.add_argument("out", help="output directory")
    p.add_argument("--images", type=int, default=defaults.images, help="images over all splits (default %(default)s)")
    p.add_argument("--seed", type=int, default=defaults.seed, help="world seed (default %(default)s)")
    p.add_argument("--feat-dim", type=int, default=defaults.feat_dim,
                   help="region feature dimension (default %(default)s, as the real detector)")
    p.add_argument("--val-fraction", type=float, default=defaults.val_fraction)
    p.add_argument("--test-fraction", type=float, default=defaults.test_fraction)
    p.add_argument("--captions-per-image", type=int, default=defaults.captions_per_image)
    p.add_argument("--vg-per-image", type=int, default=defaults.vg_per_image)
    p.add_argument("--vqa-per-image", type=int, default=defaults.vqa_per_image)
    p.add_argument("--gqa-per-image", type=int, default=defaults.gqa_per_image)
    p.add_argument("--nlvr2-per-image", type=float, default=defaults.nlvr2_per_image,
                   help="NLVR2 sentences per image of a split (default %(default)s)")
    p.add_argument("--nlvr2-pairs", type=int, default=defaults.nlvr2_pairs_per_sentence,
                   help="image pairs shown with each NLVR2 sentence (default %(default)s)")
    p.add_argument("--feature-noise", type=float, default=defaults.feature_noise,
                   help="std of the noise added to region features before ReLU (default %(default)s)")
    p.add_argument("--feature-code", choices=FEATURE_CODES, default=defaults.feature_code,
                   help="how concepts map to feature channels: dense random directions or one block "
                        "of channels per concept (default %(default)s)")
    p.add_argument("--detector-label-noise", type=float, default=defaults.detector_label_noise,
                   help="share of object boxes whose detector label is wrong (default %(default)s)")
    p.add_argument("--pictures", choices=PICTURE_CHOICES, default=defaults.pictures,
                   help="render these images' scenes to OUT/images/<img_id>.png, boxes as in the features "
                        "(default %(default)s; any image can also be rendered later)")
    p.add_argument("--store", action="store_true", help="also import the TSVs into OUT/features/store")
    p.add_argument("--store-dtype", choices=("float16", "float32"), default="float32")
    p.add_argument("--overwrite", action="store_true", help="replace a world already in OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = SynthConfig(
        images=args.images, seed=args.seed, feat_dim=args.feat_dim,
        val_fraction=args.val_fraction, test_fraction=args.test_fraction,
        captions_per_image=args.captions_per_image, vg_per_image=args.vg_per_image,
        vqa_per_image=args.vqa_per_image, gqa_per_image=args.gqa_per_image,
        nlvr2_per_image=args.nlvr2_per_image, nlvr2_pairs_per_sentence=args.nlvr2_pairs,
        feature_noise=args.feature_noise, detector_label_noise=args.detector_label_noise,
        feature_code=args.feature_code, pictures=args.pictures,
    )
    try:
        summary = generate_world(args.out, config, build_store=args.store, store_dtype=args.store_dtype,
                                 progress=not args.quiet, overwrite=args.overwrite)
    except (FileExistsError, ValueError) as err:
        print(f"lxmert synth: error: {err}", file=sys.stderr)
        return 1
    print(f"wrote a world of {sum(summary.images.values())} images "
          f"({', '.join(f'{k} {v}' for k, v in summary.images.items())}) to {summary.out_dir} "
          f"in {summary.seconds:.1f}s")
    for rel, count in summary.files.items():
        print(f"  {rel:<36} {count:>8} entries")
    if summary.store:
        print(f"  feature store: {summary.store}")
    return 0
