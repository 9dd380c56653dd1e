"""Magnitude pruning: exact counts, scopes, kept parts, masks surviving optimiser steps,
pruned checkpoints that load and run, `lxmert prune`, and lottery-ticket rewinding."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from support.tiny import FEAT, tiny_config
from lxmert.cli import main
from lxmert.modeling import LxmertForClassification, LxmertForQuestionAnswering
from lxmert.techniques.pruning import (lottery_ticket, magnitude_masks, masks_from_zeros, prunable_parameters,
                                       prune_model, rounds_to_sparsity, sparsity_report)


def test_global_and_layer_scopes_by_hand():
    params = {"a": torch.tensor([[1.0, -5.0], [0.5, 4.0]]), "b": torch.tensor([[3.0, -0.1, 2.0, 6.0]])}
    g = magnitude_masks(params, 0.5, scope="global")  # |w| ranks: 0.1 0.5 1 2 | 3 4 5 6
    assert g.masks["a"].tolist() == [[0.0, 1.0], [0.0, 1.0]]
    assert g.masks["b"].tolist() == [[1.0, 0.0, 0.0, 1.0]]
    layer = magnitude_masks(params, 0.5, scope="layer")  # each tensor loses its 2 smallest
    assert layer.masks["a"].tolist() == [[0.0, 1.0], [0.0, 1.0]]
    assert layer.masks["b"].tolist() == [[1.0, 0.0, 0.0, 1.0]]
    uneven = magnitude_masks({"a": torch.tensor([1.0, 2.0, 3.0, 4.0]), "b": torch.tensor([10.0, 20.0])}, 0.5)
    assert uneven.masks["a"].sum() == 1 and uneven.masks["b"].sum() == 2  # global: small tensor spared
    # iterative: what was pruned stays pruned even if it is now the largest
    prev = magnitude_masks({"w": torch.tensor([1.0, 2.0, 3.0, 4.0])}, 0.25)
    nxt = magnitude_masks({"w": torch.tensor([9.0, 2.0, 3.0, 4.0])}, 0.5, previous=prev)
    assert nxt.masks["w"].tolist() == [0.0, 0.0, 1.0, 1.0]
    assert rounds_to_sparsity(0.5, 0.1) == pytest.approx([0.1, 0.19, 0.271, 0.3439, 0.40951, 0.468559, 0.5])


def test_kept_parts_and_report():
    model = LxmertForQuestionAnswering(tiny_config())
    everything = prunable_parameters(model)
    assert "lxmert.embeddings.word_embeddings.weight" in everything
    assert not any(n.endswith(".bias") or "LayerNorm" in n for n in everything)
    kept = prunable_parameters(model, keep_embeddings=True, keep_head=True)
    assert not any("embeddings" in n or n.startswith("answer_head") for n in kept)
    prune_model(model, 0.5, scope="layer", keep_embeddings=True, keep_head=True)
    report = sparsity_report(model, keep_embeddings=True, keep_head=True)
    assert report["prunable_sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert all(t["sparsity"] == pytest.approx(0.5, abs=0.01) for t in report["tensors"].values())
    assert set(report["modules"]) >= {"layer.0", "layer.1", "r_layers.0", "x_layers.0", "visn_fc", "pooler"}
    assert float((model.answer_head.logit_fc[3].weight == 0).float().mean()) < 0.01  # head kept
    assert 0 < report["model_sparsity"] < 0.5


def test_masks_survive_optimiser_steps_with_weight_decay():
    model = LxmertForQuestionAnswering(tiny_config())
    masks = prune_model(model, 0.6, keep_embeddings=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    masks.attach(opt)
    batch = {"input_ids": torch.randint(1000, 2000, (2, 5)), "visual_feats": torch.randn(2, 3, FEAT),
             "visual_pos": torch.rand(2, 3, 4), "labels": torch.rand(2, 7)}
    for _ in range(3):
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    for name, p in masks.params.items():
        assert bool((p[masks.masks[name] == 0] == 0).all()), name
    assert masks_from_zeros(model, keep_embeddings=True).sparsity == pytest.approx(0.6, abs=1e-3)


def test_lxmert_prune_cli_checkpoint_loads_and_runs(tmp_path, capsys):
    model = LxmertForClassification(tiny_config(), labels=["no", "yes"])
    src = model.save_pretrained(tmp_path / "ckpt")
    (src / "vocab.txt").write_text("[PAD]\n")
    out = tmp_path / "pruned"
    assert main(["prune", str(src), "--sparsity", "0.5", "--out", str(out), "--keep-embeddings",
                 "--keep-head"]) == 0
    printed = capsys.readouterr().out
    assert "layer.0" in printed and "prunable weights" in printed and "50.00%" in printed
    record = json.loads((out / "pruning.json").read_text())
    assert record["report"]["prunable_sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert (out / "vocab.txt").is_file()
    loaded = LxmertForClassification.from_pretrained(out)  # plain tensors with zeros
    assert loaded.labels == ["no", "yes"]
    w = loaded.lxmert.encoder.layer[0].output.dense.weight if hasattr(loaded.lxmert.encoder.layer[0], "output") \
        else next(p for n, p in loaded.named_parameters() if n.startswith("lxmert.encoder.layer.0") and p.dim() == 2)
    assert float((w == 0).float().mean()) > 0.3
    out_logits = loaded(input_ids=torch.randint(1000, 2000, (2, 5)), visual_feats=torch.randn(2, 3, FEAT),
                        visual_pos=torch.rand(2, 3, 4)).logits
    assert out_logits.shape == (2, 2) and torch.isfinite(out_logits).all()
    assert main(["prune", str(src), "--sparsity", "0.5", "--out", str(src)]) == 1  # refuses to overwrite


def test_lottery_ticket_rewinds_survivors_and_prunes_to_target():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2))
    init = {k: v.clone() for k, v in model.state_dict().items()}
    seen_at_train = []

    def train(m, masks):
        seen_at_train.append({k: v.clone() for k, v in m.state_dict().items()})
        with torch.no_grad():  # "training" that moves every weight, as real training would
            for p in m.parameters():
                p.add_(torch.randn_like(p))
        if masks is not None:
            masks.apply()

    def evaluate(m):
        return {"sparsity": float(sum((p == 0).sum() for p in m.parameters() if p.dim() == 2)) / 80}

    masks, history = lottery_ticket(model, init, train, evaluate, 0.5, rate=0.2, scope="global",
                                    keep_embeddings=False, keep_head=False)
    expected = [0.0] + [round(s * 80) / 80 for s in rounds_to_sparsity(0.5, 0.2)]  # 80 prunable weights
    assert [h.sparsity for h in history] == pytest.approx(expected)
    assert history[-1].metrics["sparsity"] == pytest.approx(0.5, abs=0.02)
    for state in seen_at_train[1:]:  # each retraining starts from the init values of the survivors
        for k, v in state.items():
            if v.dim() == 2:
                kept = v != 0
                torch.testing.assert_close(v[kept], init[k][kept])


def test_prune_with_rewind_applies_trained_masks_to_early_weights(tmp_path):
    from lxmert.techniques.pruning import prune_checkpoint

    torch.manual_seed(0)
    early = LxmertForClassification(tiny_config(), labels=["a", "b"])
    early_dir = early.save_pretrained(tmp_path / "early")
    trained = LxmertForClassification(tiny_config(), labels=["a", "b"])  # other weights = "after training"
    trained_dir = trained.save_pretrained(tmp_path / "trained")
    record = prune_checkpoint(trained_dir, tmp_path / "ticket", 0.5, scope="layer", keep_embeddings=True,
                              keep_head=True, rewind=early_dir)
    assert record["rewound_to"] == str(early_dir)
    ticket = LxmertForClassification.from_pretrained(tmp_path / "ticket")
    name = "lxmert.encoder.x_layers.0.output.dense.weight"
    params = dict(ticket.named_parameters())
    name = name if name in params else next(n for n in params if n.startswith("lxmert.encoder.layer.0")
                                             and params[n].dim() == 2)
    w_t, w_e, w_tr = params[name], dict(early.named_parameters())[name], dict(trained.named_parameters())[name]
    keep = w_tr.abs() > w_tr.abs().flatten().kthvalue(w_tr.numel() // 2).values  # the larger half
    torch.testing.assert_close(w_t[keep], w_e[keep])  # survivors carry the EARLY values
    assert bool((w_t[~keep] == 0).all())  # pruned where the TRAINED weights were small
