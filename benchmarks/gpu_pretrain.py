"""Pre-training step on one GPU: samples/s and MFU of lxmert vs transformers on the same card.

Self-contained (needs only `lxmert`, `torch` and, for the comparison, `transformers`):
copy the repository to a GPU machine and run

    python benchmarks/gpu_pretrain.py                       # bf16 autocast, fused AdamW
    python benchmarks/gpu_pretrain.py --compile             # + torch.compile
    python benchmarks/gpu_pretrain.py --device cpu --steps 2 --tiny   # smoke test, no GPU

lxmert runs the way its pipeline would: bf16 autocast, SDPA (flash / memory-efficient
kernels), sparse MLM logits, dynamic padding of length-bucketed batches (`--batching
length`, the default, as `lxmert pretrain` draws them; `random` for unbucketed), fused AdamW,
batches built on the host in pinned memory and copied with `non_blocking=True`.
transformers runs as its documentation does (fp32, eager attention, padded to 20, torch
AdamW); with `--hf-bf16` it also gets bf16 autocast, to separate precision from the rest.

MFU = model FLOP/s / the card's dense bf16 peak (`--peak-tflops`, else a table of known
cards). Model FLOPs are counted from the shapes (GEMMs and attention products, 2 FLOPs
per multiply-add, backward = 2x forward, MLM at masked rows only). The last line
estimates the release's schedule (20 epochs x 9.18M pairs) on one such card.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import numpy as np
import torch

from lxmert import LxmertConfig, LxmertForPreTraining

# dense bf16 tensor-core peak in TFLOP/s (vendor figures, no sparsity)
KNOWN_PEAKS = {"H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0, "H100 NVL": 835.0,
               "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0, "RTX 4090": 165.0}
EPOCH_PAIRS = 9.18e6
EPOCHS = 20
N_OBJECTS = 36
# word pieces per sentence ([CLS]/[SEP] included) of the pre-training corpus by source:
# (share of sentences, mean, sd); VG region captions dominate (LXMERT paper, Table 1)
LENGTHS = [(0.067, 15.4, 2.9), (0.587, 8.3, 2.4), (0.072, 9.9, 2.5), (0.135, 12.8, 3.7), (0.078, 10.4, 2.7)]


def peak_flops(device: torch.device, override: float | None) -> tuple[float, str]:
    if override:
        return override * 1e12, f"--peak-tflops {override}"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tflops in KNOWN_PEAKS.items():
            if all(part in name for part in key.split()):
                return tflops * 1e12, f"{name}: {tflops:.0f} TFLOP/s bf16 dense"
        raise SystemExit(f"unknown card {name!r}: pass --peak-tflops (dense bf16 TFLOP/s)")
    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(3):
        a @ b
    rate = 3 * 2 * n ** 3 / (time.perf_counter() - start)
    return rate, f"measured fp32 GEMM on CPU: {rate / 1e9:.0f} GFLOP/s"


def sample_lengths(batch: int, generator: torch.Generator, max_length: int = 20) -> list[int]:
    shares = torch.tensor([s for s, _, _ in LENGTHS])
    picks = torch.multinomial(shares, batch, replacement=True, generator=generator)
    out = []
    for i in picks.tolist():
        _, mean, sd = LENGTHS[i]
        out.append(int(min(max(round(mean + sd * float(torch.randn((), generator=generator))), 3), max_length)))
    return out


def make_batch(config: LxmertConfig, lengths: list[int], pad_to: int | None, generator: torch.Generator,
               pin: bool) -> dict[str, Any]:
    """One pre-training batch on the host (pinned when `pin`), masked as the release does."""
    b = len(lengths)
    width = pad_to or max(lengths)
    ids = torch.zeros(b, width, dtype=torch.long)
    mask = torch.zeros(b, width, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(1000, config.vocab_size, (n,), generator=generator)
        ids[row, 0], ids[row, n - 1] = 101, 102
        mask[row, :n] = 1
    inner = mask.bool() & (ids != 101) & (ids != 102)
    chosen = (torch.rand(b, width, generator=generator) < 0.15) & inner
    chosen[:, 1] |= inner[:, 1] & ~chosen.any(dim=1)  # at least one MLM target per row
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    ids = torch.where(chosen, torch.full_like(ids, 103), ids)
    feats = torch.relu(torch.randn(b, N_OBJECTS, config.visual_feat_dim, generator=generator))
    x1y1 = torch.rand(b, N_OBJECTS, 2, generator=generator) * 0.6
    pos = torch.cat([x1y1, x1y1 + 0.3], dim=-1)
    chosen_obj = (torch.rand(b, N_OBJECTS, generator=generator) < 0.15).float()
    batch = {
        "input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids),
        "visual_feats": feats * (1 - chosen_obj)[..., None], "visual_pos": pos, "labels": labels,
        "obj_labels": {
            "obj": (torch.randint(0, config.num_object_labels, (b, N_OBJECTS), generator=generator),
                    torch.rand(b, N_OBJECTS, generator=generator)),
            "attr": (torch.randint(0, config.num_attr_labels, (b, N_OBJECTS), generator=generator),
                     torch.rand(b, N_OBJECTS, generator=generator)),
            "feat": (feats, chosen_obj)},
        "matched_label": torch.ones(b, dtype=torch.long),
        "ans": torch.randint(0, config.num_qa_labels, (b,), generator=generator),
    }
    return _map(batch, lambda t: t.pin_memory()) if pin else batch


def _map(obj: Any, fn) -> Any:
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map(v, fn) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_map(v, fn) for v in obj)
    return obj


def step_flops(config: LxmertConfig, batch: dict[str, Any]) -> float:
    """Training FLOPs (3x forward) of the shapes fed; MLM at masked rows only."""
    d, ff = config.hidden_size, config.intermediate_size
    b, length = batch["input_ids"].shape
    L, N = float(length), float(N_OBJECTS)

    def lin(rows, i, o):
        return 2.0 * rows * i * o

    def att(tq, tk):
        return 4.0 * tq * tk * d

    def layer(t):
        return lin(t, d, 3 * d) + att(t, t) + lin(t, d, d) + lin(t, d, ff) + lin(t, ff, d)

    per_sample = (lin(N, config.visual_feat_dim, d) + config.l_layers * layer(L) + config.r_layers * layer(N)
                  + config.x_layers * (lin(L + N, d, 3 * d) + 2 * att(L, N) + lin(L + N, d, d) + layer(L) + layer(N))
                  + lin(1, d, d) + lin(1, d, 2) + lin(N, d, d)
                  + lin(N, d, config.num_object_labels + config.num_attr_labels + config.visual_feat_dim)
                  + lin(1, d, 2 * d) + lin(1, 2 * d, config.num_qa_labels))
    mlm_rows = float((batch["labels"] != -100).sum())
    return 3.0 * (b * per_sample + lin(mlm_rows, d, d) + lin(mlm_rows, d, config.vocab_size))


def time_side(name: str, model, optimizer, batches, device, steps: int, warmup: int, autocast: bool,
              config: LxmertConfig, **forward_kwargs) -> dict[str, Any]:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times, flops = [], []
    for i in range(warmup + steps):
        batch = batches[i % len(batches)]
        sync()
        start = time.perf_counter()
        on_device = _map(batch, lambda t: t.to(device, non_blocking=True))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = model(**on_device, **forward_kwargs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - start)
            flops.append(step_flops(config, batch))
    b = batches[0]["input_ids"].shape[0]
    med = statistics.median(times)
    return {"name": name, "median_s": med, "samples_per_s": b / med,
            "model_flops_per_s": statistics.median(f / t for f, t in zip(flops, times)), "seconds": times}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch-size", type=int, default=None, help="default 64 on GPU (the release: 256 over 4), 4 on CPU")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5; 1 on CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the lxmert model")
    p.add_argument("--fp32", action="store_true", help="lxmert without bf16 autocast")
    p.add_argument("--hf-bf16", action="store_true", help="also time transformers under bf16 autocast")
    p.add_argument("--no-hf", action="store_true", help="skip transformers")
    p.add_argument("--pad-multiple", type=int, default=8, help="round lxmert's padded length up to this")
    p.add_argument("--batching", choices=("random", "length"), default="length",
                   help="lxmert's batches: length-bucketed by the trainer's sampler (what `lxmert pretrain` "
                        "draws) or random")
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--tiny", action="store_true", help="a small config (smoke tests)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: use --device cpu for a smoke run")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    on_gpu = device.type == "cuda"
    bsz = args.batch_size or (64 if on_gpu else 4)
    warmup = args.warmup if args.warmup is not None else (5 if on_gpu else 1)
    config = (LxmertConfig(hidden_size=128, num_attention_heads=4, intermediate_size=256, l_layers=2, r_layers=2,
                           x_layers=2) if args.tiny else LxmertConfig())
    peak, peak_src = peak_flops(device, args.peak_tflops)

    g = torch.Generator().manual_seed(0)
    n_batches = 8
    raw_lengths = [sample_lengths(bsz, g) for _ in range(n_batches)]
    if args.batching == "length":
        # the trainer's bucketing (one window of these batches), as `lxmert pretrain` draws them
        from lxmert.training.sampler import bucket_by_length

        pool = np.asarray([x for lens in raw_lengths for x in lens])
        batches = [pool[b].tolist() for b in bucket_by_length(np.arange(len(pool)), pool, bsz, n_batches)]
    else:
        batches = raw_lengths
    ours_batches = [make_batch(config, lens, -(-max(lens) // args.pad_multiple) * args.pad_multiple,
                               g, pin=on_gpu) for lens in batches]
    hf_batches = [make_batch(config, lens, 20, g, pin=on_gpu) for lens in raw_lengths]

    torch.manual_seed(0)
    ours = LxmertForPreTraining(config).to(device).train()
    results: dict[str, Any] = {"device": torch.cuda.get_device_name(device) if on_gpu else "cpu",
                               "batch_size": bsz, "peak_flops": peak, "peak_source": peak_src,
                               "torch": torch.__version__}
    opt = torch.optim.AdamW(ours.parameters(), lr=1e-4, fused=True)
    model = torch.compile(ours) if args.compile else ours
    sides = [time_side("lxmert" + (" compiled" if args.compile else "") + ("" if args.fp32 else " bf16"),
                       model, opt, ours_batches, device, args.steps, warmup, not args.fp32, config, sparse_mlm=True)]
    del opt
    if not args.no_hf:
        import transformers

        from lxmert.checkpoint import to_hf_state

        hf = transformers.LxmertForPreTraining(transformers.LxmertConfig(**config.to_hf_dict()))
        missing, unexpected = hf.load_state_dict(to_hf_state(ours.canonical_state()), strict=False)
        if unexpected or [k for k in missing if not k.endswith("decoder.weight")]:
            raise SystemExit(f"weights did not map onto transformers: {missing[:3]} {unexpected[:3]}")
        hf.tie_weights()
        hf = hf.to(device).train()
        hf_opt = torch.optim.AdamW(hf.parameters(), lr=1e-4)
        sides.append(time_side("transformers fp32", hf, hf_opt, hf_batches, device, args.steps, warmup, False, config))
        if args.hf_bf16:
            sides.append(time_side("transformers bf16", hf, hf_opt, hf_batches, device, args.steps, warmup, True,
                                   config))
    results["batching"] = args.batching
    print(f"{results['device']}, B={bsz}, peak {peak_src}; lxmert batches: {args.batching}")
    print(f"| {'model':26} | samples/s | MFU    | vs transformers fp32 | 20 epochs, 1 card |")
    print("|" + "-" * 28 + "|-----------|--------|----------------------|-------------------|")
    base = next((s for s in sides if s["name"] == "transformers fp32"), None)
    for s in sides:
        s["mfu"] = s["model_flops_per_s"] / peak
        s["schedule_hours"] = EPOCHS * EPOCH_PAIRS / s["samples_per_s"] / 3600
        vs = f"{s['samples_per_s'] / base['samples_per_s']:.2f}x" if base else "-"
        print(f"| {s['name']:26} | {s['samples_per_s']:9.1f} | {100 * s['mfu']:5.1f}% | {vs:>20} | "
              f"{s['schedule_hours']:15.1f} h |")
    results["sides"] = sides
    if args.json:
        tmp = f"{args.json}.tmp"
        with open(tmp, "w") as handle:
            json.dump(results, handle, indent=2)
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
