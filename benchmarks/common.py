"""Shared machinery of the benchmark scripts: timing, machine probe, FLOP counts, inputs.

Every figure in docs/benchmarks.md is produced by a script in this folder that measures
`lxmert` and `transformers` on the SAME weights in the SAME process, alternating the two
each repetition (so that a neighbour process stealing a core slows both, not one), and
reports medians and the ratio. This module holds what those scripts share:

- `alternate` / `Timing`: warm-up, alternating repetitions, medians, ratio.
- `gemm_rate`: the fp32 FLOP/s of one large square GEMM on this machine, the ceiling a
  model that is ~90% dense matrix products can approach ("useful model FLOP/s" divides
  by it).
- `forward_flops` / `step_flops`: model FLOPs counted from the shapes (2 FLOPs per
  multiply-add; GEMMs and attention products only; LayerNorm, GeLU, softmax are not
  counted, as is usual for MFU). Training counts 3x the forward (backward = 2x).
- `SentenceSampler`, `text_batches`: sentences whose word counts are drawn like real
  captions / questions, tokenised with `lxmert.text.LxmertTokenizer`, batched by the
  trainer's sampler (length-aware) and as the transformers demo does (padded to 20).
- `real_length_corpus`: a data root for the real commands (a generated world whose
  sentences have those lengths), `StepRecorder`: what the real training loop fed.
- `pretraining_targets`, `visual_inputs`: the release's masking and object targets.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from lxmert.config import LxmertConfig
from lxmert.training.hooks import TrainerHook

__all__ = [
    "Timing", "alternate", "gemm_rate", "machine_info", "configure_threads",
    "forward_flops", "step_flops", "comparison_report", "SentenceSampler", "SOURCES", "PRETRAIN_MIX",
    "random_batches", "TextBatches", "text_batches", "pretraining_targets", "visual_inputs",
    "hf_model_from_ours", "format_table", "write_json", "load_pretraining_pair",
    "real_length_corpus", "CORPUS_SOURCES", "StepRecorder", "step_seconds",
]


# --------------------------------------------------------------------------- timing

def configure_threads(threads: int | None) -> int:
    """Set torch intra-op threads (None: leave the default) and return the count in use."""
    if threads is not None:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


@dataclass
class Timing:
    """Seconds per call of one case, plus how many samples one call processes."""

    name: str
    seconds: list[float] = field(default_factory=list)
    samples_per_call: int = 1

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def samples_per_s(self) -> float:
        """Throughput from the median call (robust to one call hit by a neighbour)."""
        return self.samples_per_call / self.median

    @property
    def spread(self) -> float:
        """(max - min) / median: how noisy the repetitions were."""
        return (max(self.seconds) - min(self.seconds)) / self.median if self.seconds else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seconds": self.seconds, "median_s": self.median,
                "samples_per_call": self.samples_per_call, "samples_per_s": self.samples_per_s,
                "spread": self.spread}


def alternate(cases: Mapping[str, Callable[[int], Any]], reps: int, warmup: int = 1,
              samples_per_call: int | Mapping[str, int] = 1,
              progress: bool = False) -> dict[str, Timing]:
    """Time each case `reps` times, alternating cases every repetition, after `warmup`.

    Each case is called as `fn(rep_index)` so a case may feed a different batch per
    repetition (the system-level figures walk through a set of batches); warm-up calls
    get negative indices. The order of the cases flips every repetition to cancel any
    "second one runs on a warmer cache" bias.
    """
    names = list(cases)
    per_call = (samples_per_call if isinstance(samples_per_call, Mapping)
                else {name: samples_per_call for name in names})
    timings = {name: Timing(name, samples_per_call=int(per_call[name])) for name in names}
    for w in range(warmup):
        for name in names:
            cases[name](-1 - w)
    # a collection before each timed call keeps GC pauses out of the timings; freezing
    # the objects that exist now (models, batches) makes those collections cheap
    gc.collect()
    gc.freeze()
    try:
        for rep in range(reps):
            order = names if rep % 2 == 0 else names[::-1]
            for name in order:
                gc.collect()
                start = time.perf_counter()
                cases[name](rep)
                timings[name].seconds.append(time.perf_counter() - start)
            if progress:
                shown = ", ".join(f"{n} {timings[n].seconds[-1]:.3f}s" for n in names)
                print(f"  rep {rep + 1}/{reps}: {shown}", flush=True)
    finally:
        gc.unfreeze()
    return timings


def ratio(ours: Timing, theirs: Timing) -> float:
    """How many times more samples per second `ours` processes than `theirs`."""
    return ours.samples_per_s / theirs.samples_per_s


# --------------------------------------------------------------------------- machine

def gemm_rate(n: int = 2048, reps: int = 7, dtype: torch.dtype = torch.float32) -> float:
    """Median FLOP/s of an n x n x n GEMM: the practical ceiling of this machine.

    n=2048 (17 GFLOP per product, ~0.3 s on 2 cores) is large enough that MKL runs at
    its steady-state rate and small enough to measure while other jobs share the cores.
    """
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dtype)
    b = torch.randn(n, n, generator=g).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    torch.mm(a, b, out=out)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        times.append(time.perf_counter() - start)
    return 2.0 * n ** 3 / statistics.median(times)


def set_gemm_fractions(result: dict[str, Any], figures: Iterable[str]) -> None:
    """Each side's model FLOP/s over the GEMM probe of the precision it ran in: the bf16
    figure's lxmert side against `result["gemm_bf16_flops"]`, everything else fp32's."""
    for name in figures:
        for side in ("lxmert", "transformers"):
            rate = result["gemm_bf16_flops"] if (name, side) == ("bf16", "lxmert") else result["gemm_flops"]
            result[name][side]["gemm_fraction"] = result[name][side]["model_flops_per_s"] / rate


def machine_info() -> dict[str, Any]:
    """CPU model, cores, threads, load average, versions: printed with every figure."""
    model = platform.processor() or "unknown"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    info: dict[str, Any] = {
        "cpu": model, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        info["transformers"] = None
    return info


# --------------------------------------------------------------------------- FLOPs

def _linear(rows: float, fan_in: int, fan_out: int) -> float:
    return 2.0 * rows * fan_in * fan_out


def _attention(tq: float, tk: float, d: int) -> float:
    """QK^T and PV products: 2 GEMMs of tq x tk x d multiply-adds."""
    return 2.0 * 2.0 * tq * tk * d


def forward_flops(config: LxmertConfig, lang_len: float, n_objects: int, *, mlm_rows: float = 0.0,
                  heads: Iterable[str] = (), attention: bool = True,
                  feat_rows: float | None = None, first_token: bool = False) -> float:
    """Forward FLOPs of ONE sample with `lang_len` word pieces and `n_objects` objects.

    `first_token=True`: the last cross layer as the pooled heads run it at inference
    (`CrossModalityLayer.first_token`): the shared QKV over all rows, the words' attention
    over objects and their output projection, the words' QKV, one query row of
    self-attention, its output projection and feed-forward. The default counts the full
    forward (what transformers runs, and lxmert whenever it needs every row).

    `lang_len` is whatever the model is fed (padded length for a padded batch); `heads`
    lists the heads that run: "mlm" (on `mlm_rows` positions), "matched", "obj" (object
    label / attribute / feature decoders that the config enables; the feature decoder on
    `feat_rows` objects, default all), "qa".
    `attention=False` leaves out the QK^T / PV products (torch's FlopCounterMode does not
    see inside the CPU SDPA kernel; the tests compare against it that way).
    """
    d, ff = config.hidden_size, config.intermediate_size
    L, N = float(lang_len), float(n_objects)
    att = _attention if attention else (lambda tq, tk, dim: 0.0)

    def bert_layer(t: float) -> float:  # fused QKV, attention, output projection, FFN up and down
        return _linear(t, d, 3 * d) + att(t, t, d) + _linear(t, d, d) + _linear(t, d, ff) + _linear(t, ff, d)

    total = _linear(N, config.visual_feat_dim, d) + _linear(N, config.visual_pos_dim, d)
    total += config.l_layers * bert_layer(L)
    total += config.r_layers * bert_layer(N)
    cross = (_linear(L + N, d, 3 * d) + att(L, N, d) + att(N, L, d) + _linear(L + N, d, d)
             + bert_layer(L) + bert_layer(N))
    if first_token and config.x_layers:
        last = (_linear(L + N, d, 3 * d) + att(L, N, d) + _linear(L, d, d)
                + _linear(L, d, 3 * d) + att(1, L, d) + _linear(1, d, d) + _linear(1, d, ff) + _linear(1, ff, d))
        total += (config.x_layers - 1) * cross + last
    else:
        total += config.x_layers * cross
    total += _linear(1, d, d)  # pooler
    heads = set(heads)
    unknown = heads - {"mlm", "matched", "obj", "qa"}
    if unknown:
        raise ValueError(f"unknown heads {sorted(unknown)}")
    if "mlm" in heads:
        total += _linear(mlm_rows, d, d) + _linear(mlm_rows, d, config.vocab_size)
    if "matched" in heads:
        total += _linear(1, d, 2)
    if "obj" in heads:
        outs = config.num_object_labels * config.visual_obj_loss + config.num_attr_labels * config.visual_attr_loss
        total += _linear(N, d, d) + _linear(N, d, outs)
        if config.visual_feat_loss:
            total += _linear(N if feat_rows is None else float(feat_rows), d, config.visual_feat_dim)
    if "qa" in heads:
        total += _linear(1, d, 2 * d) + _linear(1, 2 * d, config.num_qa_labels)
    return total


def step_flops(config: LxmertConfig, lang_lens: Sequence[float], n_objects: int, *,
               mlm_rows: Sequence[float] | None = None, heads: Iterable[str] = (),
               training: bool = False, attention: bool = True,
               feat_rows: Sequence[float] | None = None, first_token: bool = False) -> float:
    """Model FLOPs of one batch: per-sample forward FLOPs summed, x3 when training
    (`first_token`: see `forward_flops`)."""
    heads = tuple(heads)
    rows = mlm_rows if mlm_rows is not None else [0.0] * len(lang_lens)
    feats = feat_rows if feat_rows is not None else [None] * len(lang_lens)
    fwd = sum(forward_flops(config, length, n_objects, mlm_rows=r, heads=heads, attention=attention, feat_rows=f,
                            first_token=first_token)
              for length, r, f in zip(lang_lens, rows, feats))
    return 3.0 * fwd if training else fwd


# --------------------------------------------------------------------------- inputs

# Word counts per sentence (mean, sd, min, max): the published statistics of each corpus
# rounded (COCO captions ~10.5 words; VG region descriptions ~5; VQA questions ~6.2;
# GQA questions ~8.5; Visual7W/VG-QA questions ~6.5). The benchmark draws from a clipped
# normal with these moments; what reaches the model are the resulting WordPiece lengths,
# which each script prints.
SOURCES: dict[str, tuple[float, float, int, int]] = {
    "coco_caption": (10.5, 2.4, 6, 30),
    "vg_caption": (5.0, 1.9, 1, 20),
    "vqa_question": (6.2, 2.0, 2, 20),
    "gqa_question": (8.5, 3.0, 3, 25),
    "vgqa_question": (6.5, 2.2, 3, 20),
}
# Approximate sentence counts of the pre-training corpus by source (LXMERT paper,
# Table 1: 9.18M pairs, VG captions the majority).
PRETRAIN_MIX: dict[str, float] = {
    "coco_caption": 0.62, "vg_caption": 5.39, "vqa_question": 0.66,
    "gqa_question": 1.24, "vgqa_question": 0.72,
}


class SentenceSampler:
    """Random sentences of vocabulary words with word counts drawn like a real corpus.

    Words are whole-word entries of the BERT vocabulary; 30% of them get a common
    suffix (s, ing, ed, ...) so that the WordPiece/word ratio (~1.2) resembles English
    captions. The text is random but its length distribution, which is what drives the
    cost of the model, is realistic.
    """

    SUFFIXES = ("s", "ing", "ed", "er", "ly")
    suffix_rate = 0.3

    def __init__(self, tokenizer, seed: int = 0) -> None:
        self.tokenizer = tokenizer
        self.generator = torch.Generator().manual_seed(seed)
        self.words = [w for w in tokenizer.vocab if w.isalpha() and w.isascii() and len(w) >= 3][:20000]
        if not self.words:
            raise ValueError("tokenizer vocabulary holds no whole words")

    def _randint(self, high: int) -> int:
        return int(torch.randint(0, high, (1,), generator=self.generator))

    def _rand(self) -> float:
        return float(torch.rand((), generator=self.generator))

    def sentence(self, source: str) -> str:
        mean, sd, lo, hi = SOURCES[source]
        n = int(round(mean + sd * float(torch.randn((), generator=self.generator))))
        n = min(max(n, lo), hi)
        words = []
        for _ in range(n):
            w = self.words[self._randint(len(self.words))]
            if self._rand() < self.suffix_rate:
                w += self.SUFFIXES[self._randint(len(self.SUFFIXES))]
            words.append(w)
        return " ".join(words)

    def sentences(self, count: int, mix: Mapping[str, float] | str) -> list[str]:
        """`count` sentences from one source (a name) or a mix {source: weight}."""
        if isinstance(mix, str):
            mix = {mix: 1.0}
        names = list(mix)
        weights = torch.tensor([float(mix[n]) for n in names])
        picks = torch.multinomial(weights, count, replacement=True, generator=self.generator)
        return [self.sentence(names[int(i)]) for i in picks]


def random_batches(n: int, batch_size: int, seed: int = 0) -> list[list[int]]:
    """Shuffled batches without bucketing (what the transformers demo loop does)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return [perm[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


@dataclass
class TextBatches:
    """The same sentences batched two ways, plus length statistics for the report."""

    ours: list[dict[str, torch.Tensor]]     # length-bucketed, padded to the batch's longest
    theirs: list[dict[str, torch.Tensor]]   # shuffled, padded to 20 (the transformers demo)
    mean_pieces: float                      # mean ids per sentence ([CLS] and [SEP] included)
    mean_padded_ours: float                 # mean padded length the model is fed
    mean_padded_theirs: float
    bucketing: str = ""                     # which sampler cut lxmert's batches


def _pipeline_batches(lengths: Sequence[int], batch_size: int, seed: int) -> tuple[list[list[int]], str]:
    """Length-bucketed index batches as the trainer draws them (`data.batching = "length"`)."""
    from lxmert.training.sampler import WINDOW_BATCHES, GlobalBatchSampler

    # the full window, as a real fine-tuning set (thousands of steps per epoch) gets it;
    # the small pools here would get smaller windows by default (`training_window`)
    sampler = GlobalBatchSampler(len(lengths), batch_size, seed, 0, lengths=lengths, window_batches=WINDOW_BATCHES)
    return [list(b) for b in sampler], "lxmert.training.sampler.GlobalBatchSampler (data.batching = length)"


def _collate_text(tokenizer, sequences: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
    """Dynamic padding through the data layer's collate (fallback: the tokenizer's pad)."""
    try:
        from lxmert.data.collate import text_batch
    except ImportError:
        return tokenizer.pad(sequences)
    return text_batch(sequences, pad_id=tokenizer.pad_id)


def text_batches(tokenizer, sentences: Sequence[str], batch_size: int, n_batches: int,
                 max_length: int = 20, seed: int = 0) -> TextBatches:
    """Tokenise `sentences` once; batch them the lxmert way and the transformers way.

    transformers gets `n_batches` shuffled batches padded to `max_length`; lxmert gets
    `n_batches` of the length-bucketed batches of the trainer's sampler, padded to
    their longest sentence, picked evenly over the length range (then shuffled) so that a
    handful of timed batches represents the pool's length distribution.
    """
    ids = tokenizer.encode_batch(list(sentences), max_length=max_length)
    lengths = [len(x) for x in ids]
    buckets, how = _pipeline_batches(lengths, batch_size, seed)
    buckets = sorted(buckets, key=lambda b: max(lengths[i] for i in b))
    if len(buckets) < n_batches:
        raise ValueError(f"{len(ids)} sentences make fewer than {n_batches} batches of {batch_size}")
    picks = [buckets[min(len(buckets) - 1, int((k + 0.5) * len(buckets) / n_batches))] for k in range(n_batches)]
    order = torch.randperm(len(picks), generator=torch.Generator().manual_seed(seed)).tolist()
    ours_idx = [picks[i] for i in order]
    theirs_idx = random_batches(len(ids), batch_size, seed=seed + 1)[:n_batches]
    ours = [_collate_text(tokenizer, [ids[i] for i in b]) for b in ours_idx]
    theirs = [tokenizer.pad([ids[i] for i in b], pad_to=max_length) for b in theirs_idx]
    return TextBatches(
        ours=ours, theirs=theirs, mean_pieces=statistics.fmean(lengths),
        mean_padded_ours=statistics.fmean(b["input_ids"].shape[1] for b in ours),
        mean_padded_theirs=float(max_length), bucketing=how,
    )


def visual_inputs(batch: int, n_objects: int, feat_dim: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Bottom-up-attention-like objects: non-negative sparse-ish features, valid boxes."""
    feats = torch.relu(torch.randn(batch, n_objects, feat_dim, generator=generator)) * 1.5
    x1y1 = torch.rand(batch, n_objects, 2, generator=generator) * 0.6
    wh = torch.rand(batch, n_objects, 2, generator=generator) * 0.4 + 0.05
    boxes = torch.cat([x1y1, (x1y1 + wh).clamp(max=1.0)], dim=-1)
    return {"visual_feats": feats, "visual_pos": boxes}


def pretraining_targets(input_ids: torch.Tensor, attention_mask: torch.Tensor, visual_feats: torch.Tensor,
                        config: LxmertConfig, generator: torch.Generator,
                        special_ids: tuple[int, ...] = (0, 101, 102), mask_id: int = 103,
                        qa_fraction: float = 0.35) -> dict[str, Any]:
    """The release's masking: 15% word pieces (80/10/10), 15% objects, matching, QA.

    Returns the masked `input_ids`, masked `visual_feats` and every target. Runs on the
    padded tensors; padding positions are never chosen, so the same targets serve a
    batch padded to 20 or padded to its longest sentence.
    """
    b, length = input_ids.shape
    try:  # the data layer's masking when it is installed
        import numpy as np

        from lxmert.data.masking import mask_tokens

        rng = np.random.default_rng(int(torch.randint(0, 2 ** 31, (1,), generator=generator)))
        masked, lab = mask_tokens(input_ids.numpy(), rng, vocab_size=config.vocab_size, mask_id=mask_id,
                                  special_ids=special_ids)
        ids, labels = torch.from_numpy(masked), torch.from_numpy(lab)
    except ImportError:
        ids = input_ids.clone()
        candidate = attention_mask.bool()
        for sid in special_ids:
            candidate &= ids != sid
        chosen = (torch.rand(b, length, generator=generator) < 0.15) & candidate
        labels = torch.where(chosen, ids, torch.full_like(ids, -100))
        roll = torch.rand(b, length, generator=generator)
        ids[chosen & (roll < 0.8)] = mask_id
        rand_pos = chosen & (roll >= 0.8) & (roll < 0.9)
        ids[rand_pos] = torch.randint(1000, config.vocab_size, (int(rand_pos.sum()),), generator=generator)

    feats = visual_feats.clone()
    n = feats.shape[1]
    obj_chosen = torch.rand(b, n, generator=generator) < 0.15
    feats[obj_chosen & (torch.rand(b, n, generator=generator) < 0.8)] = 0.0
    obj_labels = {
        "obj": (torch.randint(0, config.num_object_labels, (b, n), generator=generator),
                torch.rand(b, n, generator=generator)),
        "attr": (torch.randint(0, config.num_attr_labels, (b, n), generator=generator),
                 torch.rand(b, n, generator=generator)),
        "feat": (visual_feats, obj_chosen.float()),
    }
    matched = (torch.rand(b, generator=generator) < 0.5).long()
    ans = torch.randint(0, config.num_qa_labels, (b,), generator=generator)
    ans[(matched == 0) | (torch.rand(b, generator=generator) >= qa_fraction)] = -100
    matched[0], ans[0] = 1, ans[0].clamp(min=0)  # >= 1 QA target: all-ignored CE is NaN in transformers
    return {"input_ids": ids, "visual_feats": feats, "labels": labels, "obj_labels": obj_labels,
            "matched_label": matched, "ans": ans}


# --------------------------------------------------------------------------- a corpus for the real commands

#: the generated world's pre-training sources -> the corpus statistics (`SOURCES`) their
#: sentences are drawn with, and the question sources' VQA / GQA files
CORPUS_SOURCES: dict[str, str] = {"mscoco": "coco_caption", "vg": "vg_caption", "vqa": "vqa_question",
                                  "gqa": "gqa_question", "visual7w": "vgqa_question"}
_MIX_OF = {"mscoco": "coco_caption", "vg": "vg_caption", "vqa": "vqa_question", "gqa": "gqa_question",
           "visual7w": "vgqa_question"}
_CORPUS_MARKER = "corpus.json"


def real_length_corpus(root: "os.PathLike[str] | str", images: int = 300, sentences_per_image: int = 20,
                       questions_per_image: int = 30, feat_dim: int = 2048, seed: int = 0,
                       progress: bool = False) -> dict[str, Any]:
    """A data root that the real commands read (`lxmert pretrain|finetune|evaluate|predict
    --data ROOT`), whose sentences have the real corpora's lengths; reused when present.

    It is a generated world (`lxmert.data.synth`: images with 36 boxes of `feat_dim`-d
    features in a float16 store, the release's file layouts) with its text replaced:
    `lxmert/*.json` get `sentences_per_image` sentences per image, their sources drawn in
    the pre-training corpus' proportions (`PRETRAIN_MIX`: VG region descriptions ~60%) and
    their words by `SentenceSampler` (COCO captions ~12.6 word pieces, VG descriptions
    ~6, VQA questions ~7.4, GQA ~10.2, Visual7W ~7.8, before [CLS]/[SEP]); question
    sources get a random answer of the world's table as label. `vqa/*.json` and
    `gqa/*.json` keep their labels with VQA- and GQA-length questions
    (`questions_per_image` per image). Text is random words: only lengths, which drive
    the cost, are realistic. Returns the statistics also written to ROOT/corpus.json
    (mean ids per sentence, [CLS]/[SEP] included, per source and file).
    """
    import json
    from pathlib import Path

    import numpy as np

    from lxmert.data.synth import SynthConfig, generate_world
    from lxmert.text import LxmertTokenizer

    root = Path(root)
    params = {"images": images, "sentences_per_image": sentences_per_image,
              "questions_per_image": questions_per_image, "feat_dim": feat_dim, "seed": seed, "version": 1}
    marker = root / _CORPUS_MARKER
    if marker.is_file():
        stats = json.loads(marker.read_text())
        if stats.get("params") == params:
            return stats
    generate_world(root, SynthConfig(images=images, feat_dim=feat_dim, seed=seed, captions_per_image=1,
                                     vg_per_image=1, vqa_per_image=questions_per_image,
                                     gqa_per_image=questions_per_image),
                   build_store=True, store_dtype="float16", progress=progress, overwrite=True)
    tok = LxmertTokenizer.from_vocab()
    words = SentenceSampler(tok, seed=seed)
    rng = np.random.default_rng(seed)
    answers = [a["ans"] for a in json.loads((root / "lxmert" / "all_ans.json").read_text())]
    names = list(_MIX_OF)
    weights = np.array([PRETRAIN_MIX[_MIX_OF[n]] for n in names])
    weights = weights / weights.sum()
    lengths: dict[str, list[int]] = {}

    def sentences(source: str, count: int, key: str) -> list[str]:
        out = [words.sentence(CORPUS_SOURCES[source]) for _ in range(count)]
        lengths.setdefault(key, []).extend(len(x) for x in tok.encode_batch(out, max_length=20))
        return out

    for path in sorted((root / "lxmert").glob("mscoco_*.json")):
        entries = json.loads(path.read_text())
        for entry in entries:
            counts = rng.multinomial(sentences_per_image, weights)
            entry["sentf"] = {n: sentences(n, int(c), f"lxmert/{n}") for n, c in zip(names, counts) if c}
            entry["labelf"] = {n: [{answers[int(rng.integers(len(answers)))]: 1.0} for _ in entry["sentf"][n]]
                               for n in ("vqa", "gqa", "visual7w") if n in entry["sentf"]}
        path.write_text(json.dumps(entries))
    for folder in ("vqa", "gqa"):
        for path in sorted((root / folder).glob("*.json")):
            entries = json.loads(path.read_text())
            if not isinstance(entries, list) or not entries or "sent" not in entries[0]:
                continue  # answer tables
            new = sentences(folder, len(entries), f"{folder}/{path.stem}")
            for entry, sent in zip(entries, new):
                entry["sent"] = sent
            path.write_text(json.dumps(entries))
    stats = {"params": params, "mean_ids": {k: float(np.mean(v)) for k, v in sorted(lengths.items())},
             "sentences": {k: len(v) for k, v in sorted(lengths.items())},
             "mean_ids_pretraining": float(np.mean([x for k, v in lengths.items() if k.startswith("lxmert/")
                                                    for x in v]))}
    marker.write_text(json.dumps(stats, indent=2) + "\n")
    return stats


class StepRecorder(TrainerHook):
    """A `TrainerHook` that only watches: the shapes of every micro-batch the real loop
    trains on (padded width, real tokens, MLM and feature-regression rows per example),
    for padding and FLOP accounting. It returns None, so the loop runs its own step."""

    def __init__(self) -> None:
        self.micro: list[dict[str, Any]] = []

    def on_setup(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.config = getattr(model, "config", None)

    def micro_step(self, model, inputs, loss_fn, **kwargs) -> None:
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        record: dict[str, Any] = {"batch": int(ids.shape[0]), "width": int(ids.shape[1]),
                                  "tokens": int(mask.sum()) if mask is not None else int(ids.numel()),
                                  "objects": int(inputs["visual_feats"].shape[-2])}
        labels = inputs.get("labels")
        if labels is not None and labels.dim() == 2 and labels.shape == ids.shape:
            record["mlm_rows"] = (labels != -100).sum(dim=1).tolist()
        feat = (inputs.get("obj_labels") or {}).get("feat")
        if feat is not None:
            record["feat_rows"] = (feat[1] != 0).sum(dim=1).tolist()
        self.micro.append(record)
        return None

    def summary(self, skip: int = 0) -> dict[str, float]:
        """Padded and real text tokens over the micro-batches after the first `skip`."""
        kept = self.micro[skip:]
        padded = sum(r["batch"] * r["width"] for r in kept)
        real = sum(r["tokens"] for r in kept)
        return {"micro_batches": len(kept), "padded_tokens": padded, "real_tokens": real,
                "padding_fraction": (padded - real) / padded if padded else math.nan,
                "mean_width": statistics.fmean(r["width"] for r in kept) if kept else math.nan}


def step_seconds(run_dir: "os.PathLike[str] | str", batch_size: int) -> list[float]:
    """Seconds of each logged training step of a run made with `train.log_every = 1`, from
    the loop's own metrics.jsonl (samples/s over the step: data loading included)."""
    import json
    from pathlib import Path

    records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [batch_size / r["samples_per_s"] for r in records if r.get("split") == "train"]


# --------------------------------------------------------------------------- models

def hf_model_from_ours(ours: torch.nn.Module, hf_cls_name: str) -> torch.nn.Module:
    """A `transformers` model holding exactly the weights of `ours` (via the key map)."""
    import transformers

    from lxmert.checkpoint import to_hf_state

    hf_cls = getattr(transformers, hf_cls_name)
    hf = hf_cls(transformers.LxmertConfig(**ours.config.to_hf_dict()))
    state = to_hf_state(ours.canonical_state())
    if hf_cls_name == "LxmertModel":
        state = {k[len("lxmert."):]: v for k, v in state.items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("decoder.weight") and "position_ids" not in k]
    if missing or unexpected:
        raise RuntimeError(f"weights did not map onto {hf_cls_name}: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}")
    hf.tie_weights()
    return hf


def load_pretraining_pair(config: LxmertConfig, seed: int = 0):
    """(ours, theirs): LxmertForPreTraining twins with identical random weights."""
    from lxmert import LxmertForPreTraining

    torch.manual_seed(seed)
    ours = LxmertForPreTraining(config)
    return ours, hf_model_from_ours(ours, "LxmertForPreTraining")


# --------------------------------------------------------------------------- output

def write_json(path: "os.PathLike[str] | str", data: Mapping[str, Any]) -> None:
    """Write `data` as JSON atomically (temp file + os.replace: never a partial file)."""
    import json
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def finish(result: Mapping[str, Any], report: Callable[[Any], str], json_path: "os.PathLike[str] | str | None") -> int:
    """A benchmark's last step: print `report(result)`; keep the raw result at `json_path`
    (atomically) when given. Returns the exit status (0)."""
    print(report(result))
    if json_path:
        write_json(json_path, result)
    return 0


def format_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A GitHub-markdown table (also readable in a terminal)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells[1:]]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def comparison_report(result: dict[str, Any], title: str, labels: dict[str, str], what: str) -> str:
    """The table of an lxmert-vs-transformers figure pair (`result["system"]`, `["same"]`):
    samples/s of both, their ratio and each side's model FLOP/s as a fraction of GEMM."""
    rows = []
    for name, label in labels.items():
        if name in result:
            fig = result[name]
            rows.append([f"{label}, B={result['batch_size']}", fig["lxmert"]["samples_per_s"],
                         fig["transformers"]["samples_per_s"], fig["ratio"],
                         fig["lxmert"]["gemm_fraction"], fig["transformers"]["gemm_fraction"]])
    head = (f"{title} on {result['machine']['cpu']} ({result['machine']['torch_threads']} threads), "
            f"{what}: {result['source']}, mean {result['mean_pieces']:.1f} ids, both sides padded to 20 "
            f"(same tensors); GEMM {result['gemm_flops'] / 1e9:.0f} GFLOP/s; "
            f"load {result['machine']['load_avg_1m']:.1f} -> {result['machine']['load_avg_1m_end']:.1f}")
    return head + "\n" + format_table(rows, ["figure", "lxmert samples/s", "transformers samples/s", "ratio",
                                             "lxmert FLOP/s / GEMM", "transformers FLOP/s / GEMM"])
