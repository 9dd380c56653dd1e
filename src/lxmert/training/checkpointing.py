"""Checkpoints a killed run can resume from, bit for bit.

Layout of a run directory:

    RUN_DIR/recipe.json            the resolved recipe
    RUN_DIR/metrics.jsonl          one JSON object per log step / evaluation
    RUN_DIR/checkpoints/step-00000120/
        config.json, model.safetensors     -> `Model.from_pretrained(that_dir)` works
        recipe.json                        -> `lxmert evaluate --checkpoint that_dir` has its settings
        trainer_state.pt                   optimiser, schedule, scaler, RNG, data position
    RUN_DIR/last                   text file: the name of the newest COMPLETE checkpoint
    RUN_DIR/best/                  fine-tuning: the best-on-validation weights

A checkpoint is written into `.step-00000120.tmp` and renamed when complete; `last` is
rewritten with temp file + `os.replace`. A SIGKILL at any moment therefore leaves `last`
naming a complete directory (possibly the previous one), never a half-written one.
A write that fails (full disk, read-only or too small a quota) removes the temporary
directory and raises an OSError naming the file, with the errno of the failure: torch's
own report of it (a RuntimeError from its zip writer, `inline_container.cc`) says neither.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import torch

from lxmert.atomic import atomic_write_text, replace_dir
from lxmert.checkpoint.files import LAST_NAME, resolve_checkpoint

__all__ = [
    "TrainerState",
    "save_checkpoint",
    "save_trainer_state",
    "write_model_dir",
    "latest_checkpoint",
    "load_trainer_state",
    "STATE_NAME",
    "CKPT_DIR",
]

STATE_NAME = "trainer_state.pt"
CKPT_DIR = "checkpoints"


@dataclass
class TrainerState:
    """Where the loop is: counted in optimiser updates and batches of the current epoch."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "best_metric": self.best_metric,
            "best_step": self.best_step,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainerState":
        return cls(**{k: data[k] for k in ("step", "epoch", "batch_in_epoch", "best_metric", "best_step", "extra") if k in data})


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Give an OSError that names no file (a failed `write()`) the path being written."""
    try:
        yield
    except OSError as err:
        if err.filename is None and err.errno is not None:
            raise OSError(err.errno, err.strerror or os.strerror(err.errno), str(path)) from err
        raise


class _RecordingWriter:
    """The file object handed to `torch.save`: remembers the OSError of a failed write,
    which torch replaces by a RuntimeError of its zip writer."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.handle.flush()


def save_trainer_state(payload: dict[str, Any], path: Path) -> None:
    """`torch.save(payload, path)`, a failed write raised as the OSError behind it (with
    `path`), not as torch's RuntimeError that names neither the file nor the cause."""
    with _naming(path), open(path, "wb") as handle:
        sink = _RecordingWriter(handle)
        try:
            torch.save(payload, sink)  # type: ignore[arg-type]
        except RuntimeError as err:
            if sink.error is not None and sink.error.errno is not None:
                raise OSError(sink.error.errno, sink.error.strerror, str(path)) from err
            raise OSError(f"{path}: cannot write the trainer state ({err})") from err


def write_model_dir(final: Path, model: torch.nn.Module, files: dict[str, str],
                    payload: dict[str, Any] | None = None) -> Path:
    """Write a complete checkpoint directory at `final`: into a hidden temp directory
    beside it, renamed into place when complete (replacing an older `final`). On failure
    the temp directory is removed and `final` (if any) is untouched.

    `model` must offer `save_pretrained(dir)`; `files` maps file names to text (recipe,
    vocab, eval results); `payload` (optimiser, scheduler, RNG, loop state) goes to
    trainer_state.pt.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp")
    if tmp.exists():  # left by a process killed while saving
        shutil.rmtree(tmp)
    try:
        with _naming(final):
            tmp.mkdir()
            model.save_pretrained(tmp)  # type: ignore[operator]
            if payload is not None:
                save_trainer_state(payload, tmp / STATE_NAME)
            for fname, text in files.items():
                (tmp / fname).write_text(text, encoding="utf-8")
            replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def save_checkpoint(run_dir: Path, model: torch.nn.Module, payload: dict[str, Any], step: int,
                    keep_last: int = 2, extra_files: dict[str, str] | None = None) -> Path:
    """Write checkpoints/step-N atomically, point `last` at it, prune old ones."""
    root = Path(run_dir) / CKPT_DIR
    name = f"step-{step:08d}"
    final = write_model_dir(root / name, model, dict(extra_files or {}), payload)
    marker = Path(run_dir) / LAST_NAME
    with _naming(marker):
        atomic_write_text(marker, f"{CKPT_DIR}/{name}\n")
    if keep_last > 0:
        done = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))
        for old in done[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint `RUN_DIR/last` names, or None when the run has none yet."""
    marker = Path(run_dir) / LAST_NAME
    if not marker.is_file():
        return None
    path = resolve_checkpoint(marker)
    if not (path / STATE_NAME).is_file():
        raise FileNotFoundError(f"{marker} names {path}, but {path / STATE_NAME} is missing")
    return path


def load_trainer_state(checkpoint: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read trainer_state.pt with `weights_only=True` (tensors and plain containers only)."""
    path = Path(checkpoint) / STATE_NAME
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file name
        raise RuntimeError(f"{path}: cannot load trainer state ({err})") from err
