"""Importing the converted-Caffe detector weights used by the Hugging Face LXMERT demo.

The file is ``pytorch_model.bin`` of the Hub repository ``unc-nlp/frcnn-vg-finetuned``: a
plain state dict whose key names follow detectron2 (``backbone.stem.conv1.weight``,
``backbone.res4.22.conv3.norm.running_var``, ``proposal_generator.rpn_head.conv.weight``,
``roi_heads.res5.0.shortcut.weight``, ``roi_heads.box_predictor.cls_score.weight`` ...).
Our module tree uses the same names, so the key map below only covers what differs:

=======================================================  =======================================
checkpoint key                                           ours
=======================================================  =======================================
``*.num_batches_tracked`` (BatchNorm2d bookkeeping)      dropped (our batch norm is frozen)
``proposal_generator.anchor_generator.cell_anchors.0``   ``...anchor_generator.cell_anchors``
``roi_heads.box_predictor.attr_linear1.*`` (alias)       ``roi_heads.box_predictor.fc_attr.*``
``roi_heads.box_predictor.attr_linear2.*`` (alias)       ``roi_heads.box_predictor.attr_score.*``
``roi_heads.box_predictor.cls_embed.weight`` (alias)     ``...box_predictor.cls_embedding.weight``
leading ``module.`` (saved under DataParallel)            stripped
=======================================================  =======================================

The demo names the attribute layers ``cls_embedding``, ``fc_attr`` and ``attr_score``;
the aliases accept re-exports that used the maskrcnn-benchmark names.
"""

from __future__ import annotations

import os
import re
from typing import Mapping

import torch
from torch import nn

from lxmert.detector.model import FasterRCNN

__all__ = [
    "KEY_MAP",
    "OPTIONAL_KEYS",
    "convert_frcnn_state_dict",
    "export_frcnn_state_dict",
    "load_frcnn_checkpoint",
    "load_state_dict_strict",
    "load_vocab",
    "random_init_",
]

#: (regex on the checkpoint key, replacement) applied in order; ``None`` drops the key.
KEY_MAP: list[tuple[str, str | None]] = [
    (r"^module\.", ""),
    (r"\.num_batches_tracked$", None),
    (r"^(proposal_generator\.anchor_generator\.cell_anchors)\.0$", r"\1"),
    (r"^(roi_heads\.box_predictor)\.attr_linear1\.", r"\1.fc_attr."),
    (r"^(roi_heads\.box_predictor)\.attr_linear2\.", r"\1.attr_score."),
    (r"^(roi_heads\.box_predictor)\.cls_embed\.", r"\1.cls_embedding."),
]

#: Our keys a checkpoint may lack: the anchors are then generated from the config.
OPTIONAL_KEYS = frozenset({"proposal_generator.anchor_generator.cell_anchors"})

_COMPILED = [(re.compile(p), r) for p, r in KEY_MAP]


def convert_frcnn_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename checkpoint keys to ours (see the module docstring); values are untouched."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new: str | None = key
        for pattern, repl in _COMPILED:
            if new is None:
                break
            if pattern.search(new):
                new = None if repl is None else pattern.sub(repl, new)
        if new is None:
            continue
        if new in out:
            raise ValueError(f"checkpoint keys collide after renaming: {key!r} -> {new!r}")
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"checkpoint entry {key!r} is a {type(value).__name__}, not a tensor")
        out[new] = value
    return out


def export_frcnn_state_dict(model: FasterRCNN) -> dict[str, torch.Tensor]:
    """Our weights under the checkpoint's names (the inverse of :func:`convert_frcnn_state_dict`).

    Used to check the key map both ways and to hand weights back to detectron2-style code.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key == "proposal_generator.anchor_generator.cell_anchors":
            out[key + ".0"] = value.clone()
            continue
        out[key] = value.clone()
        if key.endswith(".norm.running_var"):
            out[key[: -len("running_var")] + "num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return out


def load_frcnn_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read ``pytorch_model.bin`` (or a ``.safetensors`` copy) and rename its keys to ours.

    Uses ``torch.load(weights_only=True)``: the file can only contain tensors and plain
    containers, never code. A ``{"model": state_dict}`` wrapper is unwrapped.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path}: detector weights not found - download pytorch_model.bin from the Hugging Face "
            "repository unc-nlp/frcnn-vg-finetuned (see docs/extraction.md)"
        )
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickle errors come in many types
            raise ValueError(f"{path}: cannot read as a torch state dict ({type(err).__name__}: {err})") from None
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict (mapping of name -> tensor), got {type(state).__name__}")
    return convert_frcnn_state_dict(state)


def _fmt(items: list[str], limit: int = 20) -> str:
    more = f"\n  ... and {len(items) - limit} more" if len(items) > limit else ""
    return "\n  " + "\n  ".join(items[:limit]) + more


def load_state_dict_strict(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str = "<state dict>") -> None:
    """Load ``state`` into ``model``; any missing, unexpected or mis-shaped key is an error.

    The error lists every offending key with its shape(s), so a checkpoint of another
    architecture (an FPN detector, a 1600-vs-1601 class head) is recognisable at a glance.
    """
    own = model.state_dict()
    missing = [f"{k} {tuple(v.shape)}" for k, v in own.items() if k not in state and k not in OPTIONAL_KEYS]
    unexpected = [f"{k} {tuple(v.shape)}" for k, v in state.items() if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items() if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}):" + _fmt(missing))
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}):" + _fmt(unexpected))
    if mismatched:
        problems.append(f"shape mismatches ({len(mismatched)}):" + _fmt(mismatched))
    if problems:
        raise ValueError(f"{source}: does not fit the detector:\n" + "\n".join(problems))
    with torch.no_grad():
        for k, v in own.items():
            if k in state:
                v.copy_(state[k].to(v.dtype))


def random_init_(model: FasterRCNN, *, seed: int = 0) -> FasterRCNN:
    """Deterministic random weights that keep activations finite through 100+ layers.

    Convolutions get He-normal weights; the last batch norm of each residual branch is
    scaled down so the residual sums do not blow up with depth. The result is for testing
    the pipeline only: its features mean nothing.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, nn.Conv2d):
                fan_in = mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1] // mod.groups
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if mod.bias is not None:
                    mod.bias.zero_()
            elif isinstance(mod, nn.Linear):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * (1.0 / mod.in_features) ** 0.5)
                mod.bias.zero_()
            elif isinstance(mod, nn.Embedding):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * 0.1)
            if name.endswith("conv3.norm"):
                mod.weight.fill_(0.2)  # type: ignore[union-attr]
        # proposals must differ in objectness and shape even with random weights
        head = model.proposal_generator.rpn_head
        head.objectness_logits.weight.mul_(0.1)
        head.anchor_deltas.weight.mul_(0.01)
        # moderate class / attribute probabilities, so thresholds and fill-in both occur
        pred = model.roi_heads.box_predictor
        for lin in (pred.cls_score, pred.attr_score):
            lin.weight.mul_(0.002)
    return model


def load_vocab(path: str | os.PathLike[str], expected: int | None = None) -> list[str]:
    """Read an object or attribute vocabulary: one name per line, in class-index order.

    Visual Genome's ``objects_vocab.txt`` (1600 lines) and ``attributes_vocab.txt`` (400)
    list synonyms separated by commas; the first one is used as the display name. Blank
    lines are errors (they would shift every later class).
    """
    names = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            name = line.rstrip("\r\n").strip()
            if not name:
                raise ValueError(f"{path}, line {lineno}: blank line in a vocabulary")
            names.append(name.split(",")[0].strip())
    if expected is not None and len(names) != expected:
        raise ValueError(f"{path}: {len(names)} names, expected {expected}")
    return names
