"""The benchmarks' FLOP count and input builders are right (they feed docs/benchmarks.md)."""

import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import common  # noqa: E402

from lxmert import LxmertConfig, LxmertForPreTraining, LxmertForQuestionAnswering, LxmertModel  # noqa: E402
from lxmert.text import LxmertTokenizer  # noqa: E402

SMALL = dict(hidden_size=64, num_attention_heads=4, intermediate_size=128, l_layers=2, r_layers=1, x_layers=2,
             visual_feat_dim=48, num_qa_labels=17, num_object_labels=23, num_attr_labels=11)


def _inputs(cfg, b=3, length=9, n=12):
    ids = torch.randint(1000, 2000, (b, length))
    return dict(input_ids=ids, visual_feats=torch.rand(b, n, cfg.visual_feat_dim), visual_pos=torch.rand(b, n, 4))


def _counted(model, **kwargs):
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(**kwargs)
    return counter.get_total_flops()


def test_forward_flops_match_torch_flop_counter():
    cfg = LxmertConfig(**SMALL)
    inputs = _inputs(cfg)
    model = LxmertModel(cfg).eval()
    # SDPA's CPU kernel is opaque to FlopCounterMode: compare the GEMMs alone ...
    assert _counted(model, **inputs) == common.step_flops(cfg, [9] * 3, 12, attention=False)
    # ... and with the eager attention path (output_attentions) the products are counted too
    assert _counted(model, **inputs, output_attentions=True) == common.step_flops(cfg, [9] * 3, 12)


def test_head_flops_match_torch_flop_counter():
    cfg = LxmertConfig(**SMALL)
    inputs = _inputs(cfg)
    qa = LxmertForQuestionAnswering(cfg).eval()
    # at inference the QA head runs the first-token path; with hidden states, every row
    assert _counted(qa, **inputs) == common.step_flops(cfg, [9] * 3, 12, heads=["qa"], attention=False,
                                                       first_token=True)
    assert _counted(qa, **inputs, output_hidden_states=True) == common.step_flops(cfg, [9] * 3, 12, heads=["qa"],
                                                                                  attention=False)
    assert _counted(qa, **inputs, output_attentions=True) == common.step_flops(cfg, [9] * 3, 12, heads=["qa"])
    pre = LxmertForPreTraining(cfg).eval()
    labels = torch.full((3, 9), -100)
    labels[0, 2] = labels[1, 4] = labels[2, 1] = 5
    expected = common.step_flops(cfg, [9] * 3, 12, mlm_rows=[1, 1, 1], heads=["mlm", "matched", "obj", "qa"],
                                 attention=False)
    assert _counted(pre, **inputs, labels=labels, sparse_mlm=True) == expected
    # with object targets the feature regression runs on the chosen objects only
    chosen = torch.zeros(3, 12)
    chosen[0, :2] = chosen[2, 5] = 1
    obj_labels = {"obj": (torch.zeros(3, 12, dtype=torch.long), torch.ones(3, 12)),
                  "attr": (torch.zeros(3, 12, dtype=torch.long), torch.ones(3, 12)),
                  "feat": (inputs["visual_feats"], chosen)}
    expected = common.step_flops(cfg, [9] * 3, 12, mlm_rows=[1, 1, 1], heads=["mlm", "matched", "obj", "qa"],
                                 attention=False, feat_rows=[2, 0, 1])
    assert _counted(pre, **inputs, labels=labels, obj_labels=obj_labels, sparse_mlm=True) == expected
    assert common.step_flops(cfg, [9], 12, training=True) == 3 * common.step_flops(cfg, [9], 12)
    with pytest.raises(ValueError, match="unknown heads"):
        common.forward_flops(cfg, 9, 12, heads=["nope"])


def test_text_batches_same_sentences_less_padding():
    tok = LxmertTokenizer.from_vocab()
    sentences = common.SentenceSampler(tok, seed=1).sentences(16 * 10, "vqa_question")
    tb = common.text_batches(tok, sentences, batch_size=16, n_batches=6)
    assert len(tb.ours) == len(tb.theirs) == 6
    assert all(b["input_ids"].shape == (16, 20) for b in tb.theirs)
    pad = real = 0
    for b in tb.ours:  # dynamic padding: the longest row fills the batch, masks mark real ids
        lengths = b["attention_mask"].sum(1)
        assert int(lengths.max()) == b["input_ids"].shape[1]
        assert bool((b["input_ids"][b["attention_mask"] == 0] == 0).all())
        real += int(lengths.sum())
        pad += b["input_ids"].numel() - int(lengths.sum())
    assert pad < 0.1 * real  # bucketed: little padding left (padded to 20 it is ~100%)
    assert tb.mean_padded_ours < 15 < tb.mean_padded_theirs
    assert 7 < tb.mean_pieces < 12  # VQA-like questions: ~6 words + [CLS] [SEP]


def test_pretraining_targets_follow_the_release_masking():
    cfg = LxmertConfig(**SMALL)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 2000, (64, 12))
    ids[:, 0], ids[:, -1] = 101, 102
    mask = torch.ones_like(ids)
    mask[:8, 6:] = 0
    ids[:8, 6:] = 0
    feats = torch.rand(64, 10, cfg.visual_feat_dim) + 0.5
    t = common.pretraining_targets(ids, mask, feats, cfg, g)
    chosen = t["labels"] != -100
    assert not bool(chosen[:, 0].any() or chosen[:, -1].any() or chosen[mask == 0].any())
    assert 0.08 < float(chosen.float().mean()) < 0.22
    assert bool((t["labels"][chosen] == ids[chosen]).all())
    assert bool((t["input_ids"][~chosen] == ids[~chosen]).all())
    assert t["obj_labels"]["feat"][0] is feats
    assert set(t["ans"][t["matched_label"] == 0].tolist()) <= {-100}
    assert int(t["ans"][0]) >= 0


def test_alternate_flips_order_and_counts():
    calls = []
    timings = common.alternate({"a": lambda i: calls.append(("a", i)), "b": lambda i: calls.append(("b", i))},
                               reps=3, warmup=1, samples_per_call=4)
    assert calls == [("a", -1), ("b", -1), ("a", 0), ("b", 0), ("b", 1), ("a", 1), ("a", 2), ("b", 2)]
    assert len(timings["a"].seconds) == 3 and timings["a"].samples_per_s > 0


def test_hf_twin_holds_the_same_weights():
    transformers = pytest.importorskip("transformers")  # noqa: F841
    cfg = LxmertConfig(**SMALL)
    ours = LxmertForQuestionAnswering(cfg).eval()
    theirs = common.hf_model_from_ours(ours, "LxmertForQuestionAnswering").eval()
    inputs = _inputs(cfg)
    with torch.no_grad():
        diff = (ours(**inputs).question_answering_score - theirs(**inputs).question_answering_score).abs().max()
    assert float(diff) < 1e-4
