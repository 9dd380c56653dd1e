"""Adversarial fine-tuning: where the perturbations go, the KL, the ascent step and the
accumulated gradient, checked against a manual re-computation through `inputs_embeds`."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from support.tiny import FEAT, tiny_config
from lxmert.modeling import LxmertForNLVR2, LxmertForQuestionAnswering
from lxmert.techniques.adversarial import AdvConfig, adv_config, adversarial_step, symmetric_kl
from lxmert.training.recipe import AdvSection


def _batch(b=3, length=6, n=4, answers=7, soft=True):
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(b, length, dtype=torch.long)
    mask[0, 4:] = 0
    return {"input_ids": torch.randint(1000, 2000, (b, length), generator=g) * mask,
            "attention_mask": mask, "token_type_ids": torch.zeros(b, length, dtype=torch.long),
            "visual_feats": torch.randn(b, n, FEAT, generator=g), "visual_pos": torch.rand(b, n, 4, generator=g),
            "labels": torch.rand(b, answers, generator=g) if soft else torch.randint(0, answers, (b,), generator=g),
            "question_id": list(range(b))}


def test_symmetric_kl_by_hand():
    p = torch.tensor([[0.0, 1.0]])
    q = torch.tensor([[1.0, 0.0]])
    pp, qq = F.softmax(p, -1), F.softmax(q, -1)
    expected = (pp * (pp / qq).log()).sum() + (qq * (qq / pp).log()).sum()
    assert symmetric_kl(p, q, "softmax") == pytest.approx(float(expected))
    sp, sq = torch.sigmoid(p), torch.sigmoid(q)

    def bern(a, b):
        return (a * (a / b).log() + (1 - a) * ((1 - a) / (1 - b)).log()).sum()

    assert symmetric_kl(p, q, "bernoulli") == pytest.approx(float(bern(sp, sq) + bern(sq, sp)), rel=1e-5)
    assert symmetric_kl(p, p, "softmax") == 0.0
    # the clean side is a constant: no gradient flows into it
    p.requires_grad_(True)
    q.requires_grad_(True)
    symmetric_kl(p, q, "softmax").backward()
    assert p.grad is None and q.grad.abs().sum() > 0


def _manual(model, batch, cfg: AdvConfig, mode: str):
    """The objective of the module docstring, step by step through inputs_embeds / raw features."""
    inputs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor) and k != "labels"}
    emb = model.lxmert.embeddings.word_embeddings(inputs["input_ids"])
    keep = inputs["attention_mask"].float().unsqueeze(-1)

    def run(d_text=None, d_img=None):
        kw = dict(inputs)
        kw.pop("input_ids")
        kw["inputs_embeds"] = emb + (d_text * keep if d_text is not None else 0)
        if d_img is not None:
            kw["visual_feats"] = inputs["visual_feats"] + d_img
        out = model(**kw, labels=batch["labels"])
        return out.loss, out.question_answering_score

    clean, clean_logits = run()
    total = clean
    deltas = {}
    for m in cfg.modalities:
        shape = emb.shape if m == "text" else inputs["visual_feats"].shape
        delta = torch.zeros(shape, requires_grad=True)
        history = []
        for _ in range(cfg.steps):
            loss, logits = run(delta if m == "text" else None, delta if m == "image" else None)
            obj = (cfg.adv_task_weight * loss + cfg.kl_weight * symmetric_kl(clean_logits, logits, mode)) / cfg.steps
            (g,) = torch.autograd.grad(obj, delta, retain_graph=True)
            total = total + obj
            delta = (delta + cfg.lr * g / g.flatten(1).norm(dim=1).view(-1, *[1] * (g.dim() - 1))).detach()
            delta.requires_grad_(True)
            history.append(delta.detach().clone())
        deltas[m] = history
    return total, deltas


@pytest.mark.parametrize("soft", [True, False])
def test_accumulated_gradient_equals_the_documented_objective(soft):
    torch.manual_seed(0)
    model = LxmertForQuestionAnswering(tiny_config())
    model.train()  # dropout is 0 in tiny_config, so both computations see the same function
    batch = _batch(soft=soft)
    cfg = AdvConfig(modalities=("text", "image"), steps=3, lr=0.05, kl_weight=1.5)
    stats = adversarial_step(model, batch, None, cfg)
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    total, deltas = _manual(model, batch, cfg, "bernoulli" if soft else "softmax")
    total.backward()
    assert float(stats["loss"]) == pytest.approx(float(total.detach()), rel=1e-5)
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        torch.testing.assert_close(got[name], p.grad, rtol=2e-4, atol=2e-6, msg=name)
    # every ascent step has L2 norm lr per example (from zero, so step 1 has norm exactly lr)
    for m in ("text", "image"):
        first = deltas[m][0].flatten(1).norm(dim=1)
        assert torch.allclose(first, torch.full_like(first, cfg.lr), rtol=1e-5)
    assert set(stats) >= {"clean_loss", "adv_loss_text", "adv_kl_text", "adv_loss_image", "adv_kl_image"}


def test_text_perturbation_skips_padding_and_max_norm_projects():
    model = LxmertForQuestionAnswering(tiny_config())
    batch = _batch()
    seen = []
    hook = model.lxmert.embeddings.LayerNorm.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach()))
    cfg = AdvConfig(modalities=("text",), steps=2, lr=10.0, max_norm=0.5)
    stats = adversarial_step(model, batch, None, cfg)
    hook.remove()
    clean, perturbed = seen[0], seen[-1]
    moved = (perturbed - clean).abs().sum(-1)
    assert bool((moved[0, 4:] == 0).all()) and bool((moved[0, :4] > 0).all())  # padding untouched
    assert float(stats["adv_delta_norm_text"]) == pytest.approx(0.5, rel=1e-4)  # projected to the ball


def test_nlvr2_and_user_loss_functions_work_and_config_validates():
    model = LxmertForNLVR2(tiny_config())
    b = _batch(soft=False, answers=2)
    b["visual_feats"] = torch.randn(3, 2, 4, FEAT)
    b["visual_pos"] = torch.rand(3, 2, 4, 4)
    calls = []

    def loss_fn(m, batch):
        calls.append(1)
        out = m(**{k: v for k, v in batch.items() if isinstance(v, torch.Tensor)})
        return out.loss, {"extra": out.loss.detach() * 0}

    stats = adversarial_step(model, b, loss_fn, AdvConfig(steps=2, init_mag=0.1))
    assert len(calls) == 1 + 2 * 2 and "extra" in stats
    assert adv_config(AdvSection()) is None
    with pytest.raises(ValueError, match=r"\[adv\] section: .*steps 0"):
        adv_config(AdvSection(modalities=["text"], steps=0))
    with pytest.raises(ValueError, match="subset of text, image"):
        AdvConfig(modalities=("audio",))
