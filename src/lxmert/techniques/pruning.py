"""Magnitude pruning and lottery-ticket rewinding (Frankle & Carbin 2019; lxmert_compression).

What is pruned: weight MATRICES (every `nn.Linear` weight, and the embedding tables unless
kept). Biases and LayerNorm parameters are never pruned - they are ~0.1% of the weights
and pruning them changes the function out of proportion, which is also what the BERT/LXMERT
lottery-ticket studies did. `keep_embeddings` keeps the word/position/type tables;
`keep_head` keeps every parameter outside the encoder (`lxmert.*`): the task's output
layers (answer head, NLVR2 / classification head, pre-training heads).

Scopes: `"global"` ranks |w| over all prunable tensors together (layers that matter less
lose more), `"layer"` prunes every tensor to the same sparsity (the lxmert_compression
setting: "10% per round per tensor").

Masks are plain 0/1 tensors held by :class:`PruningMasks`; `apply()` multiplies the
weights in place, and `attach(optimizer)` re-applies them after every optimiser step
(a step with weight decay or momentum would otherwise revive pruned weights). A pruned
checkpoint is an ordinary checkpoint whose tensors contain zeros: it loads and runs like
any other, and `masks_from_zeros` recovers the masks from it to continue training.

Iterative pruning with rewinding (:func:`lottery_ticket`): train -> prune `rate` of the
remaining weights -> rewind the survivors to their values at initialisation (or an early
step) -> retrain, until the target sparsity; each round's score is recorded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from lxmert.atomic import atomic_write_text
from lxmert.checkpoint.files import RECIPE_NAME
from lxmert.modeling import LxmertPreTrainedModel
from lxmert.training.hooks import TrainerHook

__all__ = [
    "PruningMasks",
    "prunable_parameters",
    "magnitude_masks",
    "prune_model",
    "masks_from_zeros",
    "sparsity_report",
    "format_report",
    "lottery_ticket",
    "rounds_to_sparsity",
    "LotteryRound",
    "prune_checkpoint",
    "SparsityHook",
    "CARRIED_FILES",
]

#: files of a source checkpoint directory that a pruned copy keeps
CARRIED_FILES = ("vocab.txt", RECIPE_NAME)

EMBEDDING_PATTERN = re.compile(r"embeddings\.(word|position|token_type)_embeddings\.weight$")


def _inner(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def prunable_parameters(model: nn.Module, *, keep_embeddings: bool = False,
                        keep_head: bool = False) -> dict[str, nn.Parameter]:
    """Name -> parameter of every weight matrix that may be pruned (see module doc).

    Tied parameters (the MLM decoder shares the word embedding table) appear once, under
    the name `named_parameters()` gives first.
    """
    model = _inner(model)
    linear_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    wrapped = any(n.startswith("lxmert.") for n, _ in model.named_parameters())
    out: dict[str, nn.Parameter] = {}
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        is_embedding = bool(EMBEDDING_PATTERN.search(name))
        if not (id(p) in linear_weights or is_embedding):
            continue
        if keep_embeddings and is_embedding:
            continue
        in_encoder = name.startswith("lxmert.") or not wrapped  # a bare LxmertModel has no head
        if keep_head and not in_encoder:
            continue
        out[name] = p
    if not out:
        raise ValueError(f"{type(model).__name__}: nothing to prune with keep_embeddings={keep_embeddings}, "
                         f"keep_head={keep_head}")
    return out


@dataclass
class PruningMasks:
    """0/1 masks by parameter name; `apply()` zeroes the pruned weights in place."""

    masks: dict[str, torch.Tensor]
    params: dict[str, nn.Parameter] = field(default_factory=dict, repr=False)
    _hooks: list[Any] = field(default_factory=list, repr=False)

    def bind(self, model: nn.Module) -> "PruningMasks":
        """Attach to `model`'s parameters (by name); errors name missing / misshapen ones."""
        named = dict(_inner(model).named_parameters())
        params = {}
        for name, mask in self.masks.items():
            if name not in named:
                raise KeyError(f"mask for {name!r}, which {type(_inner(model)).__name__} does not have")
            if named[name].shape != mask.shape:
                raise ValueError(f"mask for {name}: shape {tuple(mask.shape)} vs parameter {tuple(named[name].shape)}")
            params[name] = named[name]
            self.masks[name] = mask.to(device=named[name].device, dtype=named[name].dtype)
        self.params = params
        return self

    @torch.no_grad()
    def apply(self) -> None:
        for name, p in self.params.items():
            p.mul_(self.masks[name])

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Re-apply the masks after every `optimizer.step()` (pruned weights stay zero)."""
        self._hooks.append(optimizer.register_step_post_hook(lambda *_: self.apply()))

    def detach(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    def zero_pruned_grads(self) -> None:
        """Optional: zero the gradients of pruned weights (keeps optimiser moments clean)."""
        for name, p in self.params.items():
            if p.grad is not None:
                p.grad.mul_(self.masks[name])

    @property
    def sparsity(self) -> float:
        total = sum(m.numel() for m in self.masks.values())
        kept = sum(float(m.sum()) for m in self.masks.values())
        return 1.0 - kept / max(total, 1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.to(torch.bool).cpu() for k, v in self.masks.items()}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> "PruningMasks":
        return cls({k: v.float() for k, v in state.items()})


def magnitude_masks(params: Mapping[str, torch.Tensor], sparsity: float, *, scope: str = "global",
                    previous: PruningMasks | None = None) -> PruningMasks:
    """Masks keeping the largest-|w| weights so that `sparsity` of `params` is zero.

    With `previous`, weights it pruned stay pruned (and count towards the target): the
    iterative schedule. Ties at the threshold are broken by position (exact counts).
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")

    def scores(name: str, w: torch.Tensor) -> torch.Tensor:
        s = w.detach().abs().float().reshape(-1)
        if previous is not None and name in previous.masks:
            s = torch.where(previous.masks[name].reshape(-1).to(s.device) > 0, s,
                            torch.full_like(s, -1.0))  # already pruned: always below threshold
        return s

    masks: dict[str, torch.Tensor] = {}
    if scope == "layer":
        for name, w in params.items():
            s = scores(name, w)
            k = int(round(sparsity * s.numel()))
            keep = torch.ones_like(s)
            if k > 0:
                keep[torch.topk(s, k, largest=False).indices] = 0.0
            masks[name] = keep.view_as(w)
    else:
        flat = torch.cat([scores(n, w) for n, w in params.items()])
        k = int(round(sparsity * flat.numel()))
        keep = torch.ones_like(flat)
        if k > 0:
            keep[torch.topk(flat, k, largest=False).indices] = 0.0
        offset = 0
        for name, w in params.items():
            masks[name] = keep[offset:offset + w.numel()].view_as(w)
            offset += w.numel()
    return PruningMasks(masks)


def prune_model(model: nn.Module, sparsity: float, *, scope: str = "global", keep_embeddings: bool = False,
                keep_head: bool = False, previous: PruningMasks | None = None) -> PruningMasks:
    """Magnitude-prune `model` in place to `sparsity` of its prunable weights; returns the masks."""
    params = prunable_parameters(model, keep_embeddings=keep_embeddings, keep_head=keep_head)
    masks = magnitude_masks(params, sparsity, scope=scope, previous=previous).bind(model)
    masks.apply()
    return masks


def masks_from_zeros(model: nn.Module, *, keep_embeddings: bool = False, keep_head: bool = False) -> PruningMasks:
    """Masks of a pruned checkpoint: 1 where the weight is non-zero."""
    params = prunable_parameters(model, keep_embeddings=keep_embeddings, keep_head=keep_head)
    return PruningMasks({n: (p.detach() != 0).float() for n, p in params.items()}).bind(model)


def _group(name: str) -> str:
    """Module a parameter belongs to, at the granularity of the report (one line per layer)."""
    parts = name.split(".")
    if parts[0] == "lxmert":
        parts = parts[1:]
    if parts[0] == "encoder" and len(parts) > 2 and parts[1] in ("layer", "r_layers", "x_layers"):
        return ".".join(parts[1:3])
    if parts[:2] == ["encoder", "visn_fc"]:
        return "visn_fc"
    return parts[0]


def sparsity_report(model: nn.Module, *, keep_embeddings: bool = False, keep_head: bool = False
                    ) -> dict[str, Any]:
    """Zeros per module and per tensor, over the prunable weights and over all parameters."""
    model = _inner(model)
    prunable = prunable_parameters(model, keep_embeddings=keep_embeddings, keep_head=keep_head)
    groups: dict[str, list[int]] = {}
    tensors: dict[str, dict[str, float]] = {}
    total_zero = total = 0
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        zeros = int((p.detach() == 0).sum())
        total_zero += zeros
        total += p.numel()
        if name in prunable:
            tensors[name] = {"numel": p.numel(), "zeros": zeros, "sparsity": zeros / p.numel()}
            g = groups.setdefault(_group(name), [0, 0])
            g[0] += zeros
            g[1] += p.numel()
    pr_zero = sum(t["zeros"] for t in tensors.values())
    pr_total = sum(t["numel"] for t in tensors.values())
    return {
        "prunable_sparsity": pr_zero / pr_total,
        "prunable_params": pr_total,
        "model_sparsity": total_zero / total,
        "model_params": total,
        "modules": {g: {"numel": n, "zeros": z, "sparsity": z / n} for g, (z, n) in groups.items()},
        "tensors": tensors,
    }


def format_report(report: Mapping[str, Any]) -> str:
    """A table a person can read: one line per module, then the totals."""
    lines = [f"{'module':<28} {'params':>12} {'zeros':>12} {'sparsity':>9}"]
    for name, m in report["modules"].items():
        lines.append(f"{name:<28} {m['numel']:>12,} {m['zeros']:>12,} {100 * m['sparsity']:>8.2f}%")
    lines.append(f"{'prunable weights':<28} {report['prunable_params']:>12,} "
                 f"{'':>12} {100 * report['prunable_sparsity']:>8.2f}%")
    lines.append(f"{'all parameters':<28} {report['model_params']:>12,} "
                 f"{'':>12} {100 * report['model_sparsity']:>8.2f}%")
    return "\n".join(lines)


def rounds_to_sparsity(target: float, rate: float) -> list[float]:
    """Cumulative sparsities of an iterative schedule pruning `rate` of the remaining weights
    per round, the last one clipped to `target` (0.5 at rate 0.1 -> 7 rounds, 0.1 ... 0.5)."""
    if not 0 < rate < 1 or not 0 < target < 1:
        raise ValueError(f"need 0 < rate < 1 and 0 < target < 1 (got {rate}, {target})")
    out: list[float] = []
    remaining = 1.0
    while not out or out[-1] < target - 1e-9:
        remaining *= 1 - rate
        out.append(min(target, 1 - remaining))
    return out


@dataclass
class LotteryRound:
    round: int
    sparsity: float
    metrics: dict[str, float]


def lottery_ticket(
    model: nn.Module,
    rewind_state: Mapping[str, torch.Tensor],
    train: Callable[[nn.Module, PruningMasks | None], None],
    evaluate: Callable[[nn.Module], dict[str, float]],
    target: float,
    *,
    rate: float = 0.1,
    scope: str = "layer",
    keep_embeddings: bool = True,
    keep_head: bool = True,
    on_round: Callable[[LotteryRound], None] | None = None,
) -> tuple[PruningMasks, list[LotteryRound]]:
    """Iterative magnitude pruning with rewinding.

    `rewind_state`: the weights to rewind to (a `state_dict()` copy taken at init or after
    a few hundred steps). `train(model, masks)` fine-tunes in place (it must keep pruned
    weights at zero: call `masks.attach(optimizer)`); `evaluate(model)` returns metrics.
    Round 0 trains the dense model; each following round prunes to the next sparsity of
    :func:`rounds_to_sparsity` by magnitude of the TRAINED weights, rewinds the survivors
    and retrains. Returns the final masks and every round's metrics.
    """
    history: list[LotteryRound] = []
    train(model, None)
    history.append(LotteryRound(0, 0.0, dict(evaluate(model))))
    if on_round:
        on_round(history[-1])
    masks: PruningMasks | None = None
    for i, sparsity in enumerate(rounds_to_sparsity(target, rate), start=1):
        masks = prune_model(model, sparsity, scope=scope, keep_embeddings=keep_embeddings,
                            keep_head=keep_head, previous=masks)
        masks.detach()
        _inner(model).load_state_dict(dict(rewind_state), strict=True)
        masks.bind(model).apply()
        train(model, masks)
        masks.apply()
        history.append(LotteryRound(i, masks.sparsity, dict(evaluate(model))))
        if on_round:
            on_round(history[-1])
    assert masks is not None
    return masks, history


def prune_checkpoint(src: str | os.PathLike, out: str | os.PathLike, sparsity: float, *,
                     scope: str = "global", keep_embeddings: bool = False, keep_head: bool = False,
                     rewind: str | os.PathLike | None = None) -> dict[str, Any]:
    """`lxmert prune`: load any checkpoint, magnitude-prune it, save it to `out`.

    With `rewind` (a checkpoint of the same model from earlier in training, e.g. its
    initialisation or step 100), the masks chosen on `src`'s magnitudes are applied to
    `rewind`'s weights, which are saved instead: one lottery-ticket round. Retrain the
    output with `lxmert finetune ... --init OUT --keep-sparsity`, prune that at a higher
    sparsity with the same `rewind`, and so on (zeros rank lowest, so pruned weights stay
    pruned).

    The output directory is a normal checkpoint (weights with zeros, same config and
    answers) plus `pruning.json` (settings and the sparsity report), the source's vocabulary
    and training recipe. Not its `eval.json`: those scores are the unpruned model's.
    """
    src_path, out_path = Path(src), Path(out)
    if out_path.resolve() == (src_path if src_path.is_dir() else src_path.parent).resolve():
        raise ValueError(f"--out {out_path} is the source checkpoint's directory; choose another")
    model = LxmertPreTrainedModel.from_pretrained(src_path)
    before = sparsity_report(model, keep_embeddings=keep_embeddings, keep_head=keep_head)
    masks = prune_model(model, sparsity, scope=scope, keep_embeddings=keep_embeddings, keep_head=keep_head)
    if rewind is not None:
        early = LxmertPreTrainedModel.from_pretrained(rewind)
        if type(early) is not type(model):
            raise ValueError(f"--rewind {rewind} holds a {type(early).__name__}, {src} a {type(model).__name__}")
        masks.detach()
        model = early
        masks.bind(model).apply()
    report = sparsity_report(model, keep_embeddings=keep_embeddings, keep_head=keep_head)
    out_path.mkdir(parents=True, exist_ok=True)
    if src_path.is_dir():
        for name in CARRIED_FILES:  # the tokenizer and the run's settings travel with the weights
            if (src_path / name).is_file():
                shutil.copy2(src_path / name, out_path / name)
    model.save_pretrained(out_path)
    record = {"source": str(src_path), "class": type(model).__name__, "sparsity": sparsity, "scope": scope,
              "keep_embeddings": keep_embeddings, "keep_head": keep_head,
              "rewound_to": str(rewind) if rewind is not None else None,
              "sparsity_before": before["prunable_sparsity"], "report": report}
    atomic_write_text(out_path / "pruning.json", json.dumps(record, indent=2) + "\n")
    return record


class SparsityHook(TrainerHook):
    """Retraining a pruned checkpoint (`train.keep_sparsity`): the encoder's zero weights
    stay zero after every optimiser step. The heads are left free: a remapped answer head
    has all-zero rows for new answers that must train."""

    def on_setup(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        masks_from_zeros(model, keep_head=True).attach(optimizer)
