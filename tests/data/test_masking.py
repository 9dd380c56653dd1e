"""Masking (LXMERT-SPEC §2): specials never chosen, rates and 80/10/10 splits, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lxmert.data.masking import IGNORE_INDEX, mask_objects, mask_tokens

CLS, SEP, PAD, MASK, VOCAB = 101, 102, 0, 103, 30522


def within(count: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    """Is `count` successes of `n` trials consistent with rate `p` (normal approx.)?"""
    sd = math.sqrt(n * p * (1 - p))
    return abs(count - n * p) <= sigmas * sd + 1


sentences = st.lists(st.integers(min_value=999, max_value=VOCAB - 1), min_size=0, max_size=18).map(
    lambda body: np.asarray([CLS, *body, SEP], dtype=np.int64))


@settings(max_examples=60, deadline=None)
@given(ids=sentences, pad=st.integers(0, 5), seed=st.integers(0, 2**32 - 1))
def test_token_masking_invariants(ids, pad, seed):
    ids = np.concatenate([ids, np.full(pad, PAD)])
    masked, labels = mask_tokens(ids, np.random.default_rng(seed), vocab_size=VOCAB, mask_id=MASK,
                                 special_ids=(CLS, SEP, PAD), prob=0.5)
    special = np.isin(ids, [CLS, SEP, PAD])
    assert (masked[special] == ids[special]).all(), "specials must never change"
    assert (labels[special] == IGNORE_INDEX).all(), "specials must never be targets"
    chosen = labels != IGNORE_INDEX
    assert (labels[chosen] == ids[chosen]).all(), "targets are the original ids"
    assert (masked[~chosen] == ids[~chosen]).all(), "unchosen pieces are untouched"
    assert ((masked >= 0) & (masked < VOCAB)).all()
    again = mask_tokens(ids, np.random.default_rng(seed), vocab_size=VOCAB, mask_id=MASK,
                        special_ids=(CLS, SEP, PAD), prob=0.5)
    assert (again[0] == masked).all() and (again[1] == labels).all(), "same generator state, same masks"


def test_token_masking_rates_and_80_10_10():
    rng = np.random.default_rng(1)
    body = rng.integers(1000, VOCAB, size=(4000, 18))
    ids = np.concatenate([np.full((4000, 1), CLS), body, np.full((4000, 1), SEP)], axis=1)
    masked, labels = mask_tokens(ids, np.random.default_rng(2), vocab_size=VOCAB, mask_id=MASK,
                                 special_ids=(CLS, SEP, PAD))
    eligible = body.size
    chosen = labels != IGNORE_INDEX
    n = int(chosen.sum())
    assert within(n, eligible, 0.15)
    to_mask = int((masked[chosen] == MASK).sum())
    unchanged = int((masked[chosen] == ids[chosen]).sum())
    randomised = n - to_mask - unchanged
    assert within(to_mask, n, 0.8)
    # a random id can coincide with the original (p = 1/30522): negligible at this size
    assert within(unchanged, n, 0.1)
    assert within(randomised, n, 0.1)
    assert not (chosen[:, 0] | chosen[:, -1]).any()


def test_token_masking_off_and_bad_arguments():
    ids = np.asarray([CLS, 2000, 2001, SEP])
    masked, labels = mask_tokens(ids, np.random.default_rng(0), vocab_size=VOCAB, mask_id=MASK,
                                 special_ids=(CLS, SEP, PAD), prob=0.0)
    assert (masked == ids).all() and (labels == IGNORE_INDEX).all()
    with pytest.raises(ValueError, match="prob"):
        mask_tokens(ids, np.random.default_rng(0), vocab_size=VOCAB, mask_id=MASK, special_ids=(), prob=1.5)
    with pytest.raises(ValueError, match="mask_frac"):
        mask_tokens(ids, np.random.default_rng(0), vocab_size=VOCAB, mask_id=MASK, special_ids=(),
                    mask_frac=0.95, random_frac=0.1)


def _pool(rng: np.random.Generator, k: int) -> np.ndarray:
    return np.full((k, 8), 7.0, dtype=np.float32)  # recognisable "random object" features


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 40), n_valid=st.integers(0, 40), seed=st.integers(0, 2**32 - 1))
def test_object_masking_invariants(n, n_valid, seed):
    feats = np.random.default_rng(seed).random((n, 8), dtype=np.float32) + 1.0  # never 0 or 7
    valid = np.arange(n) < n_valid
    before = feats.copy()
    masked, chosen = mask_objects(feats, np.random.default_rng(seed), random_features=_pool, valid=valid, prob=0.6)
    assert (feats == before).all(), "input must not be modified"
    assert masked.shape == feats.shape and chosen.shape == (n,) and chosen.dtype == np.float32
    assert not chosen[~valid].any(), "padded boxes are never chosen"
    untouched = chosen == 0
    assert (masked[untouched] == feats[untouched]).all()
    for i in np.flatnonzero(chosen):
        row = masked[i]
        assert (row == 0).all() or (row == 7).all() or (row == feats[i]).all()


def test_object_masking_rates_and_80_10_10():
    feats = np.random.default_rng(0).random((20000, 4), dtype=np.float32) + 1.0
    masked, chosen = mask_objects(feats, np.random.default_rng(3), random_features=lambda r, k: np.full((k, 4), 7.0))
    n = int(chosen.sum())
    assert within(n, len(feats), 0.15)
    sel = chosen == 1
    zeros = int((masked[sel] == 0).all(axis=1).sum())
    swapped = int((masked[sel] == 7).all(axis=1).sum())
    kept = int((masked[sel] == feats[sel]).all(axis=1).sum())
    assert zeros + swapped + kept == n
    assert within(zeros, n, 0.8) and within(swapped, n, 0.1) and within(kept, n, 0.1)


def test_object_masking_checks_random_feature_shape():
    feats = np.ones((200, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="random_features returned shape"):
        mask_objects(feats, np.random.default_rng(0), random_features=lambda r, k: np.zeros((k, 3)), prob=1.0,
                     zero_frac=0.0, random_frac=1.0)
    with pytest.raises(ValueError, match="random_features is required"):
        mask_objects(feats, np.random.default_rng(0), random_features=None, prob=1.0, zero_frac=0.0, random_frac=1.0)
