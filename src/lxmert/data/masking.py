"""The paper's masking for pre-training (LXMERT-SPEC §2), as pure functions.

Both functions take an explicit `numpy.random.Generator` and never touch global random
state, so a dataset can derive one generator per (seed, epoch, example) and produce the
same masks whatever the number of DataLoader workers or ranks - and so that the rates can
be property-tested.

Words: each word piece is chosen with probability 0.15, never [CLS], [SEP] or [PAD];
a chosen piece becomes [MASK] 80% of the time, a uniformly random vocabulary id 10%, and
stays unchanged 10%; the MLM target is the original id at chosen positions, -100 elsewhere.

Objects: each (real, not padded) object is chosen with probability 0.15; a chosen feature
becomes zeros 80% of the time, the feature of a random object of a random training image
10%, and stays unchanged 10%. The feature-regression target is the original feature on
chosen objects. Boxes are never masked.
"""

from __future__ import annotations

from typing import Callable, Collection

import numpy as np

from lxmert.labels import IGNORE_INDEX

__all__ = ["IGNORE_INDEX", "mask_tokens", "mask_objects"]


def mask_tokens(
    input_ids: np.ndarray,
    rng: np.random.Generator,
    *,
    vocab_size: int,
    mask_id: int,
    special_ids: Collection[int],
    prob: float = 0.15,
    mask_frac: float = 0.8,
    random_frac: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Mask word pieces; returns `(masked_ids, labels)` as int64 arrays of the input's shape.

    `special_ids` ([CLS], [SEP], [PAD]) are never chosen. Of the chosen pieces,
    `mask_frac` become `mask_id`, `random_frac` a random id in [0, vocab_size) and the rest
    keep their id; `labels` holds the original id at every chosen position and
    `IGNORE_INDEX` elsewhere. `prob=0` disables masking (all labels ignored).
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob}")
    if mask_frac < 0 or random_frac < 0 or mask_frac + random_frac > 1.0:
        raise ValueError(f"need mask_frac, random_frac >= 0 with sum <= 1, got {mask_frac}, {random_frac}")
    ids = np.asarray(input_ids, dtype=np.int64)
    masked = ids.copy()
    labels = np.full(ids.shape, IGNORE_INDEX, dtype=np.int64)
    if prob == 0.0 or ids.size == 0:
        return masked, labels
    eligible = np.ones(ids.shape, dtype=bool)
    for special in special_ids:  # a few comparisons beat np.isin on 20-id sentences
        eligible &= ids != special
    chosen = (rng.random(ids.shape) < prob) & eligible
    how = rng.random(ids.shape)
    random_ids = rng.integers(0, vocab_size, size=ids.shape)
    labels[chosen] = ids[chosen]
    to_mask = chosen & (how < mask_frac)
    to_random = chosen & (how >= mask_frac) & (how < mask_frac + random_frac)
    masked[to_mask] = mask_id
    masked[to_random] = random_ids[to_random]
    return masked, labels


def mask_objects(
    features: np.ndarray,
    rng: np.random.Generator,
    *,
    random_features: Callable[[np.random.Generator, int], np.ndarray] | None,
    valid: np.ndarray | None = None,
    prob: float = 0.15,
    zero_frac: float = 0.8,
    random_frac: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Mask object features; returns `(masked_features [N, D], chosen float32 [N])`.

    `random_features(rng, k)` must return `k` features `[k, D]` of random objects of
    random training images (the dataset supplies it); it may be None only when
    `random_frac` is 0. `valid` (bool [N]) marks real objects: padded boxes are never
    chosen. The input array is not modified.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob}")
    if zero_frac < 0 or random_frac < 0 or zero_frac + random_frac > 1.0:
        raise ValueError(f"need zero_frac, random_frac >= 0 with sum <= 1, got {zero_frac}, {random_frac}")
    feats = np.asarray(features)
    if feats.ndim != 2:
        raise ValueError(f"features must be [num_objects, dim], got shape {feats.shape}")
    n = feats.shape[0]
    chosen = np.zeros(n, dtype=np.float32)
    if prob == 0.0 or n == 0:
        return feats.copy(), chosen
    pick = rng.random(n) < prob
    if valid is not None:
        pick &= np.asarray(valid, dtype=bool)
    how = rng.random(n)
    masked = feats.copy()
    masked[pick & (how < zero_frac)] = 0.0
    swap = np.flatnonzero(pick & (how >= zero_frac) & (how < zero_frac + random_frac))
    if swap.size:
        if random_features is None:
            raise ValueError("random_features is required when random_frac > 0")
        replacement = np.asarray(random_features(rng, int(swap.size)))
        if replacement.shape != (swap.size, feats.shape[1]):
            raise ValueError(
                f"random_features returned shape {replacement.shape}, expected {(swap.size, feats.shape[1])}"
            )
        masked[swap] = replacement
    chosen[pick] = 1.0
    return masked, chosen
