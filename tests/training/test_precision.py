"""Mixed precision: which devices get which autocast, and the errors / warnings otherwise."""

import logging

import pytest
import torch

from lxmert.training import precision


def test_bf16_autocast_on_cpu_runs_linear_layers_in_bf16():
    lin = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8)
    with precision.autocast("bf16", "cpu"):
        y = lin(x)
        loss = torch.nn.functional.cross_entropy(y, torch.tensor([0, 1, 2]))  # losses stay fp32
    assert y.dtype == torch.bfloat16 and loss.dtype == torch.float32
    assert torch.allclose(y.float(), lin(x), atol=0.05)
    assert lin.weight.dtype == torch.float32  # master weights untouched
    with precision.autocast("none", "cpu"):
        assert lin(x).dtype == torch.float32


def test_unsupported_precisions_are_errors_naming_the_setting():
    with pytest.raises(ValueError, match="train.amp = 'fp16' needs CUDA"):
        precision.check_amp("fp16", "cpu")
    with pytest.raises(ValueError, match="--amp = 'bf16' is not supported on mps"):
        precision.check_amp("bf16", torch.device("mps"), "--amp")
    with pytest.raises(ValueError, match="expected one of none, bf16, fp16"):
        precision.autocast("fp8", "cpu")
    precision.check_amp("fp16", "cuda")  # validated only; nothing runs


def test_bf16_on_a_cpu_without_bf16_units_warns(monkeypatch, caplog):
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="lxmert.training.precision"):
        precision.check_amp("bf16", "cpu")
    assert "slower than fp32" in caplog.text
    caplog.clear()
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    with caplog.at_level(logging.WARNING, logger="lxmert.training.precision"):
        precision.check_amp("bf16", "cpu")
    assert caplog.text == ""
