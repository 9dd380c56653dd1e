"""Checkpoint formats: read, detect, canonicalise, export. Knows no model class.

- `files`: what a checkpoint directory holds; reading any supported checkpoint
  (`read_checkpoint`), writing ours (`write_checkpoint`), following a run's `last` marker;
- `layouts`: the authors', Hugging Face's and our key layouts and the canonical tree;
- `answers`: remapping an answer head's rows to another answer list;
- `export`: Hugging Face directories (weights, config, tokenizer files) and the authors' `.pth`.

Building a model from a checkpoint is `lxmert.modeling` (`Model.from_pretrained`).
"""

from lxmert.checkpoint.files import (
    ANSWERS_NAME,
    CONFIG_NAME,
    HF_BIN_NAME,
    INT8_WEIGHTS_NAME,
    LAST_NAME,
    RECIPE_NAME,
    WEIGHTS_NAME,
    StoredCheckpoint,
    read_checkpoint,
    read_state_dict,
    resolve_checkpoint,
    write_checkpoint,
)
from lxmert.checkpoint.layouts import canonicalize, detect_layout, infer_class_name, to_hf_state, to_original_state

__all__ = [
    "ANSWERS_NAME", "CONFIG_NAME", "HF_BIN_NAME", "INT8_WEIGHTS_NAME", "LAST_NAME", "RECIPE_NAME", "WEIGHTS_NAME",
    "StoredCheckpoint", "read_checkpoint", "read_state_dict", "resolve_checkpoint", "write_checkpoint",
    "canonicalize", "detect_layout", "infer_class_name", "to_hf_state", "to_original_state",
]
