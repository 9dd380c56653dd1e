"""Adversarial fine-tuning in embedding space (VILLA, Gan et al. 2020; LXMERT-AdvTrain).

Perturbations live where VILLA puts them: on the WORD embeddings before the position and
token-type embeddings are added (`lxmert.embeddings.word_embeddings` output) and on the
RAW region features (the `visual_feats` entering `lxmert.encoder.visn_fc`). They are
injected with forward hooks on those two modules, so any task whose loss calls the model
once on the batch (QA, NLVR2, classification, anything the training loop runs) is trained
adversarially without changing its code, and the batch itself is never modified.

What one call of :func:`adversarial_step` computes and back-propagates (gradients of the
model parameters accumulate in `.grad`, nothing is stepped here):

    L = L_task(clean)
        + sum over modalities m in cfg.modalities (each attacked on its own, the other clean):
              (1/K) * sum_{k=1..K} [ adv_task_weight * L_task(x + delta_m^k)
                                     + adv_kl * SKL(stopgrad(p_clean) || p(x + delta_m^k)) ]

- `delta_m^1` starts at 0 (`adv_init=0`, VILLA's default) or uniform in
  [-adv_init, adv_init] scaled per example by 1/sqrt(numel) (the FreeLB init).
- After each backward, the perturbation takes an L2-normalised gradient ASCENT step per
  example: `delta <- delta + adv_lr * g / ||g||_2` (norm over everything but the batch dim),
  then is projected onto the L2 ball of radius `adv_max_norm` when that is > 0. Text
  perturbations are zeroed at padding positions (attention_mask == 0).
- SKL(p || q) = KL(p || q) + KL(q || p), summed over classes and averaged over the batch.
  The distribution is the softmax over the logits when the task loss is cross-entropy
  (long labels: GQA option, NLVR2, single-label classification) and a product of
  Bernoullis (sigmoid per logit) when the task uses BCE on float targets (VQA soft
  scores, multi-label classification); `kl_mode` overrides. The clean side is detached
  (the consistency term moves the perturbed prediction towards the clean one, as
  FreeLB/ALUM/VILLA implementations do; it also avoids keeping the clean graph alive
  for K backward passes).
- Each of the K adversarial terms is divided by K before its backward, so the
  accumulated gradient is the mean over the steps ("free" adversarial training: every
  ascent step also contributes a parameter gradient).

Cost: 1 + K x (number of modalities) forward/backward passes per batch (7 for K=3 and
both modalities).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lxmert.training.hooks import LossFn, TrainerHook
from lxmert.training.recipe import AdvSection

__all__ = [
    "AdvConfig",
    "AdversarialHook",
    "adv_config",
    "adversarial_step",
    "symmetric_kl",
    "output_logits",
    "find_perturbation_points",
    "parse_modalities",
    "MODALITIES",
]

MODALITIES = ("text", "image")



def parse_modalities(text: str | Sequence[str]) -> tuple[str, ...]:
    """`"text,image"` -> ("text", "image"); errors name the bad entry."""
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    bad = [t for t in items if t not in MODALITIES]
    if bad or not items:
        raise ValueError(f"--adv {text!r}: expected a comma-separated subset of {', '.join(MODALITIES)}")
    return tuple(dict.fromkeys(items))


@dataclass
class AdvConfig:
    """The `--adv*` flags. Defaults are VILLA's (K=3, step 1e-3, KL weight 1.5, init 0)."""

    modalities: tuple[str, ...] = ("text", "image")
    steps: int = 3
    lr: float = 1e-3
    kl_weight: float = 1.5
    init_mag: float = 0.0
    max_norm: float = 0.0
    adv_task_weight: float = 1.0
    kl_mode: str = "auto"  # auto | softmax | bernoulli

    def __post_init__(self) -> None:
        self.modalities = parse_modalities(self.modalities)
        problems = []
        if self.steps < 1:
            problems.append(f"adv steps {self.steps} (must be >= 1)")
        if self.lr <= 0:
            problems.append(f"adv lr {self.lr} (must be > 0)")
        if self.kl_weight < 0 or self.init_mag < 0 or self.max_norm < 0 or self.adv_task_weight < 0:
            problems.append("adv kl / init / max-norm / task weight must be >= 0")
        if self.kl_mode not in ("auto", "softmax", "bernoulli"):
            problems.append(f"adv kl_mode {self.kl_mode!r} (auto, softmax or bernoulli)")
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return {"modalities": list(self.modalities), "steps": self.steps, "lr": self.lr,
                "kl_weight": self.kl_weight, "init_mag": self.init_mag, "max_norm": self.max_norm,
                "adv_task_weight": self.adv_task_weight, "kl_mode": self.kl_mode}


def adv_config(section: AdvSection) -> AdvConfig | None:
    """The step's settings from a recipe's `[adv]` section, or None when it is off;
    ValueError naming the bad `adv.*` value."""
    if not section.modalities:
        return None
    try:
        return AdvConfig(modalities=tuple(section.modalities), steps=section.steps, lr=section.lr,
                         kl_weight=section.kl, init_mag=section.init, max_norm=section.max_norm,
                         adv_task_weight=section.task_weight, kl_mode=section.kl_mode)
    except ValueError as err:
        raise ValueError(f"[adv] section: {err}") from None


def output_logits(output: Any) -> torch.Tensor:
    """The task logits of a model output (QA `question_answering_score`, else `logits`)."""
    for name in ("question_answering_score", "logits"):
        value = getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(output, torch.Tensor):
        return output
    raise TypeError(f"cannot find task logits in a {type(output).__name__} "
                    f"(expected question_answering_score or logits)")


def symmetric_kl(clean_logits: torch.Tensor, adv_logits: torch.Tensor, mode: str) -> torch.Tensor:
    """KL(p||q) + KL(q||p) with p from `clean_logits` (detached), q from `adv_logits`.

    `mode="softmax"`: one categorical per row; `"bernoulli"`: an independent Bernoulli per
    logit. Summed over classes, averaged over rows.
    """
    p_logits = clean_logits.detach().float()
    q_logits = adv_logits.float()
    if mode == "softmax":
        lp, lq = F.log_softmax(p_logits, -1), F.log_softmax(q_logits, -1)
        kl = (lp.exp() * (lp - lq)).sum(-1) + (lq.exp() * (lq - lp)).sum(-1)
    elif mode == "bernoulli":
        # For Bernoulli(p), Bernoulli(q): KL(p||q) + KL(q||p) = (p - q) * (logit_p - logit_q).
        p, q = torch.sigmoid(p_logits), torch.sigmoid(q_logits)
        kl = ((p - q) * (p_logits - q_logits)).sum(-1)
    else:
        raise ValueError(f"unknown KL mode {mode!r}")
    return kl.reshape(-1).mean() if kl.dim() else kl


def find_perturbation_points(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(word embedding module, visual feature encoder) of any LXMERT task model."""
    inner = getattr(model, "module", model)  # DDP
    word = visual = None
    for name, module in inner.named_modules():
        if name.endswith("embeddings.word_embeddings") and isinstance(module, nn.Embedding):
            word = module
        if name.endswith("encoder.visn_fc") and hasattr(module, "box_fc"):
            visual = module
    if word is None or visual is None:
        raise TypeError(f"{type(inner).__name__}: no LXMERT word embeddings / visual feature encoder found")
    return word, visual


class _Perturber:
    """Forward hooks that add `delta` to word embeddings / raw region features."""

    def __init__(self, model: nn.Module, attention_mask: torch.Tensor | None) -> None:
        self.word, self.visual = find_perturbation_points(model)
        self.attention_mask = attention_mask
        self.delta: dict[str, torch.Tensor | None] = {"text": None, "image": None}
        self.shapes: dict[str, torch.Size] = {}
        self.dtypes: dict[str, torch.dtype] = {}
        self.devices: dict[str, torch.device] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> "_Perturber":
        self._handles.append(self.word.register_forward_hook(self._text_hook))
        self._handles.append(self.visual.register_forward_pre_hook(self._image_hook))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _record(self, name: str, x: torch.Tensor) -> None:
        self.shapes[name], self.dtypes[name], self.devices[name] = x.shape, x.dtype, x.device

    def _text_hook(self, module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        self._record("text", output)
        delta = self.delta["text"]
        if delta is None:
            return output
        if delta.shape != output.shape:
            raise RuntimeError(f"text perturbation {tuple(delta.shape)} does not fit the word "
                               f"embeddings {tuple(output.shape)}")
        return output + delta.to(output.dtype) * self._text_keep(output)

    def _text_keep(self, output: torch.Tensor) -> torch.Tensor | float:
        mask = self.attention_mask
        if mask is None:
            return 1.0
        if mask.shape != output.shape[:2]:
            if mask.dim() == 2 and output.shape[0] % mask.shape[0] == 0:  # NLVR2: text repeated per image
                mask = mask.repeat_interleave(output.shape[0] // mask.shape[0], dim=0)
            else:
                return 1.0
        return mask.to(output.dtype).unsqueeze(-1)

    def _image_hook(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        feats = args[0]
        self._record("image", feats)
        delta = self.delta["image"]
        if delta is None:
            return None
        if delta.shape != feats.shape:
            raise RuntimeError(f"image perturbation {tuple(delta.shape)} does not fit the region "
                               f"features {tuple(feats.shape)}")
        return (feats + delta.to(feats.dtype), *args[1:])

    def init_delta(self, name: str, init_mag: float) -> torch.Tensor:
        shape = self.shapes[name]
        delta = torch.zeros(shape, dtype=torch.float32, device=self.devices[name])
        if init_mag > 0:
            per_example = math.prod(shape[1:])
            delta.uniform_(-init_mag, init_mag).div_(math.sqrt(per_example))
            if name == "text":
                delta = delta * self._text_keep(delta)
        return delta.requires_grad_(True)


def _l2_per_example(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))


def _ascend(delta: torch.Tensor, grad: torch.Tensor, cfg: AdvConfig) -> torch.Tensor:
    """One L2-normalised ascent step, projected to the `max_norm` ball (per example)."""
    with torch.no_grad():
        new = delta + cfg.lr * grad / _l2_per_example(grad)
        if cfg.max_norm > 0:
            norm = _l2_per_example(new)
            new = new * torch.clamp(cfg.max_norm / norm, max=1.0)
    return new.detach().requires_grad_(True)


def _split_loss(result: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    if isinstance(result, tuple):
        loss, parts = result
        return loss, dict(parts or {})
    return result, {}


def _uses_bce(batch: dict[str, Any], logits: torch.Tensor) -> bool:
    labels = batch.get("labels")
    return isinstance(labels, torch.Tensor) and labels.dtype.is_floating_point and labels.shape == logits.shape


def default_loss(model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Call the model on the batch's tensor entries and take its `loss`."""
    inputs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
    out = model(**inputs)
    if getattr(out, "loss", None) is None:
        raise ValueError("the model returned no loss: does the batch carry `labels`?")
    return out.loss, {}


def adversarial_step(
    model: nn.Module,
    batch: dict[str, Any],
    task_loss_fn: LossFn | None,
    cfg: AdvConfig,
    *,
    loss_scale: float = 1.0,
    backward: Callable[[torch.Tensor], None] | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> dict[str, torch.Tensor]:
    """Clean + adversarial losses of one (micro-)batch, back-propagated here (see module doc).

    `task_loss_fn(model, batch)` returns the task loss (or `(loss, parts)`) and must call
    `model` exactly once; None = `model(**batch).loss`. `loss_scale` multiplies every
    backward (1/grad_accum in the training loop); `backward` replaces `t.backward()` (an AMP
    GradScaler: `lambda t: scaler.scale(t).backward()`); `autocast` is a context factory
    wrapped around each forward. Under DDP, gradient synchronisation happens on the last
    backward only.

    Returns detached scalars: `loss` (the whole objective L above, unscaled), `clean_loss`,
    and per modality `adv_loss_<m>` / `adv_kl_<m>` (means over the K steps) and
    `adv_delta_norm_<m>` (mean per-example L2 norm of the last perturbation), plus the
    task's own `parts` of the clean pass.
    """
    loss_fn = task_loss_fn or default_loss
    run_backward = backward or (lambda t: t.backward())
    amp = autocast or contextlib.nullcontext
    inner = getattr(model, "module", model)
    captured: list[Any] = []
    hook = inner.register_forward_hook(lambda _m, _a, out: captured.append(out))
    n_backward = 1 + cfg.steps * len(cfg.modalities)
    done = 0

    def sync_ctx() -> contextlib.AbstractContextManager:
        # DDP: all-reduce only on the last of the backward passes of this step.
        if hasattr(model, "no_sync") and done < n_backward - 1:
            return model.no_sync()  # type: ignore[operator]
        return contextlib.nullcontext()

    def forward(perturber: _Perturber) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        captured.clear()
        with amp():
            loss, parts = _split_loss(loss_fn(model, batch))
        if len(captured) != 1:
            raise RuntimeError(f"task_loss_fn called the model {len(captured)} times; adversarial "
                               f"training needs exactly one forward per loss")
        return loss, parts, output_logits(captured[0])

    stats: dict[str, torch.Tensor] = {}
    mask = batch.get("attention_mask") if isinstance(batch.get("attention_mask"), torch.Tensor) else None
    try:
        with _Perturber(model, mask) as perturber:
            with sync_ctx():
                clean_loss, parts, clean_logits = forward(perturber)
                run_backward(clean_loss * loss_scale)
            done += 1
            mode = cfg.kl_mode
            if mode == "auto":
                mode = "bernoulli" if _uses_bce(batch, clean_logits) else "softmax"
            total = clean_loss.detach().float()
            stats["clean_loss"] = clean_loss.detach().float()
            for name in cfg.modalities:
                delta = perturber.init_delta(name, cfg.init_mag)
                adv_sum = torch.zeros((), device=total.device)
                kl_sum = torch.zeros((), device=total.device)
                for _ in range(cfg.steps):
                    perturber.delta[name] = delta
                    with sync_ctx():
                        adv_loss, _, adv_logits = forward(perturber)
                        kl = symmetric_kl(clean_logits, adv_logits, mode)
                        objective = (cfg.adv_task_weight * adv_loss + cfg.kl_weight * kl) / cfg.steps
                        run_backward(objective * loss_scale)
                    done += 1
                    adv_sum += adv_loss.detach().float() / cfg.steps
                    kl_sum += kl.detach().float() / cfg.steps
                    grad = delta.grad
                    if grad is None:  # the perturbed input did not reach the loss
                        raise RuntimeError(f"no gradient reached the {name} perturbation")
                    delta = _ascend(delta, grad, cfg)
                perturber.delta[name] = None
                total = total + cfg.adv_task_weight * adv_sum + cfg.kl_weight * kl_sum
                stats[f"adv_loss_{name}"] = adv_sum
                stats[f"adv_kl_{name}"] = kl_sum
                stats[f"adv_delta_norm_{name}"] = _l2_per_example(delta.detach()).mean()
    finally:
        hook.remove()
    out = {"loss": total}
    out.update(stats)
    out.update({k: v.detach().float() for k, v in parts.items()})
    return out


class AdversarialHook(TrainerHook):
    """Runs every training micro-step as `adversarial_step` (see the module docstring)."""

    def __init__(self, cfg: AdvConfig) -> None:
        self.cfg = cfg

    def micro_step(self, model: nn.Module, inputs: dict[str, Any], loss_fn: LossFn, *, loss_scale: float,
                   backward: Callable[[torch.Tensor], None],
                   autocast: Callable[[], contextlib.AbstractContextManager]) -> dict[str, torch.Tensor]:
        return adversarial_step(model, inputs, loss_fn, self.cfg, loss_scale=loss_scale, autocast=autocast,
                                backward=backward)
