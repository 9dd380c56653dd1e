"""BertAdam's update rule and the warmup-linear schedule, checked against hand computation."""

from __future__ import annotations

import math

import pytest
import torch

from lxmert.training.optim import BertAdam, build_optimizer, build_scheduler, warmup_linear


def _hand_step(p, g, m, v, lr, b1=0.9, b2=0.999, eps=1e-6, wd=0.01):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    u = m / (math.sqrt(v) + eps) + wd * p
    return p - lr * u, m, v


def test_bertadam_matches_hand_computed_two_steps():
    p0 = [1.0, -2.0, 0.0]
    grads = [[0.5, 0.1, -3.0], [-0.25, 0.2, 1.0]]
    w = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    opt = BertAdam([w], lr=0.1, weight_decay=0.01)
    expected = list(p0)
    m = [0.0] * 3
    v = [0.0] * 3
    for g in grads:
        w.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        for i in range(3):
            expected[i], m[i], v[i] = _hand_step(expected[i], g[i], m[i], v[i], 0.1)
        assert w.detach().tolist() == pytest.approx(expected, rel=1e-12, abs=1e-12)
    # First step, first coordinate, fully by hand: m=0.05, v=0.00025,
    # u = 0.05/(0.0158113883+1e-6) + 0.01*1 = 3.16207...+0.01, p = 1 - 0.1*u
    first = 1.0 - 0.1 * (0.05 / (math.sqrt(0.00025) + 1e-6) + 0.01)
    assert first == pytest.approx(0.6827932, abs=1e-6)


def test_bertadam_has_no_bias_correction_unlike_adamw():
    """Step 1 of Adam(W) moves by ~lr; BertAdam by lr * (1-b1)/sqrt(1-b2) ~ 3.16 lr."""
    a = torch.nn.Parameter(torch.tensor([1.0]))
    b = torch.nn.Parameter(torch.tensor([1.0]))
    ba = BertAdam([a], lr=1e-3, weight_decay=0.0)
    aw = torch.optim.AdamW([b], lr=1e-3, weight_decay=0.0, eps=1e-6)
    for param, opt in ((a, ba), (b, aw)):
        param.grad = torch.tensor([2.0])
        opt.step()
    assert 1.0 - b.item() == pytest.approx(1e-3, rel=1e-3)
    assert 1.0 - a.item() == pytest.approx(1e-3 * 0.1 / math.sqrt(0.001), rel=1e-3)


def test_weight_decay_is_decoupled_and_applies_without_gradient_signal():
    w = torch.nn.Parameter(torch.tensor([2.0]))
    opt = BertAdam([w], lr=0.5, weight_decay=0.1)
    w.grad = torch.zeros(1)
    opt.step()
    assert w.item() == pytest.approx(2.0 - 0.5 * 0.1 * 2.0)


def test_warmup_linear_shape():
    assert warmup_linear(0.0, 0.1) == 0.0  # the release's first update has lr 0
    assert warmup_linear(0.05, 0.1) == pytest.approx(0.5)
    assert warmup_linear(0.1, 0.1) == pytest.approx(1.0)
    assert warmup_linear(0.55, 0.1) == pytest.approx(0.5)
    assert warmup_linear(1.0, 0.1) == 0.0
    assert warmup_linear(1.5, 0.1) == 0.0
    assert warmup_linear(0.5, 0.0) == pytest.approx(0.5)


def test_scheduler_drives_group_lr_and_round_trips():
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(model, "bertadam", lr=1.0)
    sched = build_scheduler(opt, total_steps=10, warmup=0.2)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.0, 0.5, 1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8])
    again = build_scheduler(build_optimizer(model, "bertadam", lr=1.0), 10, 0.2)
    again.load_state_dict(sched.state_dict())
    assert again.last_epoch == 10


def test_build_optimizer_options_and_errors():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    adamw = build_optimizer(model, "adamw", lr=1e-3, decay_norm_and_bias=False)
    assert isinstance(adamw, torch.optim.AdamW)
    assert [g["weight_decay"] for g in adamw.param_groups] == [0.01, 0.0]
    assert len(adamw.param_groups[0]["params"]) == 1  # only the Linear weight decays
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer(model, "sgd")
    with pytest.raises(ValueError, match="warmup"):
        build_scheduler(adamw, 10, 1.5)
    assert adamw.defaults["fused"] is True  # fused kernel on CPU as on CUDA


def _small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.LayerNorm(32), torch.nn.Linear(32, 3))


def _train_twins(steps: int, decay: float, kwargs_a: dict, kwargs_b: dict):
    """Two identical small models trained on the same batches by BertAdam(**kwargs_a / _b); one
    parameter without gradient (skipped by every path). Returns (model_a, opt_a, model_b, opt_b)."""
    a, b = _small_model(), _small_model()
    opt_a = BertAdam(a.parameters(), lr=1e-2, weight_decay=decay, **kwargs_a)
    opt_b = BertAdam(b.parameters(), lr=1e-2, weight_decay=decay, **kwargs_b)
    a[2].bias.requires_grad_(False)
    b[2].bias.requires_grad_(False)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(8, 16, generator=gen)
        for model, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    return a, opt_a, b, opt_b


@pytest.mark.parametrize("decay", [0.0, 0.01])
def test_bertadam_multi_tensor_path_is_bit_identical_to_the_loop(decay):
    fast, opt_fast, slow, opt_slow = _train_twins(15, decay, dict(foreach=True, fused=False),
                                                  dict(foreach=False, fused=False))
    for p, q in zip(fast.parameters(), slow.parameters()):
        assert torch.equal(p, q)
        if p.requires_grad:
            assert torch.equal(opt_fast.state[p]["exp_avg_sq"], opt_slow.state[q]["exp_avg_sq"])
            assert float(opt_fast.state[p]["step"]) == 15


@pytest.mark.parametrize("decay", [0.0, 0.01])
def test_bertadam_fused_kernel_is_the_same_update_up_to_rounding(decay):
    """torch's fused AdamW with its bias corrections pinned to 1 (step 2^24) is BertAdam."""
    fused, opt_fused, loop, opt_loop = _train_twins(20, decay, dict(fused=True), dict(fused=False, foreach=False))
    moved = False
    for p, q, p0 in zip(fused.parameters(), loop.parameters(), _small_model().parameters()):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-6), float((p - q).abs().max())
        moved |= not torch.allclose(q, p0, atol=1e-3)
        if p.requires_grad:
            assert torch.allclose(opt_fused.state[p]["exp_avg_sq"], opt_loop.state[q]["exp_avg_sq"], rtol=1e-5)
            assert float(opt_fused.state[p]["step"]) == 20  # bookkeeping as the other paths
    assert moved
    # a bias-corrected step (Adam's step count 1) would move every weight by ~lr exactly; BertAdam
    # by lr * (1 - b1) / sqrt(1 - b2) ~ 3.16 lr: the fused path must be the latter
    w = torch.nn.Parameter(torch.ones(4))
    opt = BertAdam([w], lr=1e-3, weight_decay=0.0, fused=True)
    w.grad = torch.full((4,), 0.5)
    opt.step()
    assert torch.allclose(1.0 - w.detach(), torch.full((4,), 1e-3 * 0.1 / 0.001 ** 0.5), rtol=1e-4)


def test_bertadam_uses_the_fused_kernel_by_default_on_cpu():
    opt = BertAdam([torch.nn.Parameter(torch.ones(3))])
    w = opt.param_groups[0]["params"][0]
    w.grad = torch.ones(3)
    opt.step()
    assert opt.param_groups[0]["fused"] is None and opt._no_bias_correction  # auto -> fused ran
    with pytest.raises(RuntimeError, match="float parameters on CPU or CUDA"):
        bad = BertAdam([torch.nn.Parameter(torch.ones(3, dtype=torch.float64))], fused=True)
        bad.param_groups[0]["params"][0].grad = torch.ones(3, dtype=torch.float64)
        bad.step()
