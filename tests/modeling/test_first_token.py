"""The first-token path: at inference the pooled heads compute, in the last cross layer, only
the language [CLS] row the pooler reads. Their outputs equal the full forward's (every row,
every stream; what `output_hidden_states=True` runs) to float rounding, with padded words
and padded objects; training and int8 models keep the full forward."""

from __future__ import annotations

import pytest
import torch

from lxmert import LxmertConfig, LxmertForNLVR2, LxmertForQuestionAnswering, LxmertModel
from lxmert.modeling import LxmertForClassification, LxmertForImageTextMatching

TINY = dict(hidden_size=48, num_attention_heads=4, intermediate_size=96, l_layers=2, r_layers=1, x_layers=2,
            visual_feat_dim=24, num_qa_labels=7, vocab_size=200)


def _inputs(b: int = 3, t: int = 9, n: int = 6, pairs: bool = False) -> dict:
    g = torch.Generator().manual_seed(0)
    shape = (b, 2, n) if pairs else (b, n)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[1, 5:] = 0  # a padded sentence
    vmask = torch.ones(shape, dtype=torch.long)
    vmask[0, ..., 4:] = 0  # an image with fewer boxes
    return dict(input_ids=torch.randint(5, 200, (b, t), generator=g), attention_mask=mask,
                visual_feats=torch.randn(*shape, 24, generator=g), visual_pos=torch.rand(*shape, 4, generator=g),
                visual_attention_mask=vmask)


MODELS = {
    "qa": (lambda cfg: LxmertForQuestionAnswering(cfg), "question_answering_score", False),
    "nlvr2": (lambda cfg: LxmertForNLVR2(cfg), "logits", True),
    "classify": (lambda cfg: LxmertForClassification(cfg, labels=["a", "b", "c"]), "logits", False),
    "matching": (lambda cfg: LxmertForImageTextMatching(cfg), "logits", False),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_pooled_heads_equal_the_full_forward(name):
    build, field, pairs = MODELS[name]
    torch.manual_seed(0)
    model = build(LxmertConfig(**TINY)).eval()
    inputs = _inputs(pairs=pairs)
    with torch.no_grad():
        short = model(**inputs)
        full = model(**inputs, output_hidden_states=True)  # every row of every layer
    torch.testing.assert_close(getattr(short, field), getattr(full, field), rtol=1e-5, atol=1e-6)
    assert full.language_hidden_states is not None and short.language_hidden_states is None


def test_the_encoder_returns_only_what_it_computed():
    torch.manual_seed(0)
    model = LxmertModel(LxmertConfig(**TINY)).eval()
    inputs = _inputs()
    with torch.no_grad():
        full = model(**inputs)
        short = model(**inputs, first_token_only=True)
        asked = model(**inputs, first_token_only=True, output_attentions=True)
    assert short.language_output is None and short.vision_output is None
    torch.testing.assert_close(short.pooled_output, full.pooled_output, rtol=1e-5, atol=1e-6)
    assert asked.vision_output is not None and asked.cross_encoder_attentions is not None, \
        "attention maps need every row: the full forward runs"


def test_training_runs_the_full_forward():
    """Fine-tuning keeps every module in the graph (and the dropout draws) as before."""
    torch.manual_seed(0)
    model = LxmertForQuestionAnswering(LxmertConfig(**TINY, hidden_dropout_prob=0.0,
                                                    attention_probs_dropout_prob=0.0)).train()
    out = model(**_inputs(), labels=torch.rand(3, 7))
    out.loss.backward()
    last = model.lxmert.encoder.x_layers[-1]
    assert last.lang_self_att.self.qkv.weight.grad is not None
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model(**_inputs()).question_answering_score,
                                   out.question_answering_score.detach(), rtol=1e-5, atol=1e-6)


def test_int8_models_keep_the_full_forward():
    """Their activations are quantised per tensor, so a [CLS]-only feed-forward would change
    their outputs (and the measured int8 agreement): they run every row."""
    from lxmert.modeling.int8 import quantize_model

    torch.manual_seed(0)
    model = quantize_model(LxmertForQuestionAnswering(LxmertConfig(**TINY)).eval())
    inputs = _inputs()
    with torch.no_grad():
        short = model(**inputs).question_answering_score
        full = model(**inputs, output_hidden_states=True).question_answering_score
    assert torch.equal(short, full)
