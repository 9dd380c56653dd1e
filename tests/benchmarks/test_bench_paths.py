"""Fast paths compute what the plain ones do; the benchmark entry points run end to end."""

import sys
from pathlib import Path

import pytest
import torch

from lxmert import LxmertConfig, LxmertForPreTraining, LxmertForQuestionAnswering

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

TINY = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, l_layers=1, r_layers=1, x_layers=1,
            visual_feat_dim=2048, num_qa_labels=9, num_object_labels=7, num_attr_labels=5)


def _batch(cfg, b=4):
    ids = torch.randint(1000, 2000, (b, 7))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    labels = torch.full_like(ids, -100)
    labels[:, 2] = ids[:, 2]
    n = 6
    return dict(input_ids=ids, attention_mask=mask, visual_feats=torch.rand(b, n, cfg.visual_feat_dim),
                visual_pos=torch.rand(b, n, 4), labels=labels, matched_label=torch.ones(b, dtype=torch.long),
                obj_labels={"obj": (torch.randint(0, 7, (b, n)), torch.rand(b, n)),
                            "attr": (torch.randint(0, 5, (b, n)), torch.rand(b, n)),
                            "feat": (torch.rand(b, n, cfg.visual_feat_dim), torch.ones(b, n))},
                ans=torch.tensor([1, -100, 3, 0]))


def test_fused_adamw_and_sparse_mlm_match_the_plain_step():
    """The benchmark's lxmert step (sparse MLM + fused AdamW) == dense MLM + for-loop AdamW."""
    cfg = LxmertConfig(**{**TINY, "vocab_size": 2000, "visual_feat_dim": 64}, hidden_dropout_prob=0.0,
                       attention_probs_dropout_prob=0.0)
    a = LxmertForPreTraining(cfg).train()
    b = LxmertForPreTraining(cfg).train()
    b.load_state_dict(a.state_dict())
    opt_a = torch.optim.AdamW(a.parameters(), lr=1e-3, fused=True)
    opt_b = torch.optim.AdamW(b.parameters(), lr=1e-3, foreach=False)
    for _ in range(3):
        batch = _batch(cfg)
        la = a(**batch, sparse_mlm=True).loss
        lb = b(**batch).loss
        assert abs(la.item() - lb.item()) < 1e-4
        la.backward()
        lb.backward()
        opt_a.step()
        opt_b.step()
        opt_a.zero_grad(set_to_none=True)
        opt_b.zero_grad(set_to_none=True)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-5), name


def test_loss_weights_scale_only_the_named_losses():
    cfg = LxmertConfig(**{**TINY, "vocab_size": 2000, "visual_feat_dim": 64}, hidden_dropout_prob=0.0,
                       attention_probs_dropout_prob=0.0)
    model = LxmertForPreTraining(cfg).eval()
    batch = _batch(cfg)
    plain = model(**batch, sparse_mlm=True)
    weighted = model(**batch, sparse_mlm=True, loss_weights={"matched": 3.0, "qa": 0.0})
    assert set(plain.losses) == {"mlm", "matched", "obj", "attr", "feat", "qa"}
    expected = sum(plain.losses.values()) + 2.0 * plain.losses["matched"] - plain.losses["qa"]
    assert torch.allclose(weighted.loss, expected, atol=1e-5)
    assert all(torch.equal(weighted.losses[k], plain.losses[k]) for k in plain.losses)  # reported unweighted


def test_inference_mode_equals_no_grad():
    cfg = LxmertConfig(**TINY)
    model = LxmertForQuestionAnswering(cfg).eval()
    batch = {k: v for k, v in _batch(cfg).items() if k in ("input_ids", "attention_mask", "visual_feats", "visual_pos")}
    with torch.no_grad():
        a = model(**batch).question_answering_score
    with torch.inference_mode():
        b = model(**batch).question_answering_score
    assert torch.equal(a, b)


def test_benchmark_runs_end_to_end_on_a_tiny_model(monkeypatch):
    pytest.importorskip("transformers")
    import bench_int8
    import bench_pretrain_step
    import bench_qa_inference

    for module in (bench_pretrain_step, bench_qa_inference):  # the GEMM probe is timing, not logic
        monkeypatch.setattr(module, "gemm_rate", lambda dtype=torch.float32: 4e9 if dtype == torch.bfloat16 else 1e9)

    cfg = LxmertConfig(**TINY)
    pre = bench_pretrain_step.run(quick=True, reps=1, batch_size=4, config=cfg, progress=False,
                                  figures=("same", "bf16"))
    for fig in ("same", "bf16"):
        assert pre[fig]["ratio"] > 0 and pre[fig]["lxmert"]["gemm_fraction"] > 0
    assert "system" not in pre  # benchmark-made batches: gone, bench_commands times the real command
    assert "| pre-training step, same tensors, B=4" in bench_pretrain_step.report(pre)
    qa = bench_qa_inference.run(quick=True, reps=1, batch_size=4, config=cfg, progress=False,
                                figures=("same", "bf16"))
    assert "same tensors" in bench_qa_inference.report(qa) and "bf16 autocast" in bench_qa_inference.report(qa)
    for result in (pre, qa):  # bf16 is measured against the bf16 GEMM rate, fp32 against fp32's
        fig = result["bf16"]
        assert result["gemm_bf16_flops"] == 4e9
        assert fig["lxmert"]["gemm_fraction"] == pytest.approx(fig["lxmert"]["model_flops_per_s"] / 4e9)
        assert fig["transformers"]["gemm_fraction"] == pytest.approx(fig["transformers"]["model_flops_per_s"] / 1e9)
    int8 = bench_int8.run(quick=True, reps=1, batch_size=4, agree_batches=1, config=cfg, toy_steps=0, progress=False)
    assert 0 <= int8["agreement"]["top1_agreement"] <= 1 and int8["ratio"] > 0


def test_gpu_script_smoke_on_cpu(tmp_path, capsys):
    pytest.importorskip("transformers")
    import gpu_pretrain

    out = tmp_path / "gpu.json"
    assert gpu_pretrain.main(["--device", "cpu", "--tiny", "--steps", "1", "--warmup", "0", "--batch-size", "2",
                              "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "MFU" in printed and "transformers fp32" in printed and "lxmert bf16" in printed
    assert out.is_file()


def test_bench_command_asks_for_the_bf16_figures_and_lists_them(monkeypatch, capsys):
    """`lxmert bench --bf16`: the model benchmarks get the bf16 figure; the summary names it."""
    import types

    import common

    from lxmert.cli import bench, main

    calls = {}

    def fake(name: str) -> types.ModuleType:
        def run(**kwargs):
            calls[name] = kwargs
            side = {"samples_per_s": 2.0, "gemm_fraction": 0.5}
            figs = {fig: {"lxmert": side, "transformers": side, "ratio": 1.0} for fig in kwargs.get("figures", ())}
            return {"batch_size": 8, "machine": {"cpu": "test", "torch_threads": 1}, **figs}
        return types.SimpleNamespace(__file__=name, run=run, report=lambda result: f"{name} table")

    monkeypatch.setattr(bench, "_import", lambda bench_dir, name: common if name == "common" else fake(name))
    assert main(["bench", "--quick", "--only", "pretrain,qa", "--bf16", "--benchmarks-dir", str(ROOT / "benchmarks")]) == 0
    assert calls["bench_pretrain_step"]["figures"] == ("same", "bf16")
    assert calls["bench_qa_inference"]["figures"] == ("same", "bf16")
    out = capsys.readouterr().out
    assert "QA inference, same tensors, lxmert bf16 autocast vs transformers fp32" in out
    assert "pre-training step, fp32, same tensors, B=8" in out


def test_bench_command_runs_the_real_entry_points_by_default(monkeypatch, capsys):
    """`lxmert bench` starts with bench_commands (the real commands); --bf16 runs it again in bf16."""
    import types

    import common

    from lxmert.cli import bench, main

    calls = []

    def fake(name: str) -> types.ModuleType:
        def run(**kwargs):
            calls.append((name, kwargs))
            side = {"samples_per_s": 2.0, "gemm_fraction": 0.5}
            got = {"lxmert": side, "transformers": side, "ratio": 1.5}
            return {"batch_size": 8, "machine": {"cpu": "test", "torch_threads": 1},
                    "pretrain": [got], "evaluate": [got], "predict": [got]}
        return types.SimpleNamespace(__file__=name, run=run, report=lambda result: f"{name} table")

    monkeypatch.setattr(bench, "_import", lambda bench_dir, name: common if name == "common" else fake(name))
    assert main(["bench", "--quick", "--bf16", "--only", "commands", "--benchmarks-dir", str(ROOT / "benchmarks")]) == 0
    assert [(n, k.get("amp")) for n, k in calls] == [("bench_commands", None), ("bench_commands", "bf16")]
    out = capsys.readouterr().out
    assert "`lxmert pretrain` (Trainer steps, lxr955), fp32, B=8, round 1" in out
    assert "`lxmert evaluate vqa`, lxmert bf16 autocast vs transformers fp32" in out
    assert bench.MODEL_SUITE[0] == "commands"


def test_real_command_benchmark_runs_end_to_end_on_a_tiny_model(monkeypatch, tmp_path):
    """bench_commands --quick: the real Trainer / api.evaluate / api.predict against the
    transformers loops on a small generated corpus, with the profile."""
    pytest.importorskip("transformers")
    import bench_commands

    monkeypatch.setattr(bench_commands, "gemm_rate", lambda **kwargs: 1e9)  # timing, not logic
    result = bench_commands.run(quick=True, rounds=1, progress=False, corpus_dir=str(tmp_path / "corpus"),
                                profile=True)
    for kind in ("pretrain", "evaluate", "predict"):
        (got,) = result[kind]
        assert got["ratio"] > 0 and got["lxmert"]["samples_per_s"] > 0
    pre = result["pretrain"][0]
    assert len(pre["lxmert"]["seconds"]) == len(pre["transformers"]["seconds"]) == result["steps"] - result["skip"]
    assert all(s > 0 for s in pre["lxmert"]["seconds"]), "the loop's step minus the interleaved peer step"
    assert pre["transformers"]["mean_width"] == 20 and pre["lxmert"]["mean_width"] <= 20
    assert pre["lxmert"]["gemm_fraction"] > 0 and pre["gemm_probe_median"] == 1e9
    assert result["evaluate_median_ratio"] == result["evaluate"][0]["ratio"]
    assert result["evaluate"][0]["lxmert"]["accuracy"] == pytest.approx(result["evaluate"][0]["transformers"]["accuracy"])
    assert 0 < result["profile"]["groups"]["GEMM (mm, addmm, bmm, baddbmm)"] < 1
    text = bench_commands.report(result)
    assert "`lxmert evaluate vqa` (whole call), round 1" in text and "QUICK" in text


def test_attention_splits_have_cheap_backwards():
    """q, k, v come from one unbind and the cross layer's streams from one split: their
    backward is a single stack / cat. Index selects and slices would zero-fill a full-size
    gradient per piece (measured ~10% of a B=32 training step)."""
    from lxmert.modeling.layers import CrossAttentionBlock

    cfg = LxmertConfig(**TINY)
    block = CrossAttentionBlock(cfg)
    q, k, v = block.att.split_heads(block.att.qkv(torch.randn(2, 5, 32)))
    assert {t.grad_fn.name() for t in (q, k, v)} == {"UnbindBackward0"}
    lang, visn, _, _ = block(torch.randn(2, 3, 32), None, torch.randn(2, 4, 32), None)
    assert lang.grad_fn.name() == visn.grad_fn.name() == "SplitWithSizesBackward0"
    with torch.profiler.profile() as prof:
        (lang.sum() + visn.sum()).backward()
    names = {e.name for e in prof.events()}
    assert "aten::select_backward" not in names and "aten::slice_backward" not in names


def test_batching_benchmark_buckets_pretraining_by_the_carried_lengths(tmp_path):
    """bench_batching on a small real-length corpus: lxr955's pre-training (a tiny model)
    through the real loop, bucketed (by `epoch_lengths`) and at random."""
    import bench_batching
    from bench_commands import QUICK_MODEL
    from common import real_length_corpus

    corpus = tmp_path / "corpus"
    real_length_corpus(corpus, images=30, questions_per_image=10, feat_dim=64)
    sets = [*bench_batching.CORPUS_SETS, *QUICK_MODEL, "model.visual_feat_dim=64", "train.batch_size=8",
            "data.valid_limit=16"]
    result = bench_batching.run("lxr955-pretrain", str(corpus), sets, train_steps=3, progress=False)
    got = result["batchings"]
    # 60 steps per epoch: windows of 3 batches (training_window), so buckets of 24 examples
    assert got["length"]["train_tokens"]["padding_fraction"] < 0.75 * got["random"]["train_tokens"]["padding_fraction"]
    for batching in ("length", "random"):
        assert len(got[batching]["train"]["losses"]) == 3
    assert "lxr955-pretrain" in bench_batching.report(result)
