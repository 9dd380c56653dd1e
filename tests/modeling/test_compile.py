"""The model traces into one graph under `torch.compile` (the GPU path's optional compile).

`backend="aot_eager"` traces and runs the captured graph without generating C++/Triton
code, so this needs no compiler; `fullgraph=True` turns any graph break into an error (the
attention mask's "is anything masked?" test used to be one).
"""

from __future__ import annotations

import torch

from lxmert import LxmertConfig, LxmertForQuestionAnswering


def test_qa_model_compiles_to_one_graph_with_and_without_padding():
    cfg = LxmertConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64, l_layers=1, x_layers=1,
                       r_layers=1, visual_feat_dim=16, num_qa_labels=5, vocab_size=100)
    torch.manual_seed(0)
    model = LxmertForQuestionAnswering(cfg).eval()
    ids = torch.randint(5, 100, (3, 7))
    padded = torch.ones(3, 7, dtype=torch.long)
    padded[0, 5:] = 0
    feats, boxes = torch.randn(3, 4, 16), torch.rand(3, 4, 4)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.inference_mode():
        for mask in (padded, torch.ones_like(padded)):
            eager = model(input_ids=ids, attention_mask=mask, visual_feats=feats, visual_pos=boxes)
            traced = compiled(input_ids=ids, attention_mask=mask, visual_feats=feats, visual_pos=boxes)
            torch.testing.assert_close(traced.question_answering_score, eager.question_answering_score,
                                       rtol=1e-5, atol=1e-6)
    torch._dynamo.reset()
