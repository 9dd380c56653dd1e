"""Does a pre-trained model look at the image? Score it with the right images and with swapped ones.

A "blind" check: the pre-training validation set is scored twice with the same sentences,
masks and answers, once with each sentence's own image and once with another image of the
batch (every sentence gets another image's objects and boxes). A model that
uses vision loses accuracy when the images are swapped; one that answers from language
priors alone does not. Reported: QA accuracy, cross-modality matching accuracy, and MLM
accuracy on the masked words that name what is seen (shapes and colours of the generated
world, or any words given with `--visual-words`).

Measured on the built-in demo's pre-training (1200 steps, docs/training.md): with the
release's optimiser settings (BertAdam 1e-3, init 0.02, dropout 0.1; world seed 0) QA 0.329
with the right images and 0.327 with swapped ones, matching 0.493 / 0.493; with the demo's
current recipe (AdamW 3e-4, init 0.1, no dropout) QA 0.346 / 0.327 (seed 0) and 0.351 /
0.318 (seed 1), matching still at chance: the model uses the image a little, for QA only.
With the two-stage demo recipe (3000 steps of matching on region descriptions first): QA
0.376 / 0.302 and matching 0.823 / 0.487 (seed 0), QA 0.383 / 0.320 and matching 0.817 /
0.472 (seed 1).
Matching is scored on matching examples only (with `pretrain.match_sources`, the region
descriptions); with swapped images its labels no longer hold, so the drop is the signal.

Run: `python benchmarks/vision_reliance.py DEMO_OUT/world DEMO_OUT/pretrain [--limit 2000]`.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def swap_order(boxes: torch.Tensor) -> torch.Tensor | None:
    """A permutation of the batch giving every example another image's objects, or None.

    Examples are grouped by image (identical boxes); in group order, each example takes the
    image of the example `g` places earlier (g = the largest group), which always lies in
    another group. None when one image fills more than half of the batch (no such swap)."""
    n = boxes.shape[0]
    _, group = torch.unique(boxes.reshape(n, -1), dim=0, return_inverse=True)
    largest = int(torch.bincount(group).max())
    if 2 * largest > n:
        return None
    order = torch.argsort(group, stable=True)
    perm = torch.empty(n, dtype=torch.long)
    perm[order] = order.roll(largest)
    return perm


def score(model, task, dataset, visual_words: torch.Tensor, seed: int = 0) -> dict[str, dict[str, float]]:
    """Accuracies over `dataset` (pre-training examples), each batch scored twice: with its own
    images and with those of other examples of the batch (`swap_order`). The examples are
    taken in a fixed random order, since the release's json lists the sentences of an
    image together. Batches with no possible swap (one image in more than half of it) are left out of both."""
    from torch.utils.data import Subset

    from lxmert.labels import IGNORE_INDEX as IGNORE

    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    shuffled = Subset(dataset, order)
    shuffled.collate = dataset.collate  # type: ignore[attr-defined]
    hits = {way: {"qa": [0, 0], "matched": [0, 0], "mlm_visual_words": [0, 0]} for way in ("own_image", "swapped")}
    skipped = 0
    with torch.inference_mode():
        for batch in task.eval_batches(shuffled, torch.device("cpu")):
            inputs = task.targets(batch.inputs, None)
            perm = swap_order(inputs["visual_pos"])
            if perm is None:
                skipped += len(inputs["input_ids"])
                continue
            swapped = dict(inputs)
            for key in ("visual_feats", "visual_pos", "visual_attention_mask"):
                if key in swapped:
                    swapped[key] = swapped[key][perm]
            ans = inputs["ans"]
            keep = ans != IGNORE
            labels = inputs["labels"]
            target = labels[labels != IGNORE]
            seen = torch.isin(target, visual_words)
            for way, kwargs in (("own_image", inputs), ("swapped", swapped)):
                out, h = model(**kwargs, sparse_mlm=True), hits[way]
                if out.question_answering_score is not None and keep.any():
                    h["qa"][0] += int((out.question_answering_score.argmax(-1)[keep] == ans[keep]).sum())
                    h["qa"][1] += int(keep.sum())
                # only matching examples (with `pretrain.match_sources`, the others are -100)
                scored = inputs["matched_label"] != IGNORE
                pred = out.cross_relationship_score.argmax(-1)[scored]
                h["matched"][0] += int((pred == inputs["matched_label"][scored]).sum())
                h["matched"][1] += int(scored.sum())
                if out.prediction_logits is not None and seen.any():
                    h["mlm_visual_words"][0] += int((out.prediction_logits.argmax(-1)[seen] == target[seen]).sum())
                    h["mlm_visual_words"][1] += int(seen.sum())
    return {way: {k: (a / n if n else float("nan")) for k, (a, n) in h.items()}
            | {f"n_{k}": float(n) for k, (_, n) in h.items()} | {"skipped": float(skipped)}
            for way, h in hits.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", help="data directory (e.g. the demo's OUT/world)")
    parser.add_argument("checkpoint", help="pre-training checkpoint or run directory (its `last`)")
    parser.add_argument("--recipe", default="demo-pretrain", help="pre-training recipe of that checkpoint")
    parser.add_argument("--limit", type=int, default=2000, help="validation examples scored")
    parser.add_argument("--visual-words", nargs="*", default=None,
                        help="words counted as 'visual' for MLM (default: the generated world's shapes and colours)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from lxmert import LxmertForPreTraining
    from lxmert.api import make_task
    from lxmert.checkpoint import resolve_checkpoint
    from lxmert.data.synth import COLOURS, SHAPES
    from lxmert.training.recipe import load_recipe

    recipe = load_recipe(args.recipe, ["train.progress=false", f"data.valid_limit={args.limit}"])
    task = make_task(recipe, args.data)
    model = LxmertForPreTraining.from_pretrained(resolve_checkpoint(args.checkpoint)).eval()
    words = args.visual_words if args.visual_words is not None else list(SHAPES + COLOURS)
    vocab = task.tokenizer.vocab
    visual_words = torch.tensor([vocab[w] for w in words if w in vocab], dtype=torch.long)
    valid = task.valid_dataset()
    if valid is None:
        raise SystemExit(f"recipe {args.recipe} names no validation split")
    valid.set_epoch(0)
    t0 = time.time()
    report = score(model, task, valid, visual_words)
    right, swapped = report["own_image"], report["swapped"]
    print(f"{'metric':<18} {'own image':>10} {'swapped':>10} {'drop':>8}")
    for key in ("qa", "matched", "mlm_visual_words"):
        print(f"{key:<18} {right[key]:>10.4f} {swapped[key]:>10.4f} {right[key] - swapped[key]:>+8.4f}"
              f"   (n={int(right['n_' + key])})")
    print(f"({time.time() - t0:.0f} s; {int(right['skipped'])} examples left out (batches dominated by one image))")
    if args.json:
        from lxmert.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
