"""`lxmert attention CKPT --features STORE --image ID --text "..." --out DIR`: attention maps as PNGs."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "attention", help="plot language, object and cross attention maps of one image + sentence (PNG)",
        description="Run a checkpoint on one sentence and one image of a feature store and write PNGs of "
                    "the language self-attention, object self-attention and both cross-attention "
                    "directions, boxes drawn with their labels on the image (or a canvas of its size).")
    p.add_argument("checkpoint", help="checkpoint directory (any LXMERT model)")
    p.add_argument("--features", required=True, help="feature store directory (lxmert features import)")
    p.add_argument("--image", required=True, help="image id in the store")
    p.add_argument("--text", required=True, help="sentence or question")
    p.add_argument("--out", required=True, help="folder for the PNGs")
    p.add_argument("--layers", default=None,
                   help="comma-separated layer indices of each encoder, negative from the end (default: -1)")
    p.add_argument("--heads", default="mean", help="'mean' (default), 'all', or comma-separated head indices")
    p.add_argument("--kinds", default="lang,obj,lang2obj,obj2lang", help="which maps (default: all four)")
    p.add_argument("--token", type=int, default=0,
                   help="query token whose attention colours the boxes in cross maps (default 0 = [CLS])")
    p.add_argument("--image-file", default=None, help="the real image, to draw the boxes on")
    p.add_argument("--object-vocab", default=None,
                   help="object names: objects_vocab.txt of the detector, or 'synth' for the generated world")
    p.add_argument("--attr-vocab", default=None, help="attribute names: attributes_vocab.txt, or 'synth'")
    p.add_argument("--max-boxes", type=int, default=36)
    p.add_argument("--max-length", type=int, default=20)
    p.add_argument("--vocab", default=None, help="tokenizer vocab (default: the checkpoint's, else the packaged one)")
    p.set_defaults(func=run)


def _names(spec: str | None, kind: str):
    if spec is None:
        return None
    if spec == "synth":
        from lxmert.data.synth import DETECTOR_ATTRIBUTE_IDS, DETECTOR_OBJECT_IDS

        table = DETECTOR_OBJECT_IDS if kind == "object" else DETECTOR_ATTRIBUTE_IDS
        return {v: k for k, v in table.items()}
    from lxmert.detector.weights import load_vocab

    return load_vocab(spec)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lxmert.features.store import FeatureStore
    from lxmert.modeling import LxmertPreTrainedModel
    from lxmert.text import LxmertTokenizer
    from lxmert.viz.attention import compute_attention, parse_index_list, plot_attention

    ckpt = Path(args.checkpoint)
    vocab = args.vocab or (str(ckpt) if (ckpt / "vocab.txt").is_file() else None)
    tokenizer = LxmertTokenizer.from_vocab(vocab)
    model = LxmertPreTrainedModel.from_pretrained(ckpt)
    record = FeatureStore.open(args.features, max_boxes=args.max_boxes).get(args.image)
    heads = args.heads if args.heads in ("mean", "all") else parse_index_list(args.heads)
    maps = compute_attention(model, tokenizer, args.text, record, max_length=args.max_length,
                             object_names=_names(args.object_vocab, "object"),
                             attr_names=_names(args.attr_vocab, "attribute"))
    paths = plot_attention(maps, args.out, kinds=[k.strip() for k in args.kinds.split(",") if k.strip()],
                           layers=parse_index_list(args.layers), heads=heads, image=args.image_file,
                           query_token=args.token)
    print(f"tokens: {' '.join(maps.tokens)}; {len(maps.objects)} boxes; image {maps.image_size}")
    for path in paths:
        print(path)
    return 0
