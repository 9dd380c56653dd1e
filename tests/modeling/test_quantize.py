"""Int8 dynamic quantisation: close to fp32, stored as plain tensors, reloaded exactly."""

import json

import pytest
import torch
from safetensors import safe_open

from lxmert import LxmertConfig, LxmertForPreTraining, LxmertForQuestionAnswering, LxmertModel
from lxmert.cli import main as cli_main
import lxmert.modeling.int8 as lq
from lxmert.quantize import (QUANTIZED_WEIGHTS_NAME, answer_agreement, is_quantized, load_quantized,
                             quantize_model, save_quantized, weight_rounding_model)

SMALL = dict(hidden_size=64, num_attention_heads=4, intermediate_size=128, l_layers=2, r_layers=1, x_layers=1,
             visual_feat_dim=48, num_qa_labels=17, num_object_labels=23, num_attr_labels=11)


def _batch(cfg, b=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 2000, (b, 8), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    return dict(input_ids=ids, attention_mask=mask, visual_feats=torch.rand(b, 10, cfg.visual_feat_dim, generator=g),
                visual_pos=torch.rand(b, 10, 4, generator=g))


@pytest.fixture()
def qa_model():
    cfg = LxmertConfig(**SMALL)
    model = LxmertForQuestionAnswering(cfg, answers=[f"a{i}" for i in range(17)]).eval()
    # a sharper answer head than the init's, so that arg-max answers are not near-ties
    with torch.no_grad():
        model.answer_head.logit_fc[3].weight.mul_(20)
    return model


def test_quantized_model_agrees_with_fp32(qa_model):
    int8 = quantize_model(qa_model)
    assert is_quantized(int8) and not is_quantized(qa_model)  # the fp32 model is left alone
    linears = [m for m in qa_model.modules() if type(m) is torch.nn.Linear]
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    # the pooler and the two answer-head layers stay fp32 (they write the logits; ~0.1% of the FLOPs)
    assert sum(1 for m in int8.modules() if isinstance(m, dynamic)) == len(linears) - 3
    assert type(int8.lxmert.pooler.dense) is torch.nn.Linear
    assert all(type(m) is torch.nn.Linear for m in int8.answer_head.modules() if isinstance(m, torch.nn.Linear))
    everything = quantize_model(qa_model, skip=lq.TIED_SKIP)  # heads too
    assert sum(1 for m in everything.modules() if isinstance(m, dynamic)) == len(linears)
    batches = [_batch(qa_model.config, seed=s) for s in range(4)]
    agreement = answer_agreement(qa_model, int8, batches)
    assert agreement.samples == 24
    assert agreement.top1_agreement >= 0.95
    with torch.inference_mode():
        ref = qa_model(**batches[0]).question_answering_score
        got = int8(**batches[0]).question_answering_score
    # int8 noise is a small fraction of the logits' spread, not zero (it IS quantised)
    assert 0 < float((ref - got).abs().max()) < 0.1 * float(ref.std())
    assert int8.config.extra["quantization"]["method"] == "dynamic-int8"
    assert "quantization" not in qa_model.config.extra
    with pytest.raises(ValueError, match="already quantised"):
        quantize_model(int8)


def test_save_load_round_trip_is_exact(qa_model, tmp_path):
    int8 = quantize_model(qa_model)
    out = save_quantized(int8, tmp_path / "q")
    assert sorted(p.name for p in out.iterdir()) == ["answers.json", "config.json", QUANTIZED_WEIGHTS_NAME]
    with safe_open(str(out / QUANTIZED_WEIGHTS_NAME), framework="pt") as handle:
        keys = set(handle.keys())
        w = handle.get_tensor("lxmert.encoder.layer.0.attention.self.qkv.weight.int8")
        scale = handle.get_tensor("lxmert.encoder.layer.0.attention.self.qkv.weight.scale")
        assert handle.metadata()["lxmert_class"] == "LxmertForQuestionAnswering"
    assert w.dtype == torch.int8 and w.shape == (3 * 64, 64) and scale.shape == (3 * 64,)
    assert "lxmert.embeddings.word_embeddings.weight" in keys  # embeddings stay fp32
    reloaded = load_quantized(out)
    assert reloaded.answers == qa_model.answers
    batch = _batch(qa_model.config)
    with torch.inference_mode():
        assert torch.equal(int8(**batch).question_answering_score, reloaded(**batch).question_answering_score)
    assert json.loads((out / "config.json").read_text())["extra"]["quantization"]["scheme"] == "per_channel"


def test_pretraining_model_keeps_tied_decoder_and_per_tensor_scheme(tmp_path):
    cfg = LxmertConfig(**SMALL)
    model = LxmertForPreTraining(cfg).eval()
    int8 = quantize_model(model, per_channel=False)
    assert type(int8.cls.predictions.decoder) is torch.nn.Linear  # tied to the word embeddings: kept fp32
    reloaded = load_quantized(save_quantized(int8, tmp_path / "p"))
    assert reloaded.cls.predictions.decoder.weight is reloaded.lxmert.embeddings.word_embeddings.weight
    batch = _batch(cfg)
    with torch.inference_mode():
        a, b = int8(**batch), reloaded(**batch)
    assert torch.equal(a.prediction_logits, b.prediction_logits)
    assert torch.equal(a.question_answering_score, b.question_answering_score)


def test_load_errors_name_the_file(tmp_path, qa_model):
    with pytest.raises(FileNotFoundError, match=QUANTIZED_WEIGHTS_NAME):
        load_quantized(tmp_path)
    qa_model.save_pretrained(tmp_path / "fp32")  # an fp32 directory is not a quantised one
    (tmp_path / "fp32" / QUANTIZED_WEIGHTS_NAME).write_bytes((tmp_path / "fp32" / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="quantization"):
        load_quantized(tmp_path / "fp32")
    with pytest.raises(ValueError, match="not quantised"):
        save_quantized(qa_model, tmp_path / "x")


def test_cli_quantize_writes_a_loadable_directory(tmp_path, qa_model, capsys):
    qa_model.save_pretrained(tmp_path / "ckpt")
    assert cli_main(["quantize", str(tmp_path / "ckpt"), str(tmp_path / "int8")]) == 0
    assert "model.int8.safetensors" in capsys.readouterr().out
    model = load_quantized(tmp_path / "int8")
    assert is_quantized(model) and model.answers == qa_model.answers
    assert type(model.answer_head.logit_fc[3]) is torch.nn.Linear  # heads kept fp32 by default
    assert cli_main(["quantize", str(tmp_path / "ckpt"), str(tmp_path / "all"), "--quantize-heads"]) == 0
    assert isinstance(load_quantized(tmp_path / "all").answer_head.logit_fc[3], torch.ao.nn.quantized.dynamic.Linear)
    encoder = LxmertModel(LxmertConfig(**SMALL)).eval()
    with torch.inference_mode():
        out = quantize_model(encoder)(**_batch(encoder.config))
    assert out.pooled_output.shape == (6, 64)


def test_from_pretrained_and_load_any_route_int8_directories(qa_model, tmp_path):
    from lxmert.errors import CheckpointError
    from lxmert.modeling import LxmertPreTrainedModel

    load_any = LxmertPreTrainedModel.from_pretrained
    out = save_quantized(quantize_model(qa_model), tmp_path / "q")
    batch = _batch(qa_model.config)
    with torch.inference_mode():
        want = load_quantized(out)(**batch).question_answering_score
        for loaded in (LxmertForQuestionAnswering.from_pretrained(out), load_any(out)):
            assert is_quantized(loaded) and loaded.answers == qa_model.answers
            assert torch.equal(loaded(**batch).question_answering_score, want)
    with pytest.raises(CheckpointError, match="int8 LxmertForQuestionAnswering"):
        LxmertForPreTraining.from_pretrained(out)
    with pytest.raises(CheckpointError, match="overrides"):
        LxmertForQuestionAnswering.from_pretrained(out, hidden_dropout_prob=0.0)


def _emulated_linear_dynamic(saturate: bool):
    """An x86 uint8 x int8 kernel in plain torch: activations quantised to [0, 255], products
    summed in pairs into int16 (`vpmaddubsw`, which saturates on CPUs without VNNI) when
    `saturate`, then accumulated in int32."""
    def run(x, packed, reduce_range=True):
        weight, bias = torch.ops.quantized.linear_unpack(packed)
        wq = weight.int_repr().long()
        w_scale = weight.q_per_channel_scales().float()
        lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
        qmax = 127 if reduce_range else 255
        scale = (hi - lo) / qmax
        zero = round(-lo / scale)
        xq = ((x / scale).round() + zero).clamp(0, qmax).long()
        prod = xq[:, None, :] * wq[None]
        pairs = prod[..., 0::2] + prod[..., 1::2]
        if saturate:
            pairs = pairs.clamp(-32768, 32767)
        acc = pairs.sum(-1) - zero * wq.sum(-1)
        return acc.float() * scale * w_scale
    return run


def test_full_range_probe_tells_a_saturating_kernel_from_an_exact_one():
    # the probe's inputs overflow an int16 pair sum: a non-VNNI kernel is off by ~50%
    assert lq.probe_error(_emulated_linear_dynamic(saturate=True)) > 0.3
    assert lq.probe_error(_emulated_linear_dynamic(saturate=False)) < 0.01


def test_full_range_decision_matches_what_this_cpus_kernel_does():
    """The real kernel, run on the probe's inputs, must behave like one of the two emulated
    kinds, and the decision must follow which one (checked against the emulations, not
    against the probe's own threshold)."""
    outs = {}

    def spy(x, packed, reduce_range=True):
        outs["real"] = torch.ops.quantized.linear_dynamic(x, packed, reduce_range=reduce_range)
        outs["exact"] = _emulated_linear_dynamic(saturate=False)(x, packed, reduce_range)
        outs["saturating"] = _emulated_linear_dynamic(saturate=True)(x, packed, reduce_range)
        return outs["real"]

    lq.probe_error(spy)
    like_exact = torch.allclose(outs["real"], outs["exact"], rtol=0.02)
    like_saturating = torch.allclose(outs["real"], outs["saturating"], rtol=0.02)
    assert like_exact != like_saturating, outs  # the probe tells the two kinds apart
    assert lq.full_range_is_exact() == like_exact


def test_activation_range_choice(qa_model, monkeypatch):
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    reduced = quantize_model(qa_model, activation_range="reduced")
    assert all(type(m) is dynamic for m in reduced.modules() if isinstance(m, dynamic))  # torch's own module
    assert reduced.config.extra["quantization"]["activations"] == "uint7"
    with pytest.raises(ValueError, match="activation_range"):
        quantize_model(qa_model, activation_range="16bit")
    monkeypatch.setattr(lq, "full_range_is_exact", lambda: False)  # a CPU without VNNI
    with pytest.raises(ValueError, match="saturate"):
        quantize_model(qa_model, activation_range="full")
    assert quantize_model(qa_model).config.extra["quantization"]["activations"] == "uint7"
    monkeypatch.setattr(lq, "full_range_is_exact", lambda: True)
    full = quantize_model(qa_model)
    assert full.config.extra["quantization"]["activations"] == "uint8"
    batches = [_batch(qa_model.config, seed=s) for s in range(4)]
    with torch.inference_mode():
        lin = full.lxmert.encoder.layer[0].intermediate.dense
        x = torch.randn(5, 64)
        want = torch.ops.quantized.linear_dynamic(x, lin._packed_params._packed_params, reduce_range=False)
        assert torch.equal(lin(x), want)
    # one more activation bit: a smaller logit error than torch's 7-bit default
    if lq.probe_error(torch.ops.quantized.linear_dynamic) < 0.01:
        err_full = answer_agreement(qa_model, full, batches).mean_abs_logit_diff
        err_reduced = answer_agreement(qa_model, reduced, batches).mean_abs_logit_diff
        assert err_full < 0.8 * err_reduced


def test_load_quantized_decides_the_activation_range_where_it_loads(qa_model, tmp_path, monkeypatch):
    monkeypatch.setattr(lq, "full_range_is_exact", lambda: True)
    out = save_quantized(quantize_model(qa_model), tmp_path / "q")
    assert json.loads((out / "config.json").read_text())["extra"]["quantization"]["activations"] == "uint8"
    monkeypatch.setattr(lq, "full_range_is_exact", lambda: False)
    model = load_quantized(out)
    assert model.config.extra["quantization"]["activations"] == "uint7"
    assert all(type(m) is torch.ao.nn.quantized.dynamic.Linear for m in model.modules()
               if isinstance(m, torch.ao.nn.quantized.dynamic.Linear))


def test_weight_rounding_model_isolates_the_weights(qa_model):
    int8 = quantize_model(qa_model)
    rounded = weight_rounding_model(qa_model, int8)
    assert not is_quantized(rounded)
    lin = int8.lxmert.encoder.layer[0].output.dense
    w = lin._packed_params._weight_bias()[0].dequantize()
    assert torch.equal(rounded.lxmert.encoder.layer[0].output.dense.weight.detach(), w)
    assert not torch.equal(qa_model.lxmert.encoder.layer[0].output.dense.weight.detach(), w)  # fp32 left alone
    assert rounded.lxmert.embeddings.word_embeddings.weight is not qa_model.lxmert.embeddings.word_embeddings.weight
    with pytest.raises(ValueError, match="no int8"):
        weight_rounding_model(qa_model, qa_model)
