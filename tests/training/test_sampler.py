"""Which examples form each step (`lxmert.training.sampler`): the invariants the loop relies on
(same examples per step for any world size and accumulation, equal counts per rank, a pure
function of (seed, epoch), skipping for resume) with and without length-aware batching, the
padding it saves, and the evaluation order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lxmert.errors import RecipeError
from lxmert.training.recipe import load_recipe
from lxmert.training.sampler import (WINDOW_BATCHES, GlobalBatchSampler, bucket_by_length, dataset_lengths,
                                     eval_batch_order, micro_batch_slot, random_batching_reason, training_window)
from lxmert.training.task import Limited


def _steps(n, batch, seed, epoch, world, accum, lengths, **kw):
    """Per rank, the list of steps; each step the list of its micro-batches."""
    out = []
    for rank in range(world):
        micro = list(GlobalBatchSampler(n, batch, seed, epoch, rank, world, accum, lengths=lengths, **kw))
        out.append([micro[s * accum:(s + 1) * accum] for s in range(len(micro) // accum)])
    return out


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 400), per=st.integers(1, 4), world=st.integers(1, 4), accum=st.integers(1, 3),
       seed=st.integers(0, 2**31), epoch=st.integers(0, 5), bucketed=st.booleans(), window=st.integers(1, 6))
def test_same_examples_per_step_for_any_split(n, per, world, accum, seed, epoch, bucketed, window):
    batch = per * world * accum
    lengths = np.random.default_rng(seed).integers(3, 21, size=n) if bucketed else None
    reference = [step[0] for step in _steps(n, batch, seed, epoch, 1, 1, lengths, window_batches=window)[0]]
    assert len(reference) == n // batch
    seen = [i for b in reference for i in b]
    assert len(seen) == len(set(seen)) == (n // batch) * batch, "no example twice, only the tail dropped"
    split = _steps(n, batch, seed, epoch, world, accum, lengths, window_batches=window)
    assert len({len(rank) for rank in split}) == 1, "every rank runs the same number of steps"
    for rank in range(world):
        sampler = GlobalBatchSampler(n, batch, seed, epoch, rank, world, accum, lengths=lengths,
                                     window_batches=window)
        assert len(sampler) == len(split[rank]) * accum
    for t, ref in enumerate(reference):
        micro = [m for rank in split for m in rank[t]]
        assert all(len(m) == per for m in micro)
        assert sorted(i for m in micro for i in m) == sorted(ref), f"step {t} has other examples"
    # the same product world x accum cuts a step into the same micro-batches
    swapped = _steps(n, batch, seed, epoch, accum, world, lengths, window_batches=window)
    for t in range(len(reference)):
        a = sorted(sorted(m) for rank in split for m in rank[t])
        b = sorted(sorted(m) for rank in swapped for m in rank[t])
        assert a == b
    # a resumed run skips the steps it has done
    if reference:
        start = len(reference) // 2
        resumed = list(GlobalBatchSampler(n, batch, seed, epoch, lengths=lengths, start_step=start,
                                          window_batches=window))
        assert resumed == reference[start:]


def test_pure_function_of_seed_and_epoch():
    lengths = np.random.default_rng(0).integers(3, 21, size=2000)
    for lens in (lengths, None):
        a = list(GlobalBatchSampler(2000, 32, 7, 3, lengths=lens))
        assert a == list(GlobalBatchSampler(2000, 32, 7, 3, lengths=lens))
        assert a != list(GlobalBatchSampler(2000, 32, 7, 4, lengths=lens)), "another epoch, another order"
        assert a != list(GlobalBatchSampler(2000, 32, 8, 3, lengths=lens)), "another seed, another order"
    # which examples meet in a step still changes from epoch to epoch
    pairs = [{frozenset(b[i:i + 2]) for b in GlobalBatchSampler(2000, 32, 7, e, lengths=lengths) for i in (0, 16)}
             for e in (0, 1)]
    assert len(pairs[0] & pairs[1]) < 0.1 * len(pairs[0])


def _padded(batches, lengths):
    return sum(len(b) * lengths[b].max() for b in batches)


def test_length_batching_pads_little_also_within_a_step():
    lengths = np.random.default_rng(0).integers(3, 21, size=4000)
    bucketed = list(GlobalBatchSampler(4000, 64, 7, 0, lengths=lengths, window_batches=50))
    shuffled = list(GlobalBatchSampler(4000, 64, 7, 0))
    real = sum(lengths[b].sum() for b in bucketed)
    assert _padded(bucketed, lengths) < 1.1 * real, "little padding left"
    assert _padded(shuffled, lengths) > 1.5 * real
    # split over 2 ranks x 2 micro-batches: each micro-batch is a slice of the sorted step
    micro = [list(GlobalBatchSampler(4000, 64, 7, 0, r, 2, 2, lengths=lengths, window_batches=50)) for r in (0, 1)]
    flat = [m for r in micro for m in r]
    assert _padded(flat, lengths) <= _padded(bucketed, lengths)
    for step in range(len(bucketed)):
        by_slot = {micro_batch_slot(r, a, 2): micro[r][2 * step + a] for r in (0, 1) for a in (0, 1)}
        slices = [by_slot[k] for k in range(4)]
        for lo, hi in zip(slices, slices[1:]):
            assert lengths[lo].max() <= lengths[hi].min()
    # the batch order is shuffled: long and short steps alternate instead of running in a sorted sweep
    longest = [lengths[b].max() for b in bucketed]
    assert longest != sorted(longest) and longest != sorted(longest, reverse=True)


def test_small_epochs_get_small_windows_down_to_random_batches():
    assert training_window(100_000) == WINDOW_BATCHES
    assert training_window(16 * 7) == 7
    assert training_window(6) == 1  # the demo's 200-question fine-tuning
    lengths = np.random.default_rng(3).integers(3, 21, size=192)
    random = list(GlobalBatchSampler(192, 32, 5, 1))
    one = list(GlobalBatchSampler(192, 32, 5, 1, lengths=lengths))  # 6 steps: a one-batch window
    assert one == random, "one process: exactly the random batches"
    two = [list(GlobalBatchSampler(192, 32, 5, 1, r, 2, lengths=lengths)) for r in (0, 1)]
    for step, batch in enumerate(random):  # two ranks: the same batches, cut into length-sorted slices
        assert sorted(two[0][step] + two[1][step]) == sorted(batch)
        assert lengths[two[0][step]].max() <= lengths[two[1][step]].min()
    big = np.random.default_rng(3).integers(3, 21, size=32 * 16 * 4)
    assert GlobalBatchSampler(len(big), 32, 5, 1, lengths=big).window_batches == 4


def test_ranks_share_long_and_short_slices():
    assert [micro_batch_slot(r, 0, 4) for r in range(4)] == [0, 1, 2, 3]
    assert [micro_batch_slot(r, 1, 4) for r in range(4)] == [7, 6, 5, 4]
    assert sorted(micro_batch_slot(r, a, 3) for r in range(3) for a in range(4)) == list(range(12))


def test_bucket_by_length_is_stable_and_complete():
    lengths = np.array([5, 3, 5, 3, 9, 1, 5])
    order = [6, 5, 4, 3, 2, 1, 0]
    batches = bucket_by_length(order, lengths, 2, window_batches=2)
    # windows of 4 positions, sorted by length; equal lengths keep their order in `order`
    assert [b.tolist() for b in batches] == [[5, 3], [6, 4], [1, 2], [0]]
    assert sorted(i for b in batches for i in b) == sorted(order)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_examples=50, global_batch=8, seed=3, epoch=1, world_size=3), "divisible"),
    (dict(num_examples=50, global_batch=8, seed=3, epoch=1, rank=2, world_size=2), "rank 2 out of range"),
    (dict(num_examples=50, global_batch=8, seed=3, epoch=1, lengths=[3] * 49), r"lengths has shape \(49,\)"),
    (dict(num_examples=50, global_batch=8, seed=3, epoch=1, window_batches=0), "window_batches"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GlobalBatchSampler(**kwargs)


def test_eval_order_covers_the_split_in_sorted_windows():
    lengths = np.random.default_rng(1).integers(3, 21, size=1000)
    plain = eval_batch_order(1000, 32, None)
    assert [b.tolist() for b in plain] == [list(range(i, min(i + 32, 1000))) for i in range(0, 1000, 32)]
    batches = eval_batch_order(1000, 32, lengths, window_batches=4)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert len(batches) == len(plain)
    for w in range(0, len(batches), 4):  # a window holds consecutive examples, sorted by length
        window = np.concatenate(batches[w:w + 4])
        assert sorted(window.tolist()) == list(range(w * 32, w * 32 + len(window)))
        assert (np.diff(lengths[window]) >= 0).all()
    assert _padded(batches, lengths) < 0.7 * _padded(plain, lengths)


class _Sized:
    def __init__(self, lengths):
        self.lengths = lengths

    def __len__(self):
        return 6


def test_dataset_lengths_of_limited_sets_and_mismatches():
    class Full(_Sized):
        def __len__(self):
            return len(self.lengths)

    full = Full(np.arange(10))
    assert dataset_lengths(full).tolist() == list(range(10))
    assert dataset_lengths(Limited(full, 4)).tolist() == [0, 1, 2, 3]
    assert dataset_lengths([1, 2, 3]) is None  # no .lengths: random batches
    assert dataset_lengths(Limited([1, 2, 3], 2)) is None
    with pytest.raises(ValueError, match=r"_Sized lengths have shape \(5,\), expected \(6,\)"):
        dataset_lengths(_Sized(np.arange(5)))


class _PerEpoch(_Sized):
    """Examples that change with the epoch (as pre-training's mismatched sentences)."""

    def set_epoch(self, epoch):
        pass


class _PerEpochWithLengths(_PerEpoch):
    def epoch_lengths(self, epoch):
        return self.lengths + epoch


def test_datasets_that_change_per_epoch_need_epoch_lengths():
    own = np.arange(6)
    # training: `.lengths` (own sentences) is not what the examples carry: random batches
    assert dataset_lengths(_PerEpoch(own), epoch=0) is None
    assert "epoch_lengths" in random_batching_reason(_PerEpoch(own))
    assert dataset_lengths(_PerEpochWithLengths(own), epoch=2).tolist() == [2, 3, 4, 5, 6, 7]
    assert random_batching_reason(_PerEpochWithLengths(own)) is None
    assert dataset_lengths(_PerEpoch(own)).tolist() == own.tolist()  # evaluation sorts by .lengths
    assert dataset_lengths(_Sized(own), epoch=3).tolist() == own.tolist()
    assert "no .lengths" in random_batching_reason([1, 2])

    class Full(_PerEpochWithLengths):
        def __len__(self):
            return len(self.lengths)

    assert dataset_lengths(Limited(Full(np.arange(10)), 4), epoch=1).tolist() == [1, 2, 3, 4]
    assert random_batching_reason(Limited(_PerEpoch(own), 4)) is not None


@pytest.mark.parametrize("value", ["sorted", "", "Length"])
def test_recipe_refuses_unknown_batching(value):
    with pytest.raises(RecipeError, match=rf"data.batching = '{value}' \(expected length or random\)"):
        load_recipe("demo-vqa", [f"data.batching=\"{value}\""])


def test_recipe_default_is_length_batching():
    assert load_recipe("demo-vqa").data.batching == "length"
    assert load_recipe("lxr955-pretrain", ["data.batching=random"]).data.batching == "random"
