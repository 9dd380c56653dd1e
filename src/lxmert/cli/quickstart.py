"""`lxmert quickstart --out DIR`: world -> pre-train -> fine-tune (pretrained vs scratch) -> report."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from lxmert.quickstart import QuickstartOptions

    d = QuickstartOptions()
    p = subparsers.add_parser(
        "quickstart", help="the built-in demo: does pre-training help? (what `make demo` runs)",
        description="Generate a world, pre-train a small LXMERT, fine-tune VQA/GQA/NLVR2 heads from "
                    "it and from scratch on a limited labelled set, score both on held-out images, "
                    "write DIR/report.json, DIR/report.md and plots.",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--images", type=int, default=d.images, help="images in the world (default %(default)s)")
    p.add_argument("--feat-dim", type=int, default=d.feat_dim, help="region feature size (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.world_seed, help="world seed (default %(default)s)")
    p.add_argument("--max-objects", type=int, default=d.max_objects,
                   help="objects per scene, 3..N (boxes per image = 5 N; default %(default)s)")
    p.add_argument("--feature-noise", type=float, default=d.feature_noise,
                   help="noise of the world's region features (default %(default)s)")
    p.add_argument("--feature-code", default=d.feature_code,
                   help="how the world's features code concepts (default %(default)s; the choices are "
                        "lxmert.data.synth.FEATURE_CODES, see SynthConfig)")
    p.add_argument("--nlvr2-kinds", nargs="*", default=list(d.nlvr2_kinds),
                   help="NLVR2 statement kinds of the world (default: all)")
    p.add_argument("--nlvr2-per-image", type=float, default=d.nlvr2_per_image,
                   help="NLVR2 sentences per image, each with 2 image pairs (default %(default)s)")
    p.add_argument("--tasks", nargs="+", choices=("vqa", "gqa", "nlvr2", "retrieval"), default=list(d.tasks),
                   help="fine-tuning tasks (default: %(default)s; retrieval is opt-in: "
                        "--tasks vqa gqa nlvr2 retrieval, docs/retrieval.md)")
    p.add_argument("--threads", type=int, default=d.threads,
                   help="torch intra-op threads (default %(default)s: fastest for the demo's small "
                        "matrices on a shared machine; 0 = torch's default)")
    p.add_argument("--ground-steps", type=int, default=d.ground_steps,
                   help="steps of pre-training stage 1, matching on region descriptions "
                        "(configs/demo-pretrain-ground.toml; default %(default)s, 0 skips it)")
    p.add_argument("--pretrain-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override of configs/demo-pretrain.toml and of stage 1's "
                        "demo-pretrain-ground.toml (repeatable; stage 1's length is --ground-steps)")
    p.add_argument("--finetune-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override of the demo fine-tuning recipes (repeatable)")
    p.add_argument("--tiny", action="store_true",
                   help="a smoke run in seconds (40 images, a 32-wide model, a few steps per stage): checks "
                        "that everything runs; its accuracies mean nothing. Other flags still apply on top")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--debug", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lxmert.quickstart import QuickstartOptions, quickstart

    given = dict(images=args.images, feat_dim=args.feat_dim, world_seed=args.seed, max_objects=args.max_objects,
                 feature_noise=args.feature_noise, feature_code=args.feature_code,
                 nlvr2_kinds=tuple(args.nlvr2_kinds), nlvr2_per_image=args.nlvr2_per_image, tasks=tuple(args.tasks),
                 threads=args.threads, ground_steps=args.ground_steps, progress=not args.no_progress)
    if args.tiny:  # flags left at their defaults take the smoke run's values; the others win
        defaults = QuickstartOptions()
        tiny = QuickstartOptions.tiny()
        given = {k: v for k, v in given.items() if v != getattr(defaults, k)}
        opts = QuickstartOptions.tiny(**given, pretrain_overrides=[*tiny.pretrain_overrides, *args.pretrain_set],
                                      finetune_overrides=[*tiny.finetune_overrides, *args.finetune_set])
    else:
        opts = QuickstartOptions(**given, pretrain_overrides=args.pretrain_set, finetune_overrides=args.finetune_set)
    report = quickstart(args.out, opts)
    for task, row in report.items():
        print(f"{task:6s} pretrained {100 * row['pretrained']:.1f}  scratch {100 * row['scratch']:.1f}")
    return 0
