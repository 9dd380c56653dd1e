"""The matching model and its cached path: single-modality encodings reused across pairs
give the scores of the full forward; pre-training checkpoints keep their matching head."""

from __future__ import annotations

import logging

import pytest
import torch

from lxmert.config import LxmertConfig
from lxmert.errors import CheckpointError
from lxmert.modeling import (LxmertForImageTextMatching, LxmertForPreTraining, LxmertForQuestionAnswering,
                             LxmertModel, LxmertPreTrainedModel)
from lxmert.modeling.matching import (EncodedImages, EncodedText, attention_scores, cosine_scores, match_score,
                                      score_grid)


@pytest.fixture(autouse=True)
def _threads():
    """Tiny matrices: one thread (a second one only spin-waits on a loaded machine)."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def tiny_config(**overrides) -> LxmertConfig:
    values = dict(vocab_size=120, hidden_size=32, num_attention_heads=4, intermediate_size=64, l_layers=2,
                  r_layers=2, x_layers=2, visual_feat_dim=12, num_qa_labels=5, num_object_labels=7,
                  num_attr_labels=3)
    values.update(overrides)
    return LxmertConfig(**values)


def gallery(n_text: int = 9, n_images: int = 6, n_boxes: int = 5, max_len: int = 11, seed: int = 0):
    """Sentences of different lengths (right-padded) and images some of which have fewer boxes."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, max_len + 1, (n_text,), generator=g)
    lengths[0] = max_len
    mask = (torch.arange(max_len)[None, :] < lengths[:, None]).long()
    ids = torch.randint(1, 120, (n_text, max_len), generator=g) * mask
    feats = torch.randn(n_images, n_boxes, 12, generator=g)
    pos = torch.rand(n_images, n_boxes, 4, generator=g)
    boxes = torch.randint(2, n_boxes + 1, (n_images,), generator=g)
    boxes[0] = n_boxes
    vmask = (torch.arange(n_boxes)[None, :] < boxes[:, None]).long()
    return ids, mask, lengths, feats, pos, vmask


def full_forward_grid(model: LxmertForImageTextMatching, ids, mask, lengths, feats, pos, vmask) -> torch.Tensor:
    """The reference: one full forward per (image, sentence) pair, each sentence unpadded."""
    out = torch.empty(feats.shape[0], ids.shape[0])
    for i in range(feats.shape[0]):
        for s in range(ids.shape[0]):
            n = int(lengths[s])
            out[i, s] = model(ids[s:s + 1, :n], feats[i:i + 1], pos[i:i + 1], mask[s:s + 1, :n],
                              vmask[i:i + 1]).scores[0]
    return out


@pytest.fixture(scope="module")
def scored():
    """A model, a gallery and the reference scores of its every pair by the full forward."""
    torch.manual_seed(1)
    model = LxmertForImageTextMatching(tiny_config()).eval()
    data = gallery()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: a second thread only spin-waits on a loaded machine
    try:
        with torch.no_grad():
            reference = full_forward_grid(model, *data)
    finally:
        torch.set_num_threads(threads)
    return model, data, reference


@pytest.mark.parametrize("pair_batch,per_block", [(1, 1), (7, 3), (4096, 64)])
def test_cached_scores_equal_the_full_forward_of_every_pair(scored, pair_batch, per_block):
    model, (ids, mask, _, feats, pos, vmask), reference = scored
    with torch.no_grad():
        text = model.encode_text(ids, mask)
        images = model.encode_images(feats, pos, vmask)
        grid = score_grid(model, text, images, pair_batch=pair_batch, sentences_per_block=per_block)
    assert grid.shape == (6, 9) and grid.dtype == torch.float32
    assert torch.allclose(grid, reference, atol=1e-5, rtol=0), (grid - reference).abs().max()
    assert reference.std() > 1e-3  # the scores differ between pairs: the check has teeth


def test_pair_scores_pick_the_pairs_they_are_given():
    torch.manual_seed(2)
    model = LxmertForImageTextMatching(tiny_config()).eval()
    ids, mask, _, feats, pos, vmask = gallery()
    with torch.no_grad():
        text, images = model.encode_text(ids, mask), model.encode_images(feats, pos, vmask)
        grid = score_grid(model, text, images)
        t = torch.tensor([0, 8, 3, 3, 5])
        i = torch.tensor([5, 0, 2, 1, 1])
        assert torch.allclose(model.pair_scores(text, images, t, i), grid[i, t], atol=1e-5)
        with pytest.raises(ValueError, match="pair up"):
            model.pair_scores(text, images, t, i[:3])


def test_encode_and_cross_compose_to_the_forward():
    """`LxmertModel.encode_text` + `encode_objects` + `cross` run forward's modules in its
    order: on the same padded batch the outputs are forward's."""
    torch.manual_seed(3)
    model = LxmertModel(tiny_config()).eval()
    ids, mask, _, feats, pos, vmask = gallery(n_text=6, n_images=6)
    types = torch.zeros_like(ids)
    with torch.no_grad():
        full = model(ids, feats, pos, mask, vmask, types)
        lang = model.encode_text(ids, mask, types)
        visn = model.encode_objects(feats, pos, vmask)
        cross = model.cross(lang, visn, mask, vmask)
    for key in ("language_output", "vision_output", "pooled_output"):
        assert torch.allclose(getattr(cross, key), getattr(full, key), atol=1e-6, rtol=0), key
    with pytest.raises(ValueError, match="one .sentence, image. pair per row"):
        model.cross(lang, visn[:2], mask, vmask[:2])
    with pytest.raises(ValueError, match="exactly one of input_ids"):
        model.encode_text()
    with pytest.raises(ValueError, match="visual_feat_dim"):
        model.encode_objects(feats[..., :5], pos)


def test_encoded_caches_concatenate_and_select():
    a = EncodedText(torch.randn(2, 3, 4), torch.tensor([[1, 1, 0], [1, 1, 1]]))
    b = EncodedText(torch.randn(1, 5, 4), torch.tensor([[1, 1, 1, 1, 0]]))
    both = EncodedText.cat([a, b])
    assert both.states.shape == (3, 5, 4) and both.mask.tolist()[0] == [1, 1, 0, 0, 0]
    assert torch.equal(both.states[2], b.states[0]) and torch.equal(both.states[0, :3], a.states[0])
    picked = both.select(torch.tensor([0, 1]))
    assert picked.states.shape == (2, 3, 4)  # trimmed to the longest selected sentence
    imgs = EncodedImages.cat([EncodedImages(torch.randn(2, 4, 4), None),
                              EncodedImages(torch.randn(1, 4, 4), torch.tensor([[1, 1, 0, 0]]))])
    assert imgs.mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0]]
    with pytest.raises(ValueError, match="different box counts"):
        EncodedImages.cat([EncodedImages(torch.randn(1, 4, 4), None), EncodedImages(torch.randn(1, 3, 4), None)])


def test_a_pretraining_checkpoint_keeps_its_matching_head(tmp_path, caplog):
    torch.manual_seed(4)
    pre = LxmertForPreTraining(tiny_config()).eval()
    pre.save_pretrained(tmp_path / "pre")
    with pytest.raises(CheckpointError, match="strict=False"):
        LxmertForImageTextMatching.from_pretrained(tmp_path / "pre")
    with caplog.at_level(logging.WARNING):
        model = LxmertForImageTextMatching.from_pretrained(tmp_path / "pre", strict=False)
    assert "obj_predict_head" in caplog.text and "answer_head" in caplog.text  # dropped, and said so
    assert torch.equal(model.cls.seq_relationship.weight, pre.cls.seq_relationship.weight)
    assert torch.equal(model.cls.seq_relationship.bias, pre.cls.seq_relationship.bias)
    ids, mask, _, feats, pos, vmask = gallery(n_text=6, n_images=6)
    with torch.no_grad():
        ours = model(ids, feats, pos, mask, vmask).scores
        theirs = match_score(pre(ids, feats, pos, mask, vmask).cross_relationship_score)
    assert torch.allclose(ours, theirs, atol=1e-6)
    # its own checkpoints load strictly, as the class they record
    model.save_pretrained(tmp_path / "itm")
    again = LxmertPreTrainedModel.from_pretrained(tmp_path / "itm")
    assert type(again) is LxmertForImageTextMatching
    assert sorted(k for k in again.canonical_state() if not k.startswith("lxmert.")) == [
        "cls.seq_relationship.bias", "cls.seq_relationship.weight"]
    with pytest.raises(CheckpointError, match="not a LxmertForQuestionAnswering"):
        LxmertForQuestionAnswering.from_pretrained(tmp_path / "itm")


def test_a_checkpoint_without_the_head_starts_it_fresh(tmp_path, caplog):
    torch.manual_seed(5)
    LxmertForQuestionAnswering(tiny_config()).save_pretrained(tmp_path / "qa")
    with caplog.at_level(logging.WARNING):
        model = LxmertForImageTextMatching.from_pretrained(tmp_path / "qa", strict=False)
    assert "heads not in the checkpoint: cls" in caplog.text
    assert model.cls.seq_relationship.weight.shape == (2, 32)


def test_labels_give_the_pretraining_matching_loss():
    torch.manual_seed(6)
    model = LxmertForImageTextMatching(tiny_config()).eval()
    ids, mask, _, feats, pos, vmask = gallery(n_text=6, n_images=6)
    labels = torch.tensor([1, 0, 1, 0, -100, 1])
    out = model(ids, feats, pos, mask, vmask, labels=labels)
    keep = labels != -100
    expected = torch.nn.functional.cross_entropy(out.logits[keep], labels[keep])
    assert torch.allclose(out.loss, expected)
    assert torch.allclose(out.scores, out.logits[:, 1] - out.logits[:, 0])


def test_first_stage_scores():
    torch.manual_seed(7)
    model = LxmertForImageTextMatching(tiny_config()).eval()
    ids, mask, lengths, feats, pos, vmask = gallery()
    with torch.no_grad():
        text, images = model.encode_text(ids, mask), model.encode_images(feats, pos, vmask)
        cos = cosine_scores(text, images)
        att = attention_scores(model, text, images, sentences_per_block=4)
    assert cos.shape == att.shape == (6, 9)
    assert cos.abs().max() <= 1.0 + 1e-6
    # attention score of one pair by hand: words' best object under the first cross layer's q.k
    layer = model.lxmert.encoder.x_layers[0].visual_attention.att
    d = 32
    i, s = 3, 4
    n, boxes = int(lengths[s]), int(vmask[i].sum())
    with torch.no_grad():
        q = text.states[s, :n] @ layer.qkv.weight[:d].T + layer.qkv.bias[:d]
        k = images.states[i, :boxes] @ layer.qkv.weight[d:2 * d].T + layer.qkv.bias[d:2 * d]
        by_hand = ((q @ k.T) / (d / 4) ** 0.5).amax(1).mean()
    assert torch.allclose(att[i, s], by_hand, atol=1e-5)
    # a text cached in bf16 (CPU autocast) scores in float32 all the same
    assert attention_scores(model, EncodedText(text.states.bfloat16(), text.mask), images).dtype == torch.float32
