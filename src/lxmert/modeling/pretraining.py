"""`LxmertForPreTraining`: the five pre-training objectives and their weighting.

Total loss = MLM + matching + obj + attr + feat + QA (plain sum, as the release). Each
visual loss is (per-object loss x weight).mean() over all B*N objects, times
`visual_loss_normalizer` (1/0.15): obj/attr are weighted by detector confidence on ALL
objects; feat (SmoothL1 averaged over dims) by the chosen-object mask.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from lxmert.checkpoint.files import StoredCheckpoint
from lxmert.config import LxmertConfig
from lxmert.modeling.base import LxmertPreTrainedModel
from lxmert.modeling.heads import AnswerHead, PreTrainingHeads, VisualObjHead
from lxmert.modeling.losses import IGNORE_INDEX, cross_entropy_ignoring
from lxmert.modeling.lxmert import LxmertModel
from lxmert.modeling.outputs import LxmertForPreTrainingOutput
from lxmert.modeling.question_answering import adapt_answer_head
from lxmert.modeling.registry import register_model


@register_model
class LxmertForPreTraining(LxmertPreTrainedModel):
    def __init__(self, config: LxmertConfig) -> None:
        super().__init__(config)
        #: names of the QA head's rows (saved as answers.json), when known
        self.answers: list[str] | None = None
        self.lxmert = LxmertModel(config)
        self.cls = PreTrainingHeads(config)
        if config.task_obj_predict:
            self.obj_predict_head = VisualObjHead(config)
        if config.task_qa:
            d = config.hidden_size
            self.answer_head = AnswerHead(d, 2 * d, config.num_qa_labels, config.layer_norm_eps)
        self.init_weights()

    def tie_weights(self) -> None:
        self.cls.predictions.decoder.weight = self.lxmert.embeddings.word_embeddings.weight

    @classmethod
    def from_checkpoint(cls, config: LxmertConfig, state: dict[str, torch.Tensor],
                        stored: StoredCheckpoint, *, answers: Any = None,
                        **options: Any) -> tuple["LxmertForPreTraining", dict[str, torch.Tensor]]:
        """`answers`: the answer list the QA head should have (rows remapped by answer text
        from the checkpoint's own list); the model keeps its table in `.answers`."""
        if options:
            raise TypeError(f"LxmertForPreTraining.from_pretrained() got unexpected options {sorted(options)}")
        rows = None
        if config.task_qa:
            config, state, rows = adapt_answer_head(config, state, stored, answers)
        model = cls(config)
        model.answers = rows
        return model, state

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
        obj_labels: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
        matched_label: torch.Tensor | None = None,
        ans: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        sparse_mlm: bool = False,
        loss_weights: dict[str, float] | None = None,
    ) -> LxmertForPreTrainingOutput:
        """`sparse_mlm=True` computes word logits only where `labels != -100` (the
        30522-way decoder is the single largest GEMM of the step, and ~85% of its rows
        are thrown away otherwise); `prediction_logits` is then [n_masked, vocab].
        Likewise, with `obj_labels` given, the 2048-d feature regression is decoded only
        for objects of non-zero weight (the masked ~15%; the loss of the others is
        multiplied by 0) and `obj_logits["feat"]` is [n_chosen, feat_dim]; the label and
        attribute losses apply to all objects (the release's choice) and stay dense.
        The losses equal the dense ones up to float summation order.

        `loss_weights` (e.g. {"matched": 4.0}) scales named losses in `loss`; the release
        sums them unweighted (the default), `losses` always holds the unweighted values."""
        cfg = self.config
        enc = self.lxmert(input_ids, visual_feats, visual_pos, attention_mask, visual_attention_mask,
                          token_type_ids, inputs_embeds, output_attentions, output_hidden_states)
        lang, visn, pooled = enc.language_output, enc.vision_output, enc.pooled_output
        out = LxmertForPreTrainingOutput(**enc.carried())
        losses: dict[str, torch.Tensor] = {}

        if sparse_mlm and labels is not None:
            chosen = labels != IGNORE_INDEX
            out.prediction_logits = self.cls.predictions(lang[chosen])
            if cfg.task_mask_lm:
                losses["mlm"] = cross_entropy_ignoring(out.prediction_logits, labels[chosen])
        else:
            out.prediction_logits = self.cls.predictions(lang)
            if labels is not None and cfg.task_mask_lm:
                losses["mlm"] = cross_entropy_ignoring(out.prediction_logits.view(-1, cfg.vocab_size), labels.view(-1))

        out.cross_relationship_score = self.cls.seq_relationship(pooled)
        if matched_label is not None and cfg.task_matched:
            losses["matched"] = cross_entropy_ignoring(out.cross_relationship_score, matched_label.view(-1))

        if cfg.task_obj_predict:
            sparse_feat = sparse_mlm and obj_labels is not None and "feat" in obj_labels \
                and "feat" in self.obj_predict_head.decoder_dict
            if sparse_feat:
                head = self.obj_predict_head
                hidden = head.transform(visn)
                feat_chosen = obj_labels["feat"][1].reshape(-1) != 0
                out.obj_logits = {key: (decoder(hidden.reshape(-1, hidden.shape[-1])[feat_chosen])
                                        if key == "feat" else decoder(hidden))
                                  for key, decoder in head.decoder_dict.items()}
            else:
                out.obj_logits = self.obj_predict_head(visn)
            if obj_labels is not None:
                for key, logits in out.obj_logits.items():
                    if key not in obj_labels:
                        continue
                    target, weight = obj_labels[key]
                    flat = logits.reshape(-1, logits.shape[-1]).float()
                    weight = weight.reshape(-1).float()
                    total_objects = weight.shape[0]  # the mean runs over all B*N objects either way
                    if key == "feat":
                        target = target.reshape(total_objects, -1).float()
                        if sparse_feat:
                            target, weight = target[feat_chosen], weight[feat_chosen]
                        per_obj = F.smooth_l1_loss(flat, target, reduction="none").mean(dim=1)
                    else:
                        per_obj = F.cross_entropy(flat, target.reshape(-1), reduction="none")
                    losses[key] = (per_obj * weight).sum() / total_objects * cfg.visual_loss_normalizer

        if cfg.task_qa:
            out.question_answering_score = self.answer_head(pooled)
            if ans is not None:
                losses["qa"] = cross_entropy_ignoring(out.question_answering_score, ans.view(-1))

        if losses:
            scale = loss_weights or {}
            out.loss = torch.stack([v * float(scale[k]) if k in scale else v for k, v in losses.items()]).sum()
            out.losses = {k: v.detach() for k, v in losses.items()}
        out.language_output, out.vision_output, out.pooled_output = lang, visn, pooled
        return out
