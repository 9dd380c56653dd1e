"""Image-text retrieval metrics: Recall@K in both directions and RSUM, as retrieval papers
(UNITER, VILLA, ...) report them on Flickr30k and COCO.

A query's hit is the position of the first correct item in its ranking; Recall@K is the
share of queries with a hit below K; RSUM sums the six recalls (t2i and i2t at 1, 5, 10)
in points (max 600). docs/retrieval.md says what counts as correct (the annotated pair,
or any item with the identical caption text: both are reported).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["RECALL_AT", "first_hits", "recall_metrics"]

RECALL_AT = (1, 5, 10)


def first_hits(rankings: Sequence[Sequence[Any]], correct: Sequence[Any]) -> np.ndarray:
    """For each query, the 0-based position of the first correct item in its ranking
    (`correct[q]` is a set, or a predicate), or -1 when none is ranked."""
    out = np.full(len(rankings), -1, dtype=np.int64)
    for q, (ranking, ok) in enumerate(zip(rankings, correct, strict=True)):
        test = ok if callable(ok) else ok.__contains__
        for pos, item in enumerate(ranking):
            if test(item):
                out[q] = pos
                break
    return out


def recall_metrics(t2i_hits: np.ndarray, i2t_hits: np.ndarray, suffix: str = "") -> dict[str, float]:
    """Recall@K (fractions) of both directions from `first_hits`, RSUM (points, max 600)
    and mean_recall (RSUM / 600)."""
    out: dict[str, float] = {}
    for name, hits in (("t2i", t2i_hits), ("i2t", i2t_hits)):
        if len(hits) == 0:
            raise ValueError(f"no {name} queries to score")
        for k in RECALL_AT:
            out[f"{name}_r{k}{suffix}"] = float(np.mean((hits >= 0) & (hits < k)))
    rsum = 100.0 * sum(out[f"{n}_r{k}{suffix}"] for n in ("t2i", "i2t") for k in RECALL_AT)
    out[f"rsum{suffix}"] = rsum
    out[f"mean_recall{suffix}"] = rsum / (100.0 * 2 * len(RECALL_AT))
    return out
