"""move_to, padding and the length-bucketing batch sampler (coverage, DDP shares, determinism)."""

from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lxmert.data.collate import LengthBucketBatchSampler, move_to, pad_1d, stack_objects, text_batch


def test_move_to_walks_nested_batches():
    Pair = namedtuple("Pair", "a b")
    batch = {"x": torch.zeros(2), "obj": {"feat": (torch.ones(1), torch.ones(1))}, "ids": [1, 2],
             "nt": Pair(torch.ones(1), 3)}
    moved = move_to(batch, torch.device("cpu"))
    assert isinstance(moved["obj"]["feat"], tuple) and isinstance(moved["nt"], Pair)
    assert moved["ids"] == [1, 2] and moved["nt"].b == 3
    if torch.cuda.is_available():  # pragma: no cover - only on GPU machines
        assert move_to(batch, "cuda")["x"].is_cuda


def test_padding_helpers():
    t = text_batch([np.asarray([101, 5, 102]), np.asarray([101, 102])], pad_id=0)
    assert t["input_ids"].tolist() == [[101, 5, 102], [101, 102, 0]]
    assert t["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert pad_1d([[1], [2, 3]], -100).tolist() == [[1, -100], [2, 3]]
    with pytest.raises(ValueError, match="shorter than the longest"):
        pad_1d([[1, 2, 3]], 0, length=2)
    s = stack_objects([np.ones((2, 3), np.float32), np.ones((1, 3), np.float32)])
    assert s.shape == (2, 2, 3) and s[1, 1].eq(0).all()


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 300), batch=st.integers(1, 17), replicas=st.integers(1, 4), drop_last=st.booleans(),
       seed=st.integers(0, 1000), pool=st.integers(1, 5))
def test_bucket_sampler_covers_and_splits_evenly(n, batch, replicas, drop_last, seed, pool):
    lengths = np.random.default_rng(seed).integers(3, 21, size=n)
    samplers = [LengthBucketBatchSampler(lengths, batch, seed=seed, drop_last=drop_last, pool_batches=pool,
                                         num_replicas=replicas, rank=r) for r in range(replicas)]
    per_rank = [list(s) for s in samplers]
    assert len({len(b) for b in per_rank}) == 1, "every rank runs the same number of steps"
    assert all(len(b) == len(s) for b, s in zip(per_rank, samplers))
    seen = [i for rank in per_rank for b in rank for i in b]
    if replicas == 1 and not drop_last:
        assert sorted(seen) == list(range(n)), "one epoch = every example exactly once"
    if drop_last:
        assert all(len(b) == batch for rank in per_rank for b in rank)
    else:
        assert set(seen) == set(range(n)), "no example lost when padding ranks"


def test_bucket_sampler_groups_lengths_and_is_deterministic():
    lengths = np.random.default_rng(0).integers(3, 21, size=2000)
    s = LengthBucketBatchSampler(lengths, 32, seed=7, pool_batches=20)
    s.set_epoch(3)
    a = list(s)
    s2 = LengthBucketBatchSampler(lengths, 32, seed=7, pool_batches=20)
    s2.set_epoch(3)
    assert a == list(s2), "same seed and epoch, same batches"
    s2.set_epoch(4)
    assert a != list(s2), "another epoch, another order"
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in a])
    random_spread = np.mean([np.ptp(lengths[np.random.default_rng(k).choice(2000, 32)]) for k in range(50)])
    assert spread < 0.3 * random_spread, (spread, random_spread)
    padded = sum(len(b) * lengths[b].max() for b in a)
    assert padded < 1.1 * lengths.sum(), "little padding left"


def test_bucket_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="rank 2 out of range"):
        LengthBucketBatchSampler([1, 2], 1, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="batch_size"):
        LengthBucketBatchSampler([1, 2], 0)
