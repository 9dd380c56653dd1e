"""`LxmertForNLVR2`: one sentence, two images; each (sentence, image) pair is encoded
separately and the two pooled vectors are concatenated for a 2-way classifier."""

from __future__ import annotations

import torch

from lxmert.config import LxmertConfig
from lxmert.modeling.base import LxmertPreTrainedModel
from lxmert.modeling.heads import AnswerHead
from lxmert.modeling.lxmert import LxmertModel
from lxmert.modeling.losses import cross_entropy_ignoring
from lxmert.modeling.outputs import LxmertForNLVR2Output
from lxmert.modeling.registry import register_model


@register_model
class LxmertForNLVR2(LxmertPreTrainedModel):
    def __init__(self, config: LxmertConfig) -> None:
        super().__init__(config)
        self.lxmert = LxmertModel(config)
        d2 = 2 * config.hidden_size
        head = AnswerHead(d2, d2, 2, config.layer_norm_eps)
        self.logit_fc = head.logit_fc  # key names as the release: logit_fc.{0,2,3}
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        visual_feats: torch.Tensor | None = None,
        visual_pos: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        visual_attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> LxmertForNLVR2Output:
        """`visual_feats` [B, 2, N, D], `visual_pos` [B, 2, N, 4]; text inputs [B, L]."""
        if visual_feats is None or visual_feats.dim() != 4 or visual_feats.shape[1] != 2:
            raise ValueError("NLVR2 expects visual_feats of shape [B, 2, N, D]")
        b = visual_feats.shape[0]

        def twice(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.repeat_interleave(2, dim=0)

        def flat(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.reshape(2 * b, *x.shape[2:])

        enc = self.lxmert(twice(input_ids), flat(visual_feats), flat(visual_pos), twice(attention_mask),
                          flat(visual_attention_mask), twice(token_type_ids), twice(inputs_embeds),
                          output_attentions, output_hidden_states,
                          first_token_only=not self.training)  # the head reads only the pooled [CLS]
        pooled = enc.pooled_output.reshape(b, -1)
        out = LxmertForNLVR2Output(**enc.carried("language_output", "vision_output", "pooled_output"))
        out.pooled_output = pooled
        out.logits = self.logit_fc(pooled)
        if labels is not None:
            out.loss = cross_entropy_ignoring(out.logits, labels.view(-1))
        return out
