"""Numerical parity with `transformers`' LXMERT on the same random weights (eval, fp32)."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from lxmert import LxmertConfig, LxmertForPreTraining, LxmertForQuestionAnswering, LxmertModel
from lxmert.checkpoint import canonicalize

TOL = 1e-4
SMALL = dict(hidden_size=64, num_attention_heads=4, intermediate_size=128, l_layers=2, r_layers=2,
             x_layers=2, visual_feat_dim=48, num_qa_labels=17, num_object_labels=23,
             num_attr_labels=11, vocab_size=30522)


def make_inputs(cfg: LxmertConfig, batch=3, length=9, objects=12, visual_mask=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, cfg.vocab_size, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    for row, n in enumerate([length, length - 3, 4][:batch]):
        mask[row, n:] = 0
        ids[row, n:] = 0
    ids[:, 0] = 101
    feats = torch.rand(batch, objects, cfg.visual_feat_dim, generator=g) * 3
    x1y1 = torch.rand(batch, objects, 2, generator=g) * 0.5
    pos = torch.cat([x1y1, x1y1 + torch.rand(batch, objects, 2, generator=g) * 0.5], dim=-1)
    inputs = dict(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids),
                  visual_feats=feats, visual_pos=pos)
    if visual_mask:
        vm = torch.ones(batch, objects)
        vm[0, objects - 4:] = 0
        inputs["visual_attention_mask"] = vm
    return inputs


def hf_pair(hf_cls, our_cls, cfg: LxmertConfig):
    hf = hf_cls(transformers.LxmertConfig(**cfg.to_hf_dict())).eval()
    # give LayerNorms and biases non-trivial values so a swapped parameter cannot hide
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    ours = our_cls(cfg)
    state = canonicalize(hf.state_dict())
    if our_cls is LxmertModel:
        state = {k[len("lxmert."):]: v for k, v in state.items()}
    missing, unexpected = ours.load_state_dict(state, strict=False)
    assert [k for k in missing if k != "cls.predictions.decoder.weight"] == []
    assert unexpected == []
    ours.tie_weights()
    return hf, ours.eval()


def max_diff(a, b):
    if isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        return max(max_diff(x, y) for x, y in zip(a, b))
    return (a - b).abs().max().item()


CONFIGS = {"small": LxmertConfig(**SMALL), "full": LxmertConfig()}


@pytest.mark.parametrize("size", ["small", "full"])
@pytest.mark.parametrize("visual_mask", [False, True])
def test_model_parity(size, visual_mask):
    cfg = CONFIGS[size]
    hf, ours = hf_pair(transformers.LxmertModel, LxmertModel, cfg)
    inputs = make_inputs(cfg, visual_mask=visual_mask)
    with torch.no_grad():
        a = hf(**inputs, output_attentions=True, output_hidden_states=True)
        b = ours(**inputs, output_attentions=True, output_hidden_states=True)
    diffs = {name: max_diff(getattr(a, name), getattr(b, name)) for name in (
        "language_output", "vision_output", "pooled_output", "language_hidden_states",
        "vision_hidden_states", "language_attentions", "vision_attentions", "cross_encoder_attentions")}
    print(size, visual_mask, diffs)
    assert max(diffs.values()) < TOL, diffs
    assert len(b.cross_encoder_vision_attentions) == cfg.x_layers  # transformers has no such output


@pytest.mark.parametrize("size", ["small", "full"])
def test_pretraining_parity_with_loss(size):
    cfg = CONFIGS[size]
    hf, ours = hf_pair(transformers.LxmertForPreTraining, LxmertForPreTraining, cfg)
    inputs = make_inputs(cfg)
    g = torch.Generator().manual_seed(1)
    b, l = inputs["input_ids"].shape
    n = inputs["visual_feats"].shape[1]
    labels = torch.full((b, l), -100)
    labels[:, 1:3] = torch.randint(0, cfg.vocab_size, (b, 2), generator=g)
    obj_labels = {
        "obj": (torch.randint(0, cfg.num_object_labels, (b, n), generator=g), torch.rand(b, n, generator=g)),
        "attr": (torch.randint(0, cfg.num_attr_labels, (b, n), generator=g), torch.rand(b, n, generator=g)),
        "feat": (torch.rand(b, n, cfg.visual_feat_dim, generator=g), (torch.rand(b, n, generator=g) < 0.3).float()),
    }
    targets = dict(labels=labels, obj_labels=obj_labels, matched_label=torch.tensor([1, 0, 1]),
                   ans=torch.tensor([3, 5, 0]))
    with torch.no_grad():
        a = hf(**inputs, **targets)
        o = ours(**inputs, **targets)
        sparse = ours(**inputs, **targets, sparse_mlm=True)
    diffs = {
        "prediction_logits": max_diff(a.prediction_logits, o.prediction_logits),
        "cross_relationship_score": max_diff(a.cross_relationship_score, o.cross_relationship_score),
        "question_answering_score": max_diff(a.question_answering_score, o.question_answering_score),
        "loss": abs(a.loss.item() - o.loss.item()),
        "loss_sparse_mlm": abs(a.loss.item() - sparse.loss.item()),
    }
    print(size, diffs)
    assert max(diffs.values()) < TOL, diffs
    assert sparse.prediction_logits.shape == (int((labels != -100).sum()), cfg.vocab_size)
    # the feature regression is decoded only where its weight is non-zero, same losses
    assert sparse.obj_logits["feat"].shape == (int((obj_labels["feat"][1] != 0).sum()), cfg.visual_feat_dim)
    for key in ("obj", "attr", "feat"):
        assert abs(float(sparse.losses[key]) - float(o.losses[key])) < TOL, key


def test_question_answering_parity():
    cfg = CONFIGS["small"]
    hf, ours = hf_pair(transformers.LxmertForQuestionAnswering, LxmertForQuestionAnswering, cfg)
    inputs = make_inputs(cfg)
    labels = torch.tensor([1, 2, 16])
    with torch.no_grad():
        a = hf(**inputs, labels=labels)
        o = ours(**inputs, labels=labels)
    assert max_diff(a.question_answering_score, o.question_answering_score) < TOL
    assert abs(a.loss.item() - o.loss.item()) < TOL


def test_hf_directory_loads_through_from_pretrained(tmp_path):
    cfg = CONFIGS["small"]
    hf = transformers.LxmertForPreTraining(transformers.LxmertConfig(**cfg.to_hf_dict())).eval()
    hf.save_pretrained(tmp_path / "hf")
    ours = LxmertForPreTraining.from_pretrained(tmp_path / "hf")
    inputs = make_inputs(cfg)
    with torch.no_grad():
        assert max_diff(hf(**inputs).prediction_logits, ours(**inputs).prediction_logits) < TOL
    # a model that needs fewer heads loads from the same directory
    qa = LxmertForQuestionAnswering.from_pretrained(tmp_path / "hf", strict=False)
    enc = LxmertModel.from_pretrained(tmp_path / "hf")
    with torch.no_grad():
        assert max_diff(hf(**inputs).question_answering_score, qa(**inputs).question_answering_score) < TOL
        assert max_diff(hf.lxmert(**inputs).pooled_output, enc(**inputs).pooled_output) < TOL
