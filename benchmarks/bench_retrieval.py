"""Image-text retrieval scoring: the cached path against the full forward per pair, on the
same weights, the same (image, sentence) pairs and the same batches, in one run.

- "full": `LxmertForImageTextMatching.forward` on every pair (batches of pairs, sentences
  grouped by length so each batch is padded to its longest - the fairest naive baseline);
- "cached": what `lxmert evaluate retrieval` runs - every sentence and every image encoded
  ONCE (`encode_text` / `encode_images`), then `score_grid` runs only the cross-modality
  layers, pooler and head per pair, over the same pair batches;
- "cross only": the cached path's per-pair part alone (caches built beforehand), the rate
  that decides the time on a real split, where the I + S encodings are ~0.1% of the I x S
  pairs (Flickr30k test: 6000 encodings, 5M pairs).

Both paths' scores are compared (max abs difference; fp32 must agree to 1e-5). Figures:
fp32 under `torch.inference_mode()`, and `bf16` (CPU/CUDA autocast, `--amp bf16`). The
FLOPs per pair of each path are counted from the shapes (benchmarks/common.py).

`--rerank-world DIR --rerank-checkpoint CKPT` adds the two-stage study through the real
entry point (`lxmert.api.evaluate`): recall and time of every-pair scoring against
re-ranking each query's top k of a cheap first stage (`retrieval.rerank_top_k`,
`retrieval.first_stage`), i.e. the recall two-stage scoring loses.

Run: `python benchmarks/bench_retrieval.py --json benchmarks/results/retrieval.json`
(`--quick`: a small model, a smoke figure only).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (finish, SentenceSampler, alternate, configure_threads, format_table, forward_flops,  # noqa: E402
                    gemm_rate, machine_info, visual_inputs)

from lxmert.config import LxmertConfig  # noqa: E402
from lxmert.data.collate import text_batch  # noqa: E402
from lxmert.modeling import LxmertForImageTextMatching  # noqa: E402
from lxmert.modeling.matching import EncodedImages, EncodedText, score_grid  # noqa: E402
from lxmert.text import LxmertTokenizer  # noqa: E402

N_OBJECTS = 36


def make_gallery(config: LxmertConfig, n_images: int, n_sentences: int, seed: int = 0
                 ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], float]:
    """COCO-caption-length sentences (padded to the longest) and bottom-up-like images."""
    tok = LxmertTokenizer.from_vocab()
    sentences = SentenceSampler(tok, seed=seed).sentences(n_sentences, "coco_caption")
    ids = tok.encode_batch(sentences, max_length=20)
    text = text_batch(ids, pad_id=tok.pad_id)
    images = visual_inputs(n_images, N_OBJECTS, config.visual_feat_dim, torch.Generator().manual_seed(seed + 1))
    return text, images, statistics.fmean(len(x) for x in ids)


def encode(model: LxmertForImageTextMatching, text: dict[str, torch.Tensor], images: dict[str, torch.Tensor],
           batch: int) -> tuple[EncodedText, EncodedImages]:
    """Every sentence and image once, in batches (as `RetrievalTask.encode_gallery`)."""
    n_text, n_images = text["input_ids"].shape[0], images["visual_feats"].shape[0]
    t = EncodedText.cat([model.encode_text(text["input_ids"][i:i + batch], text["attention_mask"][i:i + batch])
                         for i in range(0, n_text, batch)])
    v = EncodedImages.cat([model.encode_images(images["visual_feats"][i:i + batch], images["visual_pos"][i:i + batch])
                           for i in range(0, n_images, batch)])
    return t, v


def full_scores(model: LxmertForImageTextMatching, text: dict[str, torch.Tensor], images: dict[str, torch.Tensor],
                pair_batch: int, per_block: int) -> torch.Tensor:
    """[I, S] by the full forward, over exactly `score_grid`'s pair batches."""
    ids, mask = text["input_ids"], text["attention_mask"]
    feats, pos = images["visual_feats"], images["visual_pos"]
    n_images, n_text = feats.shape[0], ids.shape[0]
    out = torch.empty(n_images, n_text)
    order = torch.argsort(mask.sum(1), stable=True)
    per_block = min(per_block, n_text)
    images_per_batch = max(1, pair_batch // per_block)
    for s0 in range(0, n_text, per_block):
        rows = order[s0:s0 + per_block]
        width = int(mask[rows].sum(1).max())
        block_ids, block_mask = ids[rows, :width], mask[rows, :width]
        k = len(rows)
        for i0 in range(0, n_images, images_per_batch):
            i1 = min(n_images, i0 + images_per_batch)
            m = i1 - i0
            scores = model(block_ids.repeat(m, 1), feats[i0:i1].repeat_interleave(k, 0),
                           pos[i0:i1].repeat_interleave(k, 0), block_mask.repeat(m, 1)).scores
            out[i0:i1, rows] = scores.view(m, k).float()
    return out


def cross_flops(config: LxmertConfig, lang_len: float, n_objects: int) -> float:
    """FLOPs of one pair on the cached path: the cross layers, pooler and head."""
    no_single = replace(config, l_layers=0, r_layers=0)
    feature_encoder = 2.0 * n_objects * (config.visual_feat_dim + config.visual_pos_dim) * config.hidden_size
    return forward_flops(no_single, lang_len, n_objects, heads=["matched"]) - feature_encoder


def precision_context(figure: str) -> Callable[[], contextlib.AbstractContextManager]:
    def enter() -> contextlib.AbstractContextManager:
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if figure == "bf16":
            stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16))
        return stack

    return enter


def speed(config: LxmertConfig, n_images: int, n_sentences: int, figures: tuple[str, ...], reps: int,
          pair_batch: int, per_block: int, progress: bool) -> dict[str, Any]:
    torch.manual_seed(0)
    model = LxmertForImageTextMatching(config).eval()
    text, images, mean_pieces = make_gallery(config, n_images, n_sentences)
    pairs = n_images * n_sentences
    result: dict[str, Any] = {"images": n_images, "sentences": n_sentences, "pairs": pairs,
                              "pair_batch": pair_batch, "sentences_per_block": per_block,
                              "mean_pieces": mean_pieces, "objects": N_OBJECTS,
                              "flops_per_pair": {"full": forward_flops(config, mean_pieces, N_OBJECTS, heads=["matched"]),
                                                 "cross": cross_flops(config, mean_pieces, N_OBJECTS)}}
    result["flops_per_pair"]["ratio"] = result["flops_per_pair"]["full"] / result["flops_per_pair"]["cross"]
    reference = None
    for figure in figures:
        ctx = precision_context(figure)
        with ctx():
            full = full_scores(model, text, images, pair_batch, per_block)
            caches = encode(model, text, images, 256)
            cached = score_grid(model, *caches, pair_batch=pair_batch, sentences_per_block=per_block)
        if reference is None:
            reference = full
        fig: dict[str, Any] = {"max_abs_diff_cached_vs_full": float((cached - full).abs().max()),
                               "max_abs_diff_vs_fp32_full": float((cached - reference).abs().max()),
                               "score_std": float(full.std())}

        # each case binds this figure's precision and caches (the loop rebinds the names)
        def call_full(rep: int, ctx=ctx) -> None:
            with ctx():
                full_scores(model, text, images, pair_batch, per_block)

        def call_cached(rep: int, ctx=ctx) -> None:
            with ctx():
                score_grid(model, *encode(model, text, images, 256), pair_batch=pair_batch,
                           sentences_per_block=per_block)

        def call_cross(rep: int, ctx=ctx, caches=caches) -> None:
            with ctx():
                score_grid(model, *caches, pair_batch=pair_batch, sentences_per_block=per_block)

        if progress:
            print(f"retrieval scoring, {figure}: {pairs} pairs, {reps} reps", flush=True)
        t = alternate({"full": call_full, "cached": call_cached, "cross_only": call_cross}, reps=reps,
                      warmup=1, samples_per_call=pairs, progress=progress)
        for name, timing in t.items():
            fig[name] = {**timing.to_dict(), "pairs_per_s": timing.samples_per_s}
        fig["speedup_cached"] = t["cached"].samples_per_s / t["full"].samples_per_s
        fig["speedup_cross_only"] = t["cross_only"].samples_per_s / t["full"].samples_per_s
        flops = result["flops_per_pair"]
        fig["full"]["model_flops_per_s"] = flops["full"] * t["full"].samples_per_s
        fig["cross_only"]["model_flops_per_s"] = flops["cross"] * t["cross_only"].samples_per_s
        result[figure] = fig
    return result


def rerank_study(world: Path, checkpoint: Path, split: str, ks: list[int], stages: list[str],
                 progress: bool) -> dict[str, Any]:
    """Every-pair recall vs two-stage recall, through `lxmert.api.evaluate`."""
    import lxmert.api as lx

    def timed(overrides: list[str]) -> tuple[dict[str, float], float]:
        start = time.perf_counter()
        metrics = lx.evaluate("retrieval", world, checkpoint, split=split, overrides=overrides)
        return metrics, time.perf_counter() - start

    full, seconds = timed([])
    rows = [{"first_stage": None, "rerank_top_k": 0, "seconds": seconds, **full}]
    for stage in stages:
        for k in ks:
            if progress:
                print(f"two-stage {stage}, top {k}", flush=True)
            metrics, seconds = timed([f"retrieval.first_stage={stage}", f"retrieval.rerank_top_k={k}"])
            metrics["rsum_loss"] = full["rsum"] - metrics["rsum"]
            metrics["rsum_dup_loss"] = full["rsum_dup"] - metrics["rsum_dup"]
            rows.append({"first_stage": stage, "rerank_top_k": k, "seconds": seconds, **metrics})
    return {"world": str(world), "checkpoint": str(checkpoint), "split": split, "rows": rows}


def report(result: dict[str, Any]) -> str:
    s = result["speed"]
    lines = [f"Retrieval scoring on {result['machine']['cpu']} ({result['machine']['torch_threads']} threads): "
             f"{s['images']} images x {s['sentences']} sentences = {s['pairs']} pairs, {s['objects']} objects, "
             f"mean {s['mean_pieces']:.1f} word pieces; GFLOP per pair full {s['flops_per_pair']['full'] / 1e9:.2f}, "
             f"cross only {s['flops_per_pair']['cross'] / 1e9:.2f} (ratio {s['flops_per_pair']['ratio']:.2f})"]
    rows = []
    for figure in ("fp32", "bf16"):
        if figure in s:
            f = s[figure]
            rows.append([figure, f["full"]["pairs_per_s"], f["cached"]["pairs_per_s"], f["cross_only"]["pairs_per_s"],
                         f["speedup_cached"], f["speedup_cross_only"], f["max_abs_diff_cached_vs_full"]])
    lines.append(format_table(rows, ["precision", "full pairs/s", "cached pairs/s (with encoding)",
                                     "cross-only pairs/s", "speed-up", "speed-up (cross only)",
                                     "max |cached - full|"]))
    if "rerank" in result:
        r = result["rerank"]
        lines.append(f"\nTwo-stage re-ranking ({r['split']} of {r['world']}):")
        rows = [[row["first_stage"] or "every pair", row["rerank_top_k"], row["scored_pair_fraction"],
                 row["t2i_r1"], row["i2t_r1"], row["rsum"], row.get("rsum_loss", 0.0), row["rsum_dup"],
                 row["seconds"]] for row in r["rows"]]
        lines.append(format_table(rows, ["first stage", "top k", "pairs scored", "t2i R@1", "i2t R@1", "RSUM",
                                         "RSUM lost", "RSUM (dup)", "seconds"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 2-layer 128-wide model (smoke figure only)")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--sentences", type=int, default=40)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--pair-batch", type=int, default=512)
    parser.add_argument("--sentences-per-block", type=int, default=64)
    parser.add_argument("--figures", default="fp32,bf16", help="comma list of fp32, bf16")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rerank-world", type=Path, default=None, help="a world (data root) for the two-stage study")
    parser.add_argument("--rerank-checkpoint", type=Path, default=None, help="a retrieval checkpoint for it")
    parser.add_argument("--rerank-split", default="test")
    parser.add_argument("--rerank-k", default="10,20,50", help="comma list of top k")
    parser.add_argument("--rerank-stages", default="attention,cosine")
    parser.add_argument("--json", type=Path, default=None, help="write the result here (atomically)")
    args = parser.parse_args(argv)
    if (args.rerank_world is None) != (args.rerank_checkpoint is None):
        parser.error("--rerank-world and --rerank-checkpoint go together")
    configure_threads(args.threads)
    config = LxmertConfig()
    if args.quick:
        config = LxmertConfig(hidden_size=128, num_attention_heads=4, intermediate_size=256, l_layers=2,
                              r_layers=2, x_layers=2)
    result: dict[str, Any] = {"figure": "retrieval", "machine": machine_info(), "quick": args.quick,
                              "gemm_flops": gemm_rate()}
    result["speed"] = speed(config, args.images, args.sentences, tuple(args.figures.split(",")), args.reps,
                            args.pair_batch, args.sentences_per_block, progress=True)
    if args.rerank_world is not None:
        result["rerank"] = rerank_study(args.rerank_world, args.rerank_checkpoint, args.rerank_split,
                                        [int(k) for k in args.rerank_k.split(",")], args.rerank_stages.split(","),
                                        progress=True)
    result["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    return finish(result, report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
