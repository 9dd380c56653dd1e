"""Checkpoint interop: authors' layout <-> ours <-> Hugging Face, safety, remapping."""

import json
import pickle
import subprocess
import sys

import pytest
import torch

from lxmert import (AnswerTable, LxmertConfig, LxmertForNLVR2, LxmertForPreTraining,
                    LxmertForQuestionAnswering, LxmertModel)
from lxmert.checkpoint import read_state_dict, to_original_state
from lxmert.checkpoint.export import export_hf
from lxmert.errors import CheckpointError
from lxmert.cli import main as cli_main

SMALL = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, l_layers=2, r_layers=1,
             x_layers=2, visual_feat_dim=24, num_qa_labels=9500, num_object_labels=30,
             num_attr_labels=10, vocab_size=200)


def small_pretrain() -> LxmertForPreTraining:
    torch.manual_seed(0)
    model = LxmertForPreTraining(LxmertConfig(**SMALL))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model


def canonical_state(model):
    return model.canonical_state()


def hf_export(model, path):
    return export_hf(path, model.canonical_state(), model.config, type(model).__name__,
                     answers=getattr(model, "answers", None))


def authors_pth(model, path, module_prefix=True):
    state = to_original_state(canonical_state(model))
    if module_prefix:
        state = {"module." + k: v for k, v in state.items()}
    torch.save(state, path)
    return path


def assert_same_state(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("module_prefix", [True, False])
def test_round_trip_authors_ours_hf_ours_bit_exact(tmp_path, module_prefix):
    model = small_pretrain()
    src = authors_pth(model, tmp_path / "Epoch20_LXRT.pth", module_prefix)
    assert cli_main(["convert", str(src), str(tmp_path / "ours1"), "--num-attention-heads", "2"]) == 0
    assert cli_main(["convert", str(tmp_path / "ours1"), str(tmp_path / "hf"), "--to", "hf"]) == 0
    assert cli_main(["convert", str(tmp_path / "hf"), str(tmp_path / "ours2")]) == 0
    s0 = canonical_state(model)
    s1 = read_state_dict(tmp_path / "ours1")
    s2 = read_state_dict(tmp_path / "ours2")
    assert_same_state(s0, s1)
    assert_same_state(s1, s2)
    # and back to the authors' layout, identical to the original file
    assert cli_main(["convert", str(tmp_path / "ours2"), str(tmp_path / "back.pth"), "--to", "original"]) == 0
    original = {k.removeprefix("module."): v for k, v in torch.load(src, weights_only=True).items()}
    assert_same_state(original, torch.load(tmp_path / "back.pth", weights_only=True))


def test_hf_export_loads_in_transformers_without_missing_keys(tmp_path):
    transformers = pytest.importorskip("transformers")
    model = small_pretrain().eval()
    hf_export(model, tmp_path / "hf")
    hf, info = transformers.LxmertForPreTraining.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    qa = LxmertForQuestionAnswering.from_pretrained(tmp_path / "hf", strict=False).eval()
    hf_export(qa, tmp_path / "hf_qa")
    hf_qa, info = transformers.LxmertForQuestionAnswering.from_pretrained(tmp_path / "hf_qa", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    inputs = dict(input_ids=torch.tensor([[101, 7, 8, 102]]), visual_feats=torch.rand(1, 5, 24),
                  visual_pos=torch.rand(1, 5, 4))
    with torch.no_grad():
        a = hf.eval()(**inputs).prediction_logits
        b = model(**inputs).prediction_logits
    assert (a - b).abs().max() < 1e-5


def test_authors_finetuned_vqa_and_nlvr2_layouts(tmp_path):
    cfg = LxmertConfig(**{**SMALL, "num_qa_labels": 7})
    qa = LxmertForQuestionAnswering(cfg)
    state = to_original_state(canonical_state(qa))
    assert any(k.startswith("lxrt_encoder.model.bert.") for k in state) and "logit_fc.3.weight" in state
    torch.save(state, tmp_path / "BEST.pth")
    loaded = LxmertForQuestionAnswering.from_pretrained(tmp_path / "BEST.pth", num_attention_heads=2)
    assert_same_state(canonical_state(qa), canonical_state(loaded))

    nlvr = LxmertForNLVR2(cfg)
    torch.save(to_original_state(canonical_state(nlvr)), tmp_path / "nlvr2.pth")
    loaded = LxmertForNLVR2.from_pretrained(tmp_path / "nlvr2.pth", num_attention_heads=2)
    assert_same_state(canonical_state(nlvr), canonical_state(loaded))


def test_models_with_fewer_heads_load_and_new_heads_stay_fresh(tmp_path):
    model = small_pretrain()
    model.save_pretrained(tmp_path / "pre")
    enc = LxmertModel.from_pretrained(tmp_path / "pre")
    assert torch.equal(enc.pooler.dense.weight, model.lxmert.pooler.dense.weight)
    with pytest.raises(CheckpointError, match="holds a LxmertForPreTraining, not a LxmertForNLVR2"):
        LxmertForNLVR2.from_pretrained(tmp_path / "pre")  # a head of another task is never made up silently
    nlvr = LxmertForNLVR2.from_pretrained(tmp_path / "pre", strict=False)  # encoder only, head freshly initialised
    assert torch.equal(nlvr.lxmert.embeddings.word_embeddings.weight, model.lxmert.embeddings.word_embeddings.weight)
    assert nlvr.logit_fc[0].weight.shape == (64, 64)


def test_answer_head_remapped_by_normalised_text(tmp_path):
    model = small_pretrain()
    model.save_pretrained(tmp_path / "pre")
    pretrain = AnswerTable.from_name("pretrain")
    target = ["two", "The man", "zzz-unknown-answer", "gray", "yes"]
    qa = LxmertForQuestionAnswering.from_pretrained(tmp_path / "pre", answers=target, strict=False)
    assert qa.config.num_qa_labels == 5 and qa.answers == target
    w_src = model.answer_head.logit_fc[3].weight
    b_src = model.answer_head.logit_fc[3].bias
    w, b = qa.answer_head.logit_fc[3].weight, qa.answer_head.logit_fc[3].bias
    for row, src in enumerate(["2", "man", None, "gray", "yes"]):
        if src is None:
            assert torch.all(w[row] == 0) and b[row] == 0
        else:
            assert torch.equal(w[row], w_src[pretrain.index(src)]) and b[row] == b_src[pretrain.index(src)]
    # the answer list travels with the checkpoint
    qa.save_pretrained(tmp_path / "qa")
    again = LxmertForQuestionAnswering.from_pretrained(tmp_path / "qa")
    assert again.answers == target


class Evil:
    def __reduce__(self):
        return (eval, ("__import__('os').system('touch /tmp/lxmert_pwned')",))


def test_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"bert.embeddings.word_embeddings.weight": Evil()}, handle)
    with pytest.raises(CheckpointError, match="weights_only"):
        LxmertForPreTraining.from_pretrained(path)


def test_truncated_safetensors_gives_clear_error(tmp_path):
    small_pretrain().save_pretrained(tmp_path / "ck")
    weights = tmp_path / "ck" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="model.safetensors.*truncated or corrupt"):
        LxmertForPreTraining.from_pretrained(tmp_path / "ck")


def test_shape_mismatch_names_key_and_both_shapes(tmp_path):
    small_pretrain().save_pretrained(tmp_path / "ck")
    with pytest.raises(CheckpointError, match=r"visn_fc.visn_fc.weight: checkpoint \(32, 24\) vs model \(32, 99\)"):
        LxmertForPreTraining.from_pretrained(tmp_path / "ck", visual_feat_dim=99)


def test_config_json_round_trip_and_hf_config(tmp_path):
    cfg = LxmertConfig(**SMALL)
    cfg.save_pretrained(tmp_path)
    assert LxmertConfig.from_pretrained(tmp_path) == cfg
    hf_style = {**cfg.to_hf_dict(), "architectures": ["LxmertForPreTraining"], "transformers_version": "4.0",
                "visual_loss_normalizer": 6.67}
    (tmp_path / "config.json").write_text(json.dumps(hf_style))
    read = LxmertConfig.from_pretrained(tmp_path)
    assert read.visual_loss_normalizer == 6.67 and read.hidden_size == 32 and read.extra == {}


def test_inspect_cli(tmp_path):
    small_pretrain().save_pretrained(tmp_path / "ck")
    out = subprocess.run([sys.executable, "-m", "lxmert", "inspect", str(tmp_path / "ck"), "--json"],
                         capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    assert info["model_class"] == "LxmertForPreTraining"
    assert set(info["heads"]) == {"answer_head", "cls", "obj_predict_head"}
    assert info["parameters"]["total"] == small_pretrain().num_parameters()


def test_run_directory_and_last_marker_name_the_newest_checkpoint(tmp_path):
    model = small_pretrain()
    run = tmp_path / "run"
    model.save_pretrained(run / "checkpoints" / "step-00000002")
    (run / "last").write_text("checkpoints/step-00000002\n")
    want = canonical_state(model)
    for path in (run, run / "last"):
        assert_same_state(canonical_state(LxmertForPreTraining.from_pretrained(path)), want)
    (run / "last").write_text("checkpoints/step-00000009\n")
    with pytest.raises(CheckpointError, match="step-00000009, which does not exist"):
        LxmertForPreTraining.from_pretrained(run)
