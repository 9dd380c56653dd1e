"""`LxmertForImageTextMatching`: the pre-trained matching head as a retrieval scorer, and the
cached scoring that makes scoring every (image, sentence) pair of a split affordable.

The head is `cls.seq_relationship` (Linear(d, 2) on the pooled output) under the key the
pre-training checkpoints use, so `from_pretrained(pretraining_checkpoint, strict=False)`
keeps the pre-trained head and drops the MLM, object and QA heads. Row `MATCHED` (1) is
"the sentence describes the image", as pre-training's `matched_label`. The score of a pair
is `logits[1] - logits[0]`, the log-odds of "matched": ranking by it is ranking by the
softmax probability, without the probability's saturation at 1.0 (ties at the top).

Cached scoring. The 9 language layers never see the objects and the 5 object-relationship
layers never see the words, so a split of I images and S sentences needs I object
encodings and S language encodings, not I x S of each; only the cross-modality layers,
pooler and head run per pair (`LxmertModel.encode_text` / `encode_objects` / `cross`):

    text = model.encode_text(**text_inputs)          # EncodedText, once per sentence
    images = model.encode_images(**image_inputs)     # EncodedImages, once per image
    grid = score_grid(model, text, images)           # [I, S] scores of every pair

The scores equal `model(**pair_inputs).scores` up to float rounding (tests check 1e-5);
docs/retrieval.md gives the measured speed-up. `cosine_scores` and `attention_scores` are
cheap first-stage scores over the same caches for optional two-stage re-ranking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from lxmert.config import LxmertConfig
from lxmert.modeling.base import LxmertPreTrainedModel
from lxmert.modeling.losses import cross_entropy_ignoring
from lxmert.modeling.lxmert import LxmertModel
from lxmert.modeling.outputs import EncoderOutputs
from lxmert.modeling.registry import register_model

__all__ = [
    "MATCHED", "LxmertForImageTextMatching", "LxmertForImageTextMatchingOutput", "EncodedText", "EncodedImages",
    "match_score", "score_grid", "cosine_scores", "attention_scores",
]

#: the head's "matched" row (pre-training's `matched_label` 1)
MATCHED = 1


def match_score(logits: torch.Tensor) -> torch.Tensor:
    """[..., 2] matching logits -> [...] log-odds of "matched" (float32)."""
    logits = logits.float()
    return logits[..., MATCHED] - logits[..., 1 - MATCHED]


@dataclass
class LxmertForImageTextMatchingOutput(EncoderOutputs):
    loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None
    scores: Optional[torch.Tensor] = None
    pooled_output: Optional[torch.Tensor] = None


@dataclass
class EncodedText:
    """Language-encoder outputs of S sentences: `states` [S, L, d], `mask` [S, L] (1 = word)."""

    states: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return int(self.states.shape[0])

    @staticmethod
    def cat(parts: Sequence["EncodedText"]) -> "EncodedText":
        """One cache from batches of different lengths (right-padded to the longest)."""
        if not parts:
            raise ValueError("no encoded sentences")
        width = max(p.states.shape[1] for p in parts)
        states = torch.cat([nn.functional.pad(p.states, (0, 0, 0, width - p.states.shape[1])) for p in parts])
        mask = torch.cat([nn.functional.pad(p.mask, (0, width - p.mask.shape[1])) for p in parts])
        return EncodedText(states, mask)

    def select(self, index: torch.Tensor) -> "EncodedText":
        """Rows `index`, trimmed to their longest sentence (padding is never attended to)."""
        mask = self.mask[index]
        width = max(1, int(mask.sum(1).max()))
        return EncodedText(self.states[index, :width], mask[:, :width])


@dataclass
class EncodedImages:
    """Object-encoder outputs of I images: `states` [I, N, d], `mask` [I, N] (1 = a real box;
    None when every image has N boxes)."""

    states: torch.Tensor
    mask: torch.Tensor | None

    def __len__(self) -> int:
        return int(self.states.shape[0])

    @staticmethod
    def cat(parts: Sequence["EncodedImages"]) -> "EncodedImages":
        if not parts:
            raise ValueError("no encoded images")
        widths = {p.states.shape[1] for p in parts}
        if len(widths) > 1:
            raise ValueError(f"encoded images have different box counts {sorted(widths)}")
        states = torch.cat([p.states for p in parts])
        if all(p.mask is None for p in parts):
            return EncodedImages(states, None)
        masks = [p.mask if p.mask is not None else torch.ones(p.states.shape[:2], dtype=torch.long,
                                                               device=p.states.device) for p in parts]
        return EncodedImages(states, torch.cat(masks))

    def select(self, index: torch.Tensor) -> "EncodedImages":
        return EncodedImages(self.states[index], None if self.mask is None else self.mask[index])


class MatchingHead(nn.Module):
    """`cls.seq_relationship` alone: the pre-training heads' matching classifier, same key."""

    def __init__(self, config: LxmertConfig) -> None:
        super().__init__()
        self.seq_relationship = nn.Linear(config.hidden_size, 2)


@register_model
class LxmertForImageTextMatching(LxmertPreTrainedModel):
    """Encoder + the matching head: does the sentence describe the image?"""

    def __init__(self, config: LxmertConfig) -> None:
        super().__init__(config)
        self.lxmert = LxmertModel(config)
        self.cls = MatchingHead(config)
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
    ) -> LxmertForImageTextMatchingOutput:
        """The full forward of B pairs: `logits` [B, 2], `scores` [B] (log-odds of matched)
        and, with `labels` (long [B], 1 = matched, 0 = not, -100 = ignore), the
        cross-entropy of the pre-training matching objective."""
        enc = self.lxmert(input_ids, visual_feats, visual_pos, attention_mask, visual_attention_mask,
                          token_type_ids, inputs_embeds, output_attentions, output_hidden_states,
                          first_token_only=not self.training)  # the head reads only the pooled [CLS]
        out = LxmertForImageTextMatchingOutput(**enc.carried("language_output", "vision_output"))
        out.logits = self.cls.seq_relationship(enc.pooled_output)
        out.scores = match_score(out.logits)
        if labels is not None:
            out.loss = cross_entropy_ignoring(out.logits, labels.view(-1))
        return out

    # ------------------------------------------------------------------ the cached path
    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                    token_type_ids: torch.Tensor | None = None) -> EncodedText:
        """The language encoder's outputs of a batch of sentences (`LxmertModel.encode_text`)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        states = self.lxmert.encode_text(input_ids, attention_mask, token_type_ids)
        return EncodedText(states, attention_mask)

    def encode_images(self, visual_feats: torch.Tensor, visual_pos: torch.Tensor,
                      visual_attention_mask: torch.Tensor | None = None) -> EncodedImages:
        """The object encoder's outputs of a batch of images (`LxmertModel.encode_objects`)."""
        states = self.lxmert.encode_objects(visual_feats, visual_pos, visual_attention_mask)
        return EncodedImages(states, visual_attention_mask)

    def cross_logits(self, text: EncodedText, images: EncodedImages) -> torch.Tensor:
        """[P, 2] matching logits of the pairs (text row p, image row p)."""
        enc = self.lxmert.cross(text.states, images.states, text.mask, images.mask)
        return self.cls.seq_relationship(enc.pooled_output)

    def pair_scores(self, text: EncodedText, images: EncodedImages, text_index: torch.Tensor,
                    image_index: torch.Tensor) -> torch.Tensor:
        """[P] scores of the pairs (sentence `text_index[p]`, image `image_index[p]`) from the
        caches: only the cross-modality layers, pooler and head run."""
        if text_index.shape != image_index.shape:
            raise ValueError(f"text_index {tuple(text_index.shape)} and image_index "
                             f"{tuple(image_index.shape)} must pair up one to one")
        return match_score(self.cross_logits(text.select(text_index), images.select(image_index)))


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    return [(i, min(n, i + size)) for i in range(0, n, size)]


def score_grid(model: LxmertForImageTextMatching, text: EncodedText, images: EncodedImages, *,
               pair_batch: int = 1024, sentences_per_block: int = 64) -> torch.Tensor:
    """Scores of every (image, sentence) pair: float32 [I, S] on the CPU.

    Pairs run in batches of about `pair_batch` (blocks of `sentences_per_block`
    sentences x as many images as fit). Sentences are grouped by length and each block is
    trimmed to its longest sentence, so short captions do not pay for long ones' padding.
    """
    if pair_batch < 1 or sentences_per_block < 1:
        raise ValueError(f"pair_batch ({pair_batch}) and sentences_per_block ({sentences_per_block}) must be >= 1")
    n_images, n_text = len(images), len(text)
    out = torch.empty(n_images, n_text, dtype=torch.float32)
    if n_images == 0 or n_text == 0:
        return out
    device = text.states.device
    order = torch.argsort(text.mask.sum(1), stable=True)
    per_block = min(sentences_per_block, n_text)
    images_per_batch = max(1, pair_batch // per_block)
    for s0, s1 in _blocks(n_text, per_block):
        rows = order[s0:s1]
        block = text.select(rows)
        k = s1 - s0
        for i0, i1 in _blocks(n_images, images_per_batch):
            m = i1 - i0
            pairs_text = EncodedText(block.states.repeat(m, 1, 1), block.mask.repeat(m, 1))
            image_rows = torch.arange(i0, i1, device=device).repeat_interleave(k)
            scores = match_score(model.cross_logits(pairs_text, images.select(image_rows)))
            out[i0:i1, rows.cpu()] = scores.view(m, k).cpu()
    return out


def _masked_mean(states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    states = states.float()
    if mask is None:
        return states.mean(1)
    weight = mask.to(states.dtype).unsqueeze(-1)
    return (states * weight).sum(1) / weight.sum(1).clamp(min=1.0)


def cosine_scores(text: EncodedText, images: EncodedImages) -> torch.Tensor:
    """First-stage score: cosine of the mean single-modality outputs, float32 [I, S] on the
    CPU. Nothing in pre-training aligns the two encoders' spaces, so this is a weak filter
    (docs/retrieval.md measures what it loses)."""
    t = nn.functional.normalize(_masked_mean(text.states, text.mask), dim=-1)
    v = nn.functional.normalize(_masked_mean(images.states, images.mask), dim=-1)
    return (v @ t.T).cpu()


def attention_scores(model: LxmertForImageTextMatching, text: EncodedText, images: EncodedImages, *,
                     sentences_per_block: int | None = None, block_elements: int = 1 << 26) -> torch.Tensor:
    """First-stage score: how strongly the words attend to the objects in the FIRST
    cross-modality layer, float32 [I, S] on the CPU.

    That layer's shared projection turns the cached single-modality outputs into queries
    (words) and keys (objects) that pre-training trained to align; the score is, over the
    sentence's words, the mean of the best object's scaled dot product q.k / sqrt(d_head).
    It costs one [L x N] product per pair instead of the cross layers' forward. Sentences
    go in blocks whose [I, block, L, N] products hold at most `block_elements` numbers
    (unless `sentences_per_block` is given).
    """
    att = model.lxmert.encoder.x_layers[0].visual_attention.att
    d = att.hidden_size
    weight, bias = att.qkv.weight.float(), att.qkv.bias.float()
    q = text.states.float() @ weight[:d].T + bias[:d]                  # [S, L, d]
    k = images.states.float() @ weight[d:2 * d].T + bias[d:2 * d]      # [I, N, d]
    scale = 1.0 / math.sqrt(att.head_dim)
    word = text.mask.to(q.dtype)                                       # [S, L]
    out = torch.empty(len(images), len(text), dtype=torch.float32)
    if sentences_per_block is None:
        per_sentence = len(images) * q.shape[1] * k.shape[1]
        sentences_per_block = max(1, block_elements // max(1, per_sentence))
    for s0, s1 in _blocks(len(text), sentences_per_block):
        dots = torch.einsum("sld,ind->isln", q[s0:s1], k) * scale      # [I, s, L, N]
        if images.mask is not None:
            # a finite floor, not -inf: an image without boxes must not turn the mean into NaN
            dots = dots.masked_fill(~images.mask.bool()[:, None, None, :], -1e4)
        best = dots.amax(-1)                                           # [I, s, L]
        w = word[s0:s1]
        out[:, s0:s1] = ((best * w).sum(-1) / w.sum(-1).clamp(min=1.0)).cpu()
    return out
