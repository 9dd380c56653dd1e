"""Input encoders: word pieces (BERT embeddings) and objects (feature + box)."""

from __future__ import annotations

import torch
from torch import nn

from lxmert.config import LxmertConfig


class TextEmbeddings(nn.Module):
    """word + position + token type, LayerNorm, dropout.

    All three tables use `padding_idx=0` as the release did: rows 0 of the position and
    token-type tables never receive gradient. Released weights carry that quirk, so we
    keep it rather than "fix" it and drift from the reference numbers.
    """

    def __init__(self, config: LxmertConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, d, padding_idx=0)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, d, padding_idx=0)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, d, padding_idx=0)
        self.LayerNorm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor | None, token_type_ids: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        seq_len = inputs_embeds.shape[1]
        # Looked up through the Embedding modules (not sliced from .weight) so that the
        # padding_idx gradient rule applies exactly as in the release.
        position_ids = torch.arange(seq_len, device=inputs_embeds.device)
        positions = self.position_embeddings(position_ids).unsqueeze(0)
        if token_type_ids is None:
            token_type_ids = torch.zeros(1, 1, dtype=torch.long, device=inputs_embeds.device)
        types = self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(inputs_embeds + positions + types))


class VisualFeatEncoder(nn.Module):
    """v = (LN(W_f f) + LN(W_b b)) / 2, dropout. Objects get no position/type embedding."""

    def __init__(self, config: LxmertConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.visn_fc = nn.Linear(config.visual_feat_dim, d)
        self.visn_layer_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.box_fc = nn.Linear(config.visual_pos_dim, d)
        self.box_layer_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, visual_feats: torch.Tensor, visual_pos: torch.Tensor) -> torch.Tensor:
        x = self.visn_layer_norm(self.visn_fc(visual_feats))
        y = self.box_layer_norm(self.box_fc(visual_pos))
        return self.dropout((x + y) / 2)
