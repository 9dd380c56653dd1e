"""`LxmertConfig`: every hyper-parameter of the network, with Hugging Face's field names.

Field names follow `transformers.LxmertConfig` so that a Hugging Face `config.json` is read
as it is, and the directory we write is readable by `transformers` too. The defaults are
the released "lxr955" model (9 language, 5 object-relationship, 5 cross-modality layers).
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

__all__ = ["LxmertConfig", "CONFIG_NAME", "HIDDEN_ACTS", "config_problems"]

CONFIG_NAME = "config.json"
HIDDEN_ACTS = ("gelu", "gelu_new", "relu", "gelu_python")

# What each field may hold. A wrong type or range is refused by name when the config is
# built (and, through `config_problems`, when a recipe is read): `hidden_size=0` or
# `"abc"` would otherwise fail deep inside torch, and `l_layers=-1` would build a model
# with no language layers without a word.
_AT_LEAST_ONE = ("vocab_size", "hidden_size", "num_attention_heads", "intermediate_size",
                 "max_position_embeddings", "type_vocab_size", "visual_feat_dim", "visual_pos_dim",
                 "num_object_labels", "num_attr_labels")
# zero layers of an encoder is a model the code runs (an ablation); zero QA rows a model
# without that head
_AT_LEAST_ZERO = ("l_layers", "x_layers", "r_layers", "num_qa_labels", "pad_token_id")
_PROBABILITIES = ("hidden_dropout_prob", "attention_probs_dropout_prob")
_POSITIVE_NUMBERS = ("layer_norm_eps", "visual_loss_normalizer")
_NON_NEGATIVE_NUMBERS = ("initializer_range",)
_SWITCHES = ("task_matched", "task_mask_lm", "task_obj_predict", "task_qa", "visual_obj_loss",
             "visual_attr_loss", "visual_feat_loss")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def config_problems(values: Mapping[str, Any], prefix: str = "") -> list[str]:
    """What is wrong with these `LxmertConfig` field values, one line per field naming it
    (`prefix` + name, e.g. "model.hidden_size"); empty when nothing is. Fields absent from
    `values` are not checked, so a recipe's partial `[model]` section can be checked alone."""
    out: list[str] = []

    def bad(name: str, expected: str) -> None:
        out.append(f"{prefix}{name} = {values[name]!r} (expected {expected})")

    for name in _AT_LEAST_ONE:
        if name in values and not (_is_int(values[name]) and values[name] >= 1):
            bad(name, "an integer >= 1")
    for name in _AT_LEAST_ZERO:
        if name in values and not (_is_int(values[name]) and values[name] >= 0):
            bad(name, "an integer >= 0")
    for name in _PROBABILITIES:
        if name in values and not (_is_number(values[name]) and 0.0 <= values[name] <= 1.0):
            bad(name, "a probability in [0, 1]")
    for name in _POSITIVE_NUMBERS:
        if name in values and not (_is_number(values[name]) and values[name] > 0):
            bad(name, "a finite number > 0")
    for name in _NON_NEGATIVE_NUMBERS:
        if name in values and not (_is_number(values[name]) and values[name] >= 0):
            bad(name, "a finite number >= 0")
    for name in _SWITCHES:
        if name in values and not isinstance(values[name], bool):
            bad(name, "true or false")
    if "hidden_act" in values and values["hidden_act"] not in HIDDEN_ACTS:
        bad("hidden_act", f"one of {', '.join(HIDDEN_ACTS)}")
    if "extra" in values and not isinstance(values["extra"], dict):
        bad("extra", "a table")
    size, heads = values.get("hidden_size"), values.get("num_attention_heads")
    if _is_int(size) and _is_int(heads) and size >= 1 and heads >= 1 and size % heads:
        out.append(f"{prefix}hidden_size {size} is not a multiple of {prefix}num_attention_heads {heads}")
    pad, vocab = values.get("pad_token_id"), values.get("vocab_size")
    if _is_int(pad) and _is_int(vocab) and 0 <= pad and 1 <= vocab <= pad:
        out.append(f"{prefix}pad_token_id {pad} is not below {prefix}vocab_size {vocab}")
    return out

# Keys a Hugging Face config carries that describe the HF runtime, not the network.
_HF_RUNTIME_KEYS = {
    "architectures", "model_type", "transformers_version", "torch_dtype", "dtype",
    "_name_or_path", "return_dict", "output_attentions", "output_hidden_states",
    "id2label", "label2id", "pad_token_id", "bos_token_id", "eos_token_id",
    "tie_word_embeddings", "chunk_size_feed_forward", "is_encoder_decoder",
    "problem_type", "use_return_dict", "num_labels", "tokenizer_class",
}


@dataclass
class LxmertConfig:
    """Sizes, layer counts, label counts, pre-training task switches and dropouts.

    `visual_loss_normalizer` is the 1/0.15 factor of the release (Hugging Face ships 6.67,
    which is read as is from its config files).
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    l_layers: int = 9
    x_layers: int = 5
    r_layers: int = 5
    visual_feat_dim: int = 2048
    visual_pos_dim: int = 4
    num_qa_labels: int = 9500
    num_object_labels: int = 1600
    num_attr_labels: int = 400
    visual_loss_normalizer: float = 1 / 0.15
    task_matched: bool = True
    task_mask_lm: bool = True
    task_obj_predict: bool = True
    task_qa: bool = True
    visual_obj_loss: bool = True
    visual_attr_loss: bool = True
    visual_feat_loss: bool = True
    # Fields of our own (ignored by transformers when it reads our config.json).
    pad_token_id: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = config_problems(vars(self))
        if problems:
            raise ValueError("LxmertConfig: " + "; ".join(problems))

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> "LxmertConfig":
        """Build from a dict (ours or Hugging Face's); unknown keys go to `extra`.

        Unknown keys are kept rather than dropped so that a round trip never loses what
        a user put in a config file; HF runtime keys are dropped on purpose.
        """
        data = {**data, **overrides}
        if data.get("pad_token_id", 0) is None:
            del data["pad_token_id"]  # Hugging Face writes null for "unset"; BERT's [PAD] is 0
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names and k != "extra"}
        extra = dict(data.get("extra") or {})
        for key, value in data.items():
            if key not in names and key not in _HF_RUNTIME_KEYS:
                extra[key] = value
        return cls(**known, extra=extra)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike, **overrides: Any) -> "LxmertConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object")
        return cls.from_dict(data, **overrides)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **overrides: Any) -> "LxmertConfig":
        path = Path(path)
        return cls.from_json_file(path / CONFIG_NAME if path.is_dir() else path, **overrides)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_hf_dict(self) -> dict[str, Any]:
        """The dict a `transformers.LxmertConfig` expects (no `extra`, HF markers added)."""
        data = self.to_dict()
        data.pop("extra")
        data["model_type"] = "lxmert"
        return data

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        from lxmert.atomic import atomic_write_text

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / CONFIG_NAME
        atomic_write_text(target, self.to_json_string())
        return target

    save = save_pretrained
