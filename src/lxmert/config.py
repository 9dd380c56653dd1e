"""`LxmertConfig`: every hyper-parameter of the network, with Hugging Face's field names.

Field names follow `transformers.LxmertConfig` so that a Hugging Face `config.json` is read
as it is, and the directory we write is readable by `transformers` too. The defaults are
the released "lxr955" model (9 language, 5 object-relationship, 5 cross-modality layers).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_NAME = "config.json"

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
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.hidden_act not in ("gelu", "gelu_new", "relu", "gelu_python"):
            raise ValueError(f"unsupported hidden_act {self.hidden_act!r}")

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
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
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
