"""`lxmert plot`: PNGs from a metrics.jsonl; clear error on a folder without one."""

from __future__ import annotations

import json

import pytest

from lxmert.cli import main
from lxmert.training.metrics_log import MetricsWriter, read_metrics


def test_plot_writes_pngs(tmp_path):
    w = MetricsWriter(tmp_path / "metrics.jsonl")
    for step in range(1, 6):
        w.write({"split": "train", "step": step, "loss": 5.0 / step, "mlm": 3.0 / step, "lr": 1e-4})
    w.write({"split": "valid", "step": 5, "loss": 1.5, "accuracy": 0.6, "mlm_accuracy": 0.2})
    w.write({"split": "train", "step": 6, "loss": float("nan")})
    assert main(["plot", str(tmp_path)]) == 0
    for name in ("loss.png", "metrics.png", "training.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    records = list(read_metrics(tmp_path))
    assert records[-1]["loss"] == "nan"  # non-finite values stay visible, JSON stays valid
    # truncate_after keeps only the history up to a checkpoint
    w.truncate_after(3)
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_plot_missing_metrics_is_a_clear_error(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 1
    assert "no metrics file" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        list(read_metrics(tmp_path))
