"""Shared base of every model: weight init and the `from_pretrained` / `save_pretrained` API.

Loading (`from_pretrained`) reads the stored checkpoint through `lxmert.checkpoint` (which
knows the file layouts and no model class), picks the class the checkpoint records (when
called on `LxmertPreTrainedModel` itself), lets the class adapt the stored state to itself
(`from_checkpoint`: e.g. remap an answer head to another answer list), and loads it with
explicit rules about what may differ:

- the encoder must match exactly, always: missing, surplus or reshaped encoder weights mean
  another architecture (a config with fewer layers than the weights, a wrong head count);
- with `strict=True` (the default) the heads must match exactly too: loading an NLVR2
  model from a VQA checkpoint is an error, not a random head scored silently;
- `strict=False` is for starting a task from another task's checkpoint: heads the
  checkpoint lacks start from a fresh init, heads the model lacks are dropped; both are
  logged as warnings naming them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Mapping, TypeVar

import torch
from torch import nn

from lxmert.checkpoint.files import CONFIG_NAME, StoredCheckpoint, read_checkpoint, write_checkpoint
from lxmert.checkpoint.layouts import HEAD_PREFIXES, TIED_KEY, canonicalize, infer_class_name, infer_config
from lxmert.config import LxmertConfig
from lxmert.errors import CheckpointError
from lxmert.modeling import int8
from lxmert.modeling.registry import model_class

logger = logging.getLogger(__name__)

M = TypeVar("M", bound="LxmertPreTrainedModel")
_CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(LxmertConfig))


class LxmertPreTrainedModel(nn.Module):
    """Base class: BERT initialisation and checkpoint I/O (see the module docstring)."""

    config: LxmertConfig
    #: canonical key prefix of the encoder inside this model ("" for the bare encoder)
    encoder_prefix = "lxmert."

    def __init__(self, config: LxmertConfig) -> None:
        super().__init__()
        self.config = config

    def init_weights(self) -> None:
        self.apply(self.init_module)
        self.tie_weights()

    def init_module(self, module: nn.Module) -> None:
        """BERT's initialisation: normal(0, initializer_range) weights, zero biases."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def tie_weights(self) -> None:
        """Models with an MLM decoder tie it to the word embeddings (as BERT and the release)."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self, trainable_only: bool = False) -> int:
        seen: set[int] = set()
        total = 0
        for p in self.parameters():
            if id(p) in seen or (trainable_only and not p.requires_grad):
                continue
            seen.add(id(p))
            total += p.numel()
        return total

    # ------------------------------------------------------------------ checkpoint state
    def canonical_state(self) -> dict[str, torch.Tensor]:
        """The weights in canonical keys (what our directories store), tied decoder dropped."""
        prefix = "lxmert." if self.encoder_prefix == "" else ""
        state = {prefix + k: v.detach() for k, v in self.state_dict().items()}
        state.pop(TIED_KEY, None)
        return state

    @classmethod
    def from_checkpoint(cls: type[M], config: LxmertConfig, state: dict[str, torch.Tensor],
                        stored: StoredCheckpoint, **options: Any) -> tuple[M, dict[str, torch.Tensor]]:
        """Build the model a checkpoint's canonical `state` will be loaded into, adapting the
        state if needed (classes with head options override this, e.g. to remap answer
        rows; `stored` gives the checkpoint's answers.json and path). `options` are the
        keyword arguments of `from_pretrained` that are not config fields."""
        if options:
            raise TypeError(f"{cls.__name__}.from_pretrained() got unexpected options {sorted(options)}")
        return cls(config), state

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls: type[M], path: str | os.PathLike, *, strict: bool = True,
                        map_location: str | torch.device = "cpu", **kwargs: Any) -> M:
        """Load from our directory, a Hugging Face directory, an int8 directory, or an
        authors' `.pth` file; `path` may be a training run (its `last` checkpoint).

        `kwargs` holds `LxmertConfig` field overrides (e.g. `hidden_dropout_prob=0.0`, or
        `num_attention_heads` for a `.pth` without config) and the class's own options
        (`answers=` for QA models, `labels=` for classification). Called on
        `LxmertPreTrainedModel` itself, it returns the class the checkpoint records.
        """
        stored = read_checkpoint(path, map_location)
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in _CONFIG_FIELDS}
        saved_name = stored.class_name
        canonical = stored.state if stored.int8 else canonicalize(stored.state)
        if saved_name is None:
            saved_name = infer_class_name(canonical)
        target = model_class(saved_name) if cls is LxmertPreTrainedModel else cls
        config = _stored_config(stored, canonical, overrides)
        if stored.int8:
            activation_range = kwargs.pop("activation_range", "auto")
            if target.__name__ != saved_name:
                raise CheckpointError(f"{stored.path}: holds an int8 {saved_name}, not a {target.__name__}; "
                                      f"int8 models load only as the class they were quantised as")
            if overrides:
                raise CheckpointError(f"{stored.path}: an int8 checkpoint loads as saved; config overrides "
                                      f"{sorted(overrides)} cannot be applied to it")
            model, _ = target.from_checkpoint(config, {}, stored, **kwargs)
            int8.load_int8_state(model, stored.state, str(stored.weights), activation_range)
            return model.eval()
        if strict and target.encoder_prefix and target.__name__ != saved_name:
            raise CheckpointError(
                f"{stored.path}: holds a {saved_name}, not a {target.__name__} (its heads: "
                f"{', '.join(_heads(canonical)) or 'none'}); load it as {saved_name}, or pass strict=False "
                f"to start a {target.__name__} from its encoder (fine-tuning)")
        if not target.encoder_prefix:  # the bare encoder: keep the encoder, leave the heads
            canonical = {k[len("lxmert."):]: v for k, v in canonical.items() if k.startswith("lxmert.")}
        model, canonical = target.from_checkpoint(config, canonical, stored, **kwargs)
        load_state(model, canonical, str(stored.path), strict=strict)
        return model.eval()

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write `config.json` + `model.safetensors` (or `model.int8.safetensors` for int8
        models) + `answers.json` when the model names its answer rows."""
        quantized = int8.is_quantized(self)
        state = int8.int8_state(self) if quantized else self.canonical_state()
        answers = getattr(self, "answers", None)
        return write_checkpoint(directory, state, self.config.to_json_string(), type(self).__name__,
                                answers=list(answers) if answers else None, int8=quantized,
                                metadata={"quantization": int8.METHOD} if quantized else None)


def _heads(state: Mapping[str, Any]) -> list[str]:
    """The heads named by `state`'s keys; `cls` by its two parts (`cls.predictions`, the MLM
    head, and `cls.seq_relationship`, the matching head), which models use separately."""
    return sorted({".".join(k.split(".")[:2]) if k.startswith("cls.") else k.split(".")[0]
                   for k in state if k.startswith(HEAD_PREFIXES)})


def _stored_config(stored: StoredCheckpoint, canonical: Mapping[str, torch.Tensor],
                   overrides: dict[str, Any]) -> LxmertConfig:
    """The checkpoint's config.json (ours or Hugging Face's), else one read off the shapes
    of an authors' `.pth` file. Our and HF directories always carry config.json; one
    without it is refused, since layer sizes alone cannot give e.g. the head count."""
    if stored.config is not None:
        try:
            return LxmertConfig.from_dict(stored.config, **overrides)
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{stored.directory / CONFIG_NAME}: {err}") from None
    if stored.weights.suffix == ".pth":
        return infer_config(canonical, str(stored.weights), **overrides)
    raise CheckpointError(f"{stored.directory}: no {CONFIG_NAME} beside {stored.weights.name}; a checkpoint "
                          f"directory needs its config (sizes, head count) to be loaded")


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str, *, strict: bool) -> None:
    """Load canonical `state` into `model` under the rules of the module docstring."""
    own = model.state_dict()
    own.pop(TIED_KEY, None)
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in state if k in own and state[k].shape != own[k].shape]
    if mismatched:
        raise CheckpointError(f"{source}: shape mismatch for {len(mismatched)} keys (another architecture?):\n  "
                              + "\n  ".join(mismatched[:10]))
    missing = [k for k in own if k not in state]
    unused = [k for k in state if k not in own]
    encoder_missing = [k for k in missing if not k.startswith(HEAD_PREFIXES)]
    encoder_unused = [k for k in unused if not k.startswith(HEAD_PREFIXES)]
    if encoder_missing or encoder_unused:
        raise CheckpointError(
            f"{source}: the encoder does not match the model's config: "
            + (f"{len(encoder_missing)} weights missing (e.g. {encoder_missing[:3]}) " if encoder_missing else "")
            + (f"{len(encoder_unused)} weights the config has no place for (e.g. {encoder_unused[:3]})"
               if encoder_unused else "")
            + "; check config.json (layer counts, sizes) against the weights")
    if missing or unused:
        parts = []
        if missing:
            parts.append(f"heads not in the checkpoint: {', '.join(_heads(missing))}")
        if unused:
            parts.append(f"checkpoint heads this {type(model).__name__} has no use for: {', '.join(_heads(unused))}")
        if strict:
            raise CheckpointError(f"{source}: {'; '.join(parts)}; pass strict=False to start missing heads "
                                  f"fresh and drop unused ones")
        logger.warning("%s: %s (fresh heads start from a random init)", source, "; ".join(parts))
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    if isinstance(model, LxmertPreTrainedModel):
        model.tie_weights()
