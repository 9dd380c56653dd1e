"""metrics.jsonl: one JSON object per log step or evaluation, readable by `lxmert plot`.

Each line carries `step` (optimiser updates so far), `epoch`, `split` ("train", "valid",
...), wall-clock `time` and the numbers. When a run resumes from a checkpoint, lines the
killed process wrote after that checkpoint are dropped first, so the file describes exactly
one history, the one the weights come from.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterator

from lxmert.atomic import atomic_write_text

__all__ = ["MetricsWriter", "read_metrics"]


def _clean(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/Inf; keep them visible as strings
    return value


class MetricsWriter:
    """Appends JSON lines (flushed each time) to RUN_DIR/metrics.jsonl; no-op when disabled."""

    def __init__(self, path: str | os.PathLike, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self._start = time.time()

    def truncate_after(self, step: int) -> None:
        """Drop lines with `step` > `step` (written by a killed run after its checkpoint)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def has_record(self, split: str, step: int) -> bool:
        """Whether a line of `split` at `step` was written (e.g. a finished evaluation)."""
        if not self.path.is_file():
            return False
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                if record.get("split") == split and record.get("step") == step:
                    return True
        return False

    def reset(self) -> None:
        if self.enabled and self.path.exists():
            self.path.unlink()

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {k: _clean(v) for k, v in record.items()}
        record.setdefault("time", round(time.time() - self._start, 3))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()


def read_metrics(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Yield records from a metrics.jsonl (or RUN_DIR); bad lines raise naming the line."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics file (is this a run directory?)")
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({err})") from err
