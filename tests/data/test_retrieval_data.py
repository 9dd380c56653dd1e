"""Retrieval data: training pairs with negative pools (never the same text as the positive,
deterministic per (seed, epoch, index)), the evaluation gallery, and the recall metric."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lxmert.data.karpathy import CaptionSplit, read_karpathy
from lxmert.data.retrieval import RetrievalGallery, RetrievalPairs, same_text
from lxmert.features.union import ImageFeatures
from lxmert.evaluation.retrieval import RECALL_AT, first_hits, recall_metrics

from support.world import FEAT_DIM, make_world


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return make_world(tmp_path_factory.mktemp("retrieval-data"), images=40)


@pytest.fixture(scope="module")
def store(world) -> ImageFeatures:
    return ImageFeatures(world / "features/store", max_boxes=None)


def caption_split(image_ids, captions) -> CaptionSplit:
    """A split whose image i has the sentences captions[i]."""
    sentences = [c for cs in captions for c in cs]
    owner = [i for i, cs in enumerate(captions) for _ in cs]
    return CaptionSplit("test", ("train",), tuple(image_ids), tuple(sentences), tuple(owner),
                        tuple(range(100, 100 + len(sentences))))


def test_same_text_ignores_case_and_punctuation():
    assert same_text("A red ball.") == same_text("a  red ball") == "a red ball"
    assert same_text("a red ball") != same_text("a red cube")


@settings(max_examples=25, deadline=None)
@given(choice=st.lists(st.integers(0, 3), min_size=12, max_size=12), pool=st.integers(1, 6),
       seed=st.integers(0, 2**16), epoch=st.integers(0, 5))
def test_negatives_never_repeat_the_positive_text(store, choice, pool, seed, epoch):
    """Captions drawn from a 4-sentence vocabulary, so many are shared between images:
    a negative image never has the sentence among its captions, a negative sentence is
    never one of the image's captions."""
    vocab = ["a red ball.", "A red ball", "a blue cube.", "two green cones."]
    ids = [i for i in store.stores[0].ids][:6]
    captions = [[vocab[c] for c in choice[2 * i:2 * i + 2]] for i in range(6)]
    split = caption_split(ids, captions)
    try:
        data = RetrievalPairs(split, store, max_length=8, pool=pool, seed=seed)
    except ValueError as err:  # a caption every image has: no negatives exist, said so
        assert "no negative" in str(err)
        return
    for index in range(len(data)):
        rng = data.rng(index, epoch)
        own = same_text(split.sentences[index])
        image = split.sentence_image[index]
        for i in data.negative_images(index, rng):
            assert own not in {same_text(s) for s in captions[i]}
        image_texts = {same_text(s) for s in captions[image]}
        for j in data.negative_sentences(index, rng):
            assert same_text(split.sentences[j]) not in image_texts
        allowed = sum(own not in {same_text(s) for s in cs} for cs in captions)
        drawn = data.negative_images(index, data.rng(index, epoch))
        assert len(drawn) == pool and (len(set(drawn.tolist())) == pool or allowed < pool)


def test_examples_are_a_function_of_seed_epoch_and_index(world, store):
    split = read_karpathy(world / "retrieval/dataset_world.json", "train")
    data = RetrievalPairs(split, store, max_length=12, pool=3, seed=7)
    first = data[(2, 5)]
    data.set_epoch(2)
    again = data[5]
    assert np.array_equal(first["negative_feats"], again["negative_feats"])
    assert all(np.array_equal(a, b) for a, b in zip(first["negative_ids"], again["negative_ids"]))
    other = data[(3, 5)]
    assert not np.array_equal(first["negative_feats"], other["negative_feats"])
    assert first["sentid"] == split.sentence_ids[5]
    assert np.array_equal(first["visual_feats"], store.get(split.image_ids[split.sentence_image[5]])["features"])


def test_collate_stacks_the_pools(world, store):
    split = read_karpathy(world / "retrieval/dataset_world.json", "train")
    data = RetrievalPairs(split, store, max_length=12, pool=3, seed=0)
    batch = data.collate([data[i] for i in range(4)])
    x = batch.inputs
    n = x["visual_feats"].shape[1]
    assert x["input_ids"].shape[0] == 4 and batch.size == 4
    assert x["negative_feats"].shape == (4, 3, n, FEAT_DIM) and x["negative_pos"].shape == (4, 3, n, 4)
    assert x["negative_ids"].shape[:2] == (4, 3)
    assert x["negative_attention_mask"].shape == x["negative_ids"].shape
    assert torch.equal(x["negative_attention_mask"].sum(-1),
                       torch.tensor([[len(t) for t in data[i]["negative_ids"]] for i in range(4)]))
    assert batch.meta["sentid"] == list(split.sentence_ids[:4])
    only_images = RetrievalPairs(split, store, max_length=12, pool=2, sides=["image"])
    assert "negative_ids" not in only_images.collate([only_images[0]]).inputs


def test_gallery_limits_by_image(world, store):
    split = read_karpathy(world / "retrieval/dataset_world.json", "test")
    gallery = RetrievalGallery(split, store, max_length=12)
    assert len(gallery) == len(split.image_ids)
    rows = gallery.sentences_of_images(1, 3)
    assert [split.sentence_image[j] for j in rows] == [1] * 5 + [2] * 5
    batch = gallery.image_batch([0, 2])
    assert batch["visual_feats"].shape[0] == 2


@pytest.mark.parametrize("make,message", [
    (lambda s: RetrievalPairs(caption_split(["nope", *s.stores[0].ids[:1]], [["a"], ["b"]]), s),
     "image 'nope' .* not in the feature store"),
    (lambda s: RetrievalPairs(caption_split(s.stores[0].ids[:2], [["a"], ["b"]]), s, sides=["images"]),
     "negative sides"),
    (lambda s: RetrievalPairs(caption_split(s.stores[0].ids[:2], [["a"], ["b"]]), s, pool=0), "pool must be"),
    (lambda s: RetrievalPairs(caption_split(s.stores[0].ids[:2], [["a"], ["a", "b"]]), s),
     "describes every image"),
    (lambda s: RetrievalGallery(caption_split(s.stores[0].ids[:1], [[]]), s), "no images or no sentences"),
])
def test_bad_splits_are_refused_with_one_line(store, make, message):
    with pytest.raises((KeyError, ValueError), match=message):
        make(store)


def test_recall_counts_the_first_correct_position():
    rankings = [["a", "b", "c"], ["c", "b", "a"], ["b", "c", "a"]]
    hits = first_hits(rankings, [{"a"}, {"a"}, {"x"}])
    assert hits.tolist() == [0, 2, -1]
    assert first_hits(rankings, [lambda x: x == "b"] * 3).tolist() == [1, 1, 0]
    m = recall_metrics(np.array([0, 2, -1, 7]), np.array([4, 9, 10, 0]))
    assert m["t2i_r1"] == 0.25 and m["t2i_r5"] == 0.5 and m["t2i_r10"] == 0.75
    assert m["i2t_r1"] == 0.25 and m["i2t_r5"] == 0.5 and m["i2t_r10"] == 0.75
    assert m["rsum"] == pytest.approx(100 * (0.25 + 0.5 + 0.75) * 2)
    assert m["mean_recall"] == pytest.approx(m["rsum"] / 600)
    assert set(recall_metrics(np.array([0]), np.array([0]), "_dup")) == {
        *(f"{d}_r{k}_dup" for d in ("t2i", "i2t") for k in RECALL_AT), "rsum_dup", "mean_recall_dup"}
    with pytest.raises(ValueError, match="no t2i queries"):
        recall_metrics(np.array([], dtype=np.int64), np.array([0]))
