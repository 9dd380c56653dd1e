"""`LxmertModel`: language encoder, object-relationship encoder, cross-modality encoder, pooler.

Read top to bottom: embeddings -> 9 BERT layers over words and 5 over objects, in
parallel -> 5 cross-modality layers -> tanh pooler on the language [CLS]. The model never
reads files, tokenizes or knows about tasks.
"""

from __future__ import annotations

import torch
from torch import nn

from lxmert.config import LxmertConfig
from lxmert.modeling.attention import additive_mask
from lxmert.modeling.base import LxmertPreTrainedModel
from lxmert.modeling.embeddings import TextEmbeddings, VisualFeatEncoder
from lxmert.modeling.layers import BertLayer, CrossModalityLayer
from lxmert.modeling.outputs import LxmertModelOutput
from lxmert.modeling.registry import register_model


class LxmertEncoder(nn.Module):
    def __init__(self, config: LxmertConfig) -> None:
        super().__init__()
        self.visn_fc = VisualFeatEncoder(config)
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.l_layers))
        self.r_layers = nn.ModuleList(BertLayer(config) for _ in range(config.r_layers))
        self.x_layers = nn.ModuleList(CrossModalityLayer(config) for _ in range(config.x_layers))

    def forward(
        self,
        lang: torch.Tensor,
        lang_mask: torch.Tensor | None,
        visual_feats: torch.Tensor,
        visual_pos: torch.Tensor,
        visn_mask: torch.Tensor | None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        first_token_only: bool = False,
    ) -> LxmertModelOutput:
        """`first_token_only`: the last cross layer computes only the language [CLS] row
        (`CrossModalityLayer.first_token`); `language_output` is then that row, [B, 1, d],
        and `vision_output` None. Ignored when hidden states or attention maps are asked
        for (they need every row)."""
        # int8 layers (dynamically quantised Linear, not an nn.Linear) quantise activations
        # per tensor: a [CLS]-only feed-forward would get another scale than the whole
        # layer's (outputs move by ~1e-4, the measured answer agreement with them), so
        # they keep the full forward
        first_token_only = (first_token_only and not (output_attentions or output_hidden_states)
                            and isinstance(self.x_layers[-1].lang_inter.dense, nn.Linear))
        out = LxmertModelOutput()
        keep = output_hidden_states
        lang_states: list[torch.Tensor] = []
        visn_states: list[torch.Tensor] = []
        maps: dict[str, list[torch.Tensor]] = {k: [] for k in (
            "language_attentions", "vision_attentions", "cross_encoder_attentions",
            "cross_encoder_vision_attentions", "cross_language_attentions", "cross_vision_attentions")}

        visn = self.visn_fc(visual_feats, visual_pos)
        for layer in self.layer:
            lang, probs = layer(lang, lang_mask, output_attentions)
            if keep:
                lang_states.append(lang)
            if output_attentions:
                maps["language_attentions"].append(probs)
        for layer in self.r_layers:
            visn, probs = layer(visn, visn_mask, output_attentions)
            if keep:
                visn_states.append(visn)
            if output_attentions:
                maps["vision_attentions"].append(probs)
        last = len(self.x_layers) - 1
        for i, layer in enumerate(self.x_layers):
            if first_token_only and i == last:
                out.language_output = layer.first_token(lang, lang_mask, visn, visn_mask)
                return out
            lang, visn, (l2v, v2l, lp, vp) = layer(lang, lang_mask, visn, visn_mask, output_attentions)
            if keep:
                lang_states.append(lang)
                visn_states.append(visn)
            if output_attentions:
                maps["cross_encoder_attentions"].append(l2v)
                maps["cross_encoder_vision_attentions"].append(v2l)
                maps["cross_language_attentions"].append(lp)
                maps["cross_vision_attentions"].append(vp)

        out.language_output, out.vision_output = lang, visn
        if keep:
            out.language_hidden_states = tuple(lang_states)
            out.vision_hidden_states = tuple(visn_states)
        if output_attentions:
            for name, values in maps.items():
                setattr(out, name, tuple(values))
        return out

    # The three stages on their own, for callers that reuse one modality's encoding across
    # many pairs (image-text retrieval scores every sentence against every image; the
    # language and object encoders never see the other modality, so each sentence and
    # each image is encoded once). Same modules, same order as `forward`.
    def encode_language(self, lang: torch.Tensor, lang_mask: torch.Tensor | None) -> torch.Tensor:
        """The language layers over embedded words ([B, L, d] -> [B, L, d])."""
        for layer in self.layer:
            lang, _ = layer(lang, lang_mask)
        return lang

    def encode_objects(self, visual_feats: torch.Tensor, visual_pos: torch.Tensor,
                       visn_mask: torch.Tensor | None) -> torch.Tensor:
        """Feature/box encoder and object-relationship layers ([B, N, D] -> [B, N, d])."""
        visn = self.visn_fc(visual_feats, visual_pos)
        for layer in self.r_layers:
            visn, _ = layer(visn, visn_mask)
        return visn

    def cross(self, lang: torch.Tensor, lang_mask: torch.Tensor | None, visn: torch.Tensor,
              visn_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The cross-modality layers over single-modality outputs."""
        for layer in self.x_layers:
            lang, visn, _ = layer(lang, lang_mask, visn, visn_mask)
        return lang, visn


class LxmertPooler(nn.Module):
    def __init__(self, config: LxmertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, language_output: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(language_output[:, 0]))


def _check_inputs(input_ids, inputs_embeds, visual_feats, visual_pos, config: LxmertConfig) -> None:
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids and inputs_embeds")
    if visual_feats is None or visual_pos is None:
        raise ValueError("visual_feats and visual_pos are required")
    if visual_feats.shape[-1] != config.visual_feat_dim:
        raise ValueError(f"visual_feats last dim {visual_feats.shape[-1]} != "
                         f"config.visual_feat_dim {config.visual_feat_dim}")
    if visual_pos.shape[-1] != config.visual_pos_dim or visual_pos.shape[:-1] != visual_feats.shape[:-1]:
        raise ValueError(f"visual_pos shape {tuple(visual_pos.shape)} does not match "
                         f"visual_feats {tuple(visual_feats.shape)} / visual_pos_dim {config.visual_pos_dim}")


@register_model
class LxmertModel(LxmertPreTrainedModel):
    """The LXMERT encoder: returns language, object and pooled representations."""

    encoder_prefix = ""

    def __init__(self, config: LxmertConfig) -> None:
        super().__init__(config)
        self.embeddings = TextEmbeddings(config)
        self.encoder = LxmertEncoder(config)
        self.pooler = LxmertPooler(config)
        self.init_weights()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        visual_feats: torch.Tensor | None = None,
        visual_pos: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        visual_attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        first_token_only: bool = False,
    ) -> LxmertModelOutput:
        """`inputs_embeds` are word embeddings BEFORE position/type are added (used by
        adversarial training to perturb words as VILLA does).

        `first_token_only=True` (what the pooled heads pass at inference) computes only what
        `pooled_output` needs: the last cross layer's object stream and its other word rows
        are skipped, and `language_output` / `vision_output` are None. The pooled output
        equals the full forward's up to float rounding (tests/modeling/test_first_token.py).
        int8 models always run the full forward."""
        _check_inputs(input_ids, inputs_embeds, visual_feats, visual_pos, self.config)
        lang = self.embeddings(input_ids, token_type_ids, inputs_embeds)
        dtype = lang.dtype
        lang_mask = additive_mask(attention_mask, dtype)
        visn_mask = additive_mask(visual_attention_mask, dtype)
        out = self.encoder(lang, lang_mask, visual_feats, visual_pos, visn_mask,
                           output_attentions, output_hidden_states, first_token_only)
        out.pooled_output = self.pooler(out.language_output)
        if out.vision_output is None:  # the first-token path: only [CLS] was computed
            out.language_output = None
        return out

    # ------------------------------------------------------------------ one modality at a time
    def encode_text(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Embeddings and the language layers only: [B, L, d], what the cross-modality
        layers receive as language input. The language layers never attend to objects, so
        this is the same for every image a sentence is paired with: encode it once and pass
        it to `cross` for each image."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        lang = self.embeddings(input_ids, token_type_ids, inputs_embeds)
        return self.encoder.encode_language(lang, additive_mask(attention_mask, lang.dtype))

    def encode_objects(
        self,
        visual_feats: torch.Tensor,
        visual_pos: torch.Tensor,
        visual_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The object encoder and the object-relationship layers only: [B, N, d], the
        cross-modality layers' object input; like `encode_text`, independent of the
        sentence."""
        cfg = self.config
        if visual_feats.shape[-1] != cfg.visual_feat_dim:
            raise ValueError(f"visual_feats last dim {visual_feats.shape[-1]} != "
                             f"config.visual_feat_dim {cfg.visual_feat_dim}")
        if visual_pos.shape[-1] != cfg.visual_pos_dim or visual_pos.shape[:-1] != visual_feats.shape[:-1]:
            raise ValueError(f"visual_pos shape {tuple(visual_pos.shape)} does not match "
                             f"visual_feats {tuple(visual_feats.shape)} / visual_pos_dim {cfg.visual_pos_dim}")
        dtype = self.embeddings.LayerNorm.weight.dtype
        return self.encoder.encode_objects(visual_feats, visual_pos, additive_mask(visual_attention_mask, dtype))

    def cross(
        self,
        language_states: torch.Tensor,
        vision_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        visual_attention_mask: torch.Tensor | None = None,
    ) -> LxmertModelOutput:
        """Cross-modality layers and pooler over the outputs of `encode_text` and
        `encode_objects` (row i of each is one pair); `language_output`, `vision_output`
        and `pooled_output` equal `forward`'s on the same pairs up to float rounding
        (padding beyond a sentence's or an image's mask changes nothing else)."""
        if language_states.shape[0] != vision_states.shape[0]:
            raise ValueError(f"{language_states.shape[0]} sentences vs {vision_states.shape[0]} images: "
                             f"cross() takes one (sentence, image) pair per row")
        dtype = language_states.dtype
        lang, visn = self.encoder.cross(language_states, additive_mask(attention_mask, dtype), vision_states,
                                        additive_mask(visual_attention_mask, dtype))
        return LxmertModelOutput(language_output=lang, vision_output=visn, pooled_output=self.pooler(lang))
