"""Checkpoint files: what a checkpoint directory holds, how it is read and written.

Our directory format (what `save_pretrained` writes, and what Hugging Face writes too):

    config.json          LxmertConfig (Hugging Face field names)
    model.safetensors    canonical tensors; metadata `lxmert_class` names the model class
    model.int8.safetensors  instead of model.safetensors for int8 models (`lxmert quantize`)
    answers.json         the answer head's rows, in order (QA models)
    vocab.txt            the tokenizer's vocabulary, when it is not the packaged BERT one
    recipe.json          the training recipe, in checkpoints written by `lxmert pretrain|finetune`

Also read: Hugging Face's `pytorch_model.bin`, the authors' `.pth` files (any directory
holding exactly one; `NAME.answers.json` beside `NAME.pth` names its answer rows, as
`lxmert convert --to original` writes it), and a training run's `last` marker (a text
file naming its newest complete checkpoint). Pickled files are read with `torch.load(weights_only=True)`, so a
checkpoint never runs code. Every file is written atomically, weights before config, so a
directory whose config exists always has complete weights beside it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from lxmert.atomic import atomic_open, atomic_write_text
from lxmert.errors import CheckpointError

__all__ = [
    "CONFIG_NAME", "WEIGHTS_NAME", "INT8_WEIGHTS_NAME", "HF_BIN_NAME", "ANSWERS_NAME", "RECIPE_NAME",
    "LAST_NAME", "CLASS_KEY", "StoredCheckpoint", "resolve_checkpoint", "read_state_dict", "read_checkpoint",
    "read_answers", "write_checkpoint", "weights_file", "hf_answers", "has_config", "pth_answers_path",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INT8_WEIGHTS_NAME = "model.int8.safetensors"
HF_BIN_NAME = "pytorch_model.bin"
ANSWERS_NAME = "answers.json"
RECIPE_NAME = "recipe.json"
LAST_NAME = "last"
#: safetensors metadata key naming the model class that wrote the file
CLASS_KEY = "lxmert_class"
_WEIGHT_FILES = (WEIGHTS_NAME, INT8_WEIGHTS_NAME, HF_BIN_NAME)


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """Follow a training run's `last` marker: `RUN_DIR/last`, or a run directory holding a
    `last` marker and no weights, means the checkpoint the marker names. Other paths are
    returned as they are (so `--init runs/x/last` and `from_pretrained("runs/x")` work)."""
    path = Path(path)
    marker = None
    if path.is_file() and path.name == LAST_NAME and path.stat().st_size < 4096:
        marker = path
    elif path.is_dir() and (path / LAST_NAME).is_file() and not any((path / n).is_file() for n in _WEIGHT_FILES):
        marker = path / LAST_NAME
    if marker is None:
        return path
    target = marker.read_text(encoding="utf-8").strip()
    if not target:
        raise CheckpointError(f"{marker}: empty; the run has no complete checkpoint yet")
    resolved = Path(target) if Path(target).is_absolute() else marker.parent / target
    if not resolved.is_dir():
        raise CheckpointError(f"{marker} names {target}, which does not exist (run directory moved?)")
    return resolved


def weights_file(directory: Path) -> Path:
    """The weights file of a checkpoint directory (ours, int8, HF's .bin, or one .pth)."""
    for name in _WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name
    pths = sorted(directory.glob("*.pth"))
    if len(pths) == 1:
        return pths[0]
    found = ", ".join(sorted(p.name for p in directory.iterdir())[:8]) if directory.is_dir() else "nothing"
    raise CheckpointError(f"{directory}: no {WEIGHTS_NAME}, {INT8_WEIGHTS_NAME}, {HF_BIN_NAME} or single .pth "
                          f"file (found: {found or 'an empty directory'})")


def _read_safetensors(path: Path, map_location: str | torch.device) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device=str(map_location)) as handle:
            metadata = dict(handle.metadata() or {})
            return {key: handle.get_tensor(key) for key in handle.keys()}, metadata
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {err}") from err


def _read_pickle(path: Path, map_location: str | torch.device) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # pickle.UnpicklingError, RuntimeError, EOFError ...: all mean "refused"
        raise CheckpointError(
            f"{path}: refused or unreadable. Checkpoints are loaded with weights_only=True, so a "
            f"pickle that holds anything but tensors (e.g. code) is rejected: {err}") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a non-empty state dict of tensors")
    return state


def read_state_dict(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Tensors of a weights file (`.safetensors`, `.pth`, `.bin`) or a checkpoint directory."""
    return read_checkpoint(path, map_location).state


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None


def read_answers(path: Path) -> list[str]:
    """An `answers.json`: the answer head's row names, a JSON list of distinct strings."""
    data = _read_json(path)
    if not isinstance(data, list) or not all(isinstance(a, str) for a in data):
        raise CheckpointError(f"{path}: expected a JSON list of answer strings")
    seen: dict[str, int] = {}
    for i, answer in enumerate(data):
        if answer in seen:
            raise CheckpointError(f"{path}: answer {answer!r} at rows {seen[answer]} and {i}")
        seen[answer] = i
    return data


def hf_answers(config: Mapping[str, Any]) -> list[str] | None:
    """The answer list a Hugging Face config stores as `id2label`, when it names every row
    of the QA head (transformers' placeholder `LABEL_0`, `LABEL_1`, ... does not count)."""
    id2label = config.get("id2label")
    rows = config.get("num_qa_labels")
    if not isinstance(id2label, dict) or not isinstance(rows, int) or len(id2label) != rows:
        return None
    answers = [id2label.get(str(i), id2label.get(i)) for i in range(rows)]  # type: ignore[call-overload]
    if not all(isinstance(a, str) for a in answers) or answers == [f"LABEL_{i}" for i in range(rows)]:
        return None
    return answers  # type: ignore[return-value]


@dataclass
class StoredCheckpoint:
    """A checkpoint as stored: raw tensors plus the files beside them, before any model exists.

    `config` is the parsed config.json (None when there is none: the authors' `.pth`
    files); `class_name` the model class recorded in the weights (or HF's `architectures`),
    None when nothing records it; `int8` whether the tensors are `lxmert quantize` output.
    """

    path: Path
    weights: Path
    state: dict[str, torch.Tensor]
    config: dict[str, Any] | None = None
    answers: list[str] | None = None
    class_name: str | None = None
    int8: bool = False
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        return self.weights.parent


def pth_answers_path(weights: str | os.PathLike) -> Path:
    """The answer list beside an authors' `.pth` file: `NAME.answers.json` for `NAME.pth`
    (the format itself has no place for it; without it only the release's table sizes
    identify a head's rows)."""
    weights = Path(weights)
    return weights.with_name(weights.stem + ".answers.json")


def _owns_directory(path: Path, weights: Path) -> bool:
    # config.json and answers.json belong to the weights only in a checkpoint directory; a
    # `.pth` file sitting in some folder does not own the folder's other files.
    return path.is_dir() or weights.suffix in (".safetensors", ".bin")


def has_config(path: str | os.PathLike) -> bool:
    """Whether the checkpoint at `path` carries its config.json (an authors' `.pth` alone
    does not: its sizes are read off the weights, its head count must be given), found
    without reading any weights."""
    path = resolve_checkpoint(path)
    if path.is_dir():
        return (path / CONFIG_NAME).is_file()
    return path.is_file() and _owns_directory(path, path) and (path.parent / CONFIG_NAME).is_file()


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> StoredCheckpoint:
    """Read any supported checkpoint (a directory, a weights file, a run's `last` marker)."""
    original = Path(path)
    path = resolve_checkpoint(path)
    if path.is_dir():
        weights = weights_file(path)
    elif path.is_file():
        weights = path
    else:
        raise FileNotFoundError(f"checkpoint not found: {original}")
    metadata: dict[str, str] = {}
    if weights.suffix == ".safetensors":
        state, metadata = _read_safetensors(weights, map_location)
    else:
        state = _read_pickle(weights, map_location)
    directory = weights.parent
    own_dir = _owns_directory(path, weights)
    config = answers = None
    if own_dir and (directory / CONFIG_NAME).is_file():
        config = _read_json(directory / CONFIG_NAME)
        if not isinstance(config, dict):
            raise CheckpointError(f"{directory / CONFIG_NAME}: expected a JSON object")
    if own_dir and (directory / ANSWERS_NAME).is_file():
        answers = read_answers(directory / ANSWERS_NAME)
    if answers is None and weights.suffix == ".pth" and pth_answers_path(weights).is_file():
        answers = read_answers(pth_answers_path(weights))
    if answers is None and config is not None:
        answers = hf_answers(config)  # a Hugging Face export names its rows in id2label
    class_name = metadata.get(CLASS_KEY)
    if class_name is None and config is not None:
        archs = config.get("architectures")
        if isinstance(archs, list) and len(archs) == 1 and isinstance(archs[0], str):
            class_name = archs[0]
    return StoredCheckpoint(path=path, weights=weights, state=state, config=config, answers=answers,
                            class_name=class_name, int8=weights.name == INT8_WEIGHTS_NAME, metadata=metadata)


def write_checkpoint(directory: str | os.PathLike, state: Mapping[str, torch.Tensor], config_json: str,
                     class_name: str, *, answers: list[str] | None = None, int8: bool = False,
                     metadata: Mapping[str, str] | None = None) -> Path:
    """Write a checkpoint directory: weights first, then answers, then config (each atomic).

    `state` must already be in the stored form (canonical keys, or int8-packed tensors).
    """
    from safetensors.torch import save as st_save

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = INT8_WEIGHTS_NAME if int8 else WEIGHTS_NAME
    meta = {"format": "pt", CLASS_KEY: class_name, **(metadata or {})}
    data = st_save({k: v.detach().contiguous().cpu() for k, v in state.items()}, metadata=meta)
    with atomic_open(directory / name, "wb") as handle:
        handle.write(data)
    stale = directory / (WEIGHTS_NAME if int8 else INT8_WEIGHTS_NAME)
    if stale.is_file():  # re-saving in another precision: only one weights file may remain
        stale.unlink()
    if answers:
        atomic_write_text(directory / ANSWERS_NAME, json.dumps(list(answers), ensure_ascii=False) + "\n")
    atomic_write_text(directory / CONFIG_NAME, config_json)
    return directory
