"""Checkpoints a killed run can resume from, bit for bit.

Layout of a run directory:

    RUN_DIR/config.json            the resolved recipe
    RUN_DIR/metrics.jsonl          one JSON object per log step / evaluation
    RUN_DIR/checkpoints/step-00000120/
        config.json, model.safetensors     -> `Model.from_pretrained(that_dir)` works
        trainer_state.pt                   optimiser, schedule, scaler, RNG, data position
    RUN_DIR/last                   text file: the name of the newest COMPLETE checkpoint
    RUN_DIR/best/                  fine-tuning: the best-on-validation weights

A checkpoint is written into `.step-00000120.tmp` and renamed when complete; `last` is
rewritten with temp file + `os.replace`. A SIGKILL at any moment therefore leaves `last`
naming a complete directory (possibly the previous one), never a half-written one.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lxmert.utils import atomic_write_text

__all__ = [
    "TrainerState",
    "capture_rng",
    "restore_rng",
    "save_checkpoint",
    "latest_checkpoint",
    "load_trainer_state",
    "replace_dir",
    "STATE_NAME",
]

STATE_NAME = "trainer_state.pt"
LAST_NAME = "last"
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


def capture_rng() -> dict[str, Any]:
    """All RNG streams as tensors/lists, so `torch.load(weights_only=True)` can read them."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    np_state = np.random.get_state()
    state["numpy"] = {
        "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "pos": int(np_state[2]),
        "has_gauss": int(np_state[3]),
        "cached_gaussian": float(np_state[4]),
    }
    version, internal, gauss = random.getstate()
    state["python"] = {"version": version, "internal": list(internal), "gauss": gauss}
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    npst = state["numpy"]
    np.random.set_state(
        ("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["cached_gaussian"])
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a completed directory into place, replacing an older one of the same name."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)


def save_checkpoint(
    run_dir: Path,
    model: torch.nn.Module,
    payload: dict[str, Any],
    step: int,
    keep_last: int = 2,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write checkpoints/step-N atomically, point `last` at it, prune old ones.

    `model` must offer `save_pretrained(dir)`; `payload` (optimiser, scheduler, RNG, state)
    goes to trainer_state.pt; `extra_files` maps file names to text (e.g. vocab, answers).
    """
    root = Path(run_dir) / CKPT_DIR
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    final = root / name
    tmp = root / f".{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    model.save_pretrained(tmp)
    torch.save(payload, tmp / STATE_NAME)
    for fname, text in (extra_files or {}).items():
        (tmp / fname).write_text(text, encoding="utf-8")
    replace_dir(tmp, final)
    atomic_write_text(Path(run_dir) / LAST_NAME, f"{CKPT_DIR}/{name}\n")
    if keep_last > 0:
        done = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))
        for old in done[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint `RUN_DIR/last` names, or None when the run has none yet."""
    run_dir = Path(run_dir)
    marker = run_dir / LAST_NAME
    if not marker.is_file():
        return None
    rel = marker.read_text(encoding="utf-8").strip()
    path = run_dir / rel
    if not (path / STATE_NAME).is_file():
        raise FileNotFoundError(f"{marker} names {rel!r}, but {path / STATE_NAME} is missing")
    return path


def load_trainer_state(checkpoint: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read trainer_state.pt with `weights_only=True` (tensors and plain containers only)."""
    path = Path(checkpoint) / STATE_NAME
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file name
        raise RuntimeError(f"{path}: cannot load trainer state ({err})") from err
