"""``lxmert ask``: answer a question about one image (detector or feature store + fine-tuned QA model),
through `lxmert.pipeline("vqa")` like `lxmert serve`."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ask",
        help="answer a question about an image (extracts its 36 region features first)",
        description=(
            "Extract bottom-up-attention features for IMAGE with the VG Faster R-CNN, encode "
            "QUESTION and print the top answers of a fine-tuned QA checkpoint with their "
            "sigmoid scores (the release trains VQA and GQA heads with binary cross-entropy). "
            "With --features STORE, IMAGE may be an image id of that store (no detector needed)."
        ),
    )
    p.add_argument("image", help="image file (or, with --features, an image id of the store)")
    p.add_argument("question", help="the question, in quotes")
    p.add_argument("--model", required=True, help="QA checkpoint directory (config.json, model.safetensors, answers.json)")
    p.add_argument("--weights", default=None, help="detector weights: pytorch_model.bin of unc-nlp/frcnn-vg-finetuned")
    p.add_argument("--config", default=None, help="detector config (our JSON or the demo's config.yaml)")
    p.add_argument("--features", default=None, metavar="STORE",
                   help="feature store: IMAGE may be one of its image ids")
    p.add_argument("--top", type=int, default=5, help="answers to print")
    p.add_argument("--objects-vocab", default=None, help="objects_vocab.txt (1600 lines): also list the detected objects")
    p.add_argument("--attrs-vocab", default=None, help="attributes_vocab.txt (400 lines), used with --objects-vocab")
    p.add_argument("--device", default="cpu")
    p.add_argument("--random-init-detector", action="store_true",
                   help="random detector weights (pipeline test only: answers are meaningless)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lxmert.api import ask
    from lxmert.detector import DetectorConfig, load_vocab

    if args.random_init_detector:
        print("WARNING: random detector weights: the answers mean nothing.", file=sys.stderr)
    result = ask(args.image, args.question, model=args.model, detector=args.weights, detector_config=args.config,
                 top_k=args.top, device=args.device, random_init_detector=args.random_init_detector,
                 features=args.features)
    print(f"Q: {args.question}")
    for rank, row in enumerate(result["answers"], start=1):
        print(f"{rank:>2}. {row['answer']:<24} {row['score']:.3f}")
    if not result["answers_named"]:
        print("(the checkpoint names no answers: answers.json missing, indices shown)", file=sys.stderr)
    if args.objects_vocab:
        cfg = DetectorConfig.from_file(args.config) if args.config else DetectorConfig()
        objs = load_vocab(args.objects_vocab, expected=cfg.num_classes)
        attrs = load_vocab(args.attrs_vocab, expected=cfg.num_attrs) if args.attrs_vocab else None
        record = result["record"]
        seen = [f"{attrs[a] + ' ' if attrs else ''}{objs[o]} ({c:.2f})"
                for o, a, c in zip(record["objects_id"], record["attrs_id"], record["objects_conf"])]
        print("objects: " + ", ".join(seen[:10]) + (" ..." if len(seen) > 10 else ""))
    return 0
