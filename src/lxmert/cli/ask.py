"""``lxmert ask``: answer a question about one image file (detector + fine-tuned QA model)."""

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
            "sigmoid scores (the release trains VQA and GQA heads with binary cross-entropy)."
        ),
    )
    p.add_argument("image", help="image file")
    p.add_argument("question", help="the question, in quotes")
    p.add_argument("--model", required=True, help="QA checkpoint directory (config.json, model.safetensors, answers.json)")
    p.add_argument("--weights", default=None, help="detector weights: pytorch_model.bin of unc-nlp/frcnn-vg-finetuned")
    p.add_argument("--config", default=None, help="detector config (our JSON or the demo's config.yaml)")
    p.add_argument("--top", type=int, default=5, help="answers to print")
    p.add_argument("--objects-vocab", default=None, help="objects_vocab.txt (1600 lines): also list the detected objects")
    p.add_argument("--attrs-vocab", default=None, help="attributes_vocab.txt (400 lines), used with --objects-vocab")
    p.add_argument("--device", default="cpu")
    p.add_argument("--random-init-detector", action="store_true",
                   help="random detector weights (pipeline test only: answers are meaningless)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    import torch

    from lxmert import LxmertForQuestionAnswering, LxmertTokenizer
    from lxmert.detector import FeatureExtractor, load_vocab
    from lxmert.detector.extract import record_to_model_inputs

    if not args.weights and not args.random_init_detector:
        raise ValueError("--weights is required (or --random-init-detector for a pipeline test)")
    if args.top < 1:
        raise ValueError(f"--top must be >= 1, got {args.top}")
    if not os.path.isfile(args.image):
        raise FileNotFoundError(f"{args.image}: no such image file")
    if args.random_init_detector:
        print("WARNING: random detector weights: the answers mean nothing.", file=sys.stderr)
    extractor = FeatureExtractor.from_weights(args.weights, args.config, random_init=args.random_init_detector,
                                              device=args.device)
    record = next(iter(extractor.extract([("image", args.image)])))

    model = LxmertForQuestionAnswering.from_pretrained(args.model, map_location=args.device).eval().to(args.device)
    tok = LxmertTokenizer.from_vocab(args.model)
    text = tok([args.question], max_length=20)
    vis = record_to_model_inputs(record)
    batch = {k: v.to(args.device) for k, v in {**text, **vis}.items()}
    with torch.inference_mode():
        logits = model(**batch).question_answering_score[0].float()
    scores = torch.sigmoid(logits)
    top = torch.topk(scores, min(args.top, len(scores)))
    answers = model.answers
    print(f"Q: {args.question}")
    for rank, (s, i) in enumerate(zip(top.values.tolist(), top.indices.tolist()), start=1):
        name = answers[i] if answers else f"<answer {i}>"
        print(f"{rank:>2}. {name:<24} {s:.3f}")
    if not answers:
        print("(the checkpoint names no answers: answers.json missing, indices shown)", file=sys.stderr)
    if args.objects_vocab:
        objs = load_vocab(args.objects_vocab, expected=extractor.cfg.num_classes)
        attrs = load_vocab(args.attrs_vocab, expected=extractor.cfg.num_attrs) if args.attrs_vocab else None
        seen = []
        for o, a, c in zip(record["objects_id"], record["attrs_id"], record["objects_conf"]):
            seen.append(f"{attrs[a] + ' ' if attrs else ''}{objs[o]} ({c:.2f})")
        print("objects: " + ", ".join(seen[:10]) + (" ..." if len(seen) > 10 else ""))
    return 0
