"""Classification metrics for the multimodal classifiers (meme toolkits) and answerability.

All are written with numpy so that no scikit-learn is needed; each follows the standard
definition that scikit-learn also implements, so figures are comparable with papers that
used it:

* :func:`accuracy` (single-label), :func:`subset_accuracy` and per-label
  (Hamming) accuracy for multi-label indicator matrices;
* :func:`f1_scores`: per-class F1 = 2TP / (2TP + FP + FN) (0 when a class never occurs
  in either labels or predictions, scikit-learn's ``zero_division=0``), macro = their
  unweighted mean over classes, micro = F1 of the pooled counts. For single-label
  multi-class data micro-F1 equals accuracy.
* :func:`roc_auc`: the area under the ROC curve computed from ranks (Mann-Whitney U):
  ``(sum of positive ranks - P(P+1)/2) / (P*N)`` with average ranks for tied scores, so a
  positive and a negative with equal scores count one half - the same value as the
  trapezoidal area scikit-learn's ``roc_auc_score`` gives. NaN when a class is absent.
* :func:`average_precision`: ``sum_k (R_k - R_{k-1}) P_k`` over the distinct score
  thresholds in decreasing order (tied scores enter together), scikit-learn's
  ``average_precision_score`` (no interpolation, computed in its order of operations).
  NaN when there is no positive.
* :func:`evaluate_classification`: all of the above for single- or multi-label outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "accuracy",
    "average_precision",
    "evaluate_classification",
    "f1_scores",
    "rankdata",
    "roc_auc",
    "subset_accuracy",
]


def _as_1d(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    return a


def _binary_labels(y: Any, name: str = "y_true") -> np.ndarray:
    a = _as_1d(y, name)
    if a.dtype == bool:
        return a.astype(np.int64)
    bad = ~np.isin(a, (0, 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} must hold 0/1 labels; element {i} is {a[i]!r}")
    return a.astype(np.int64)


def rankdata(x: Any) -> np.ndarray:
    """1-based ranks with ties given their average rank (scipy's ``rankdata`` 'average')."""
    a = _as_1d(x, "scores").astype(np.float64)
    if np.isnan(a).any():
        raise ValueError("scores contain NaN")
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    # Boundaries of runs of equal values.
    starts = np.r_[0, np.flatnonzero(sorted_a[1:] != sorted_a[:-1]) + 1]
    ends = np.r_[starts[1:], len(a)]
    avg = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks_sorted = np.repeat(avg, ends - starts)
    ranks = np.empty(len(a), dtype=np.float64)
    ranks[order] = ranks_sorted
    return ranks


def roc_auc(y_true: Any, scores: Any) -> float:
    """Area under the ROC curve from ranks, ties counted one half. NaN when ``y_true``
    holds a single class (the area is undefined)."""
    y = _binary_labels(y_true)
    s = _as_1d(scores, "scores")
    if len(y) != len(s):
        raise ValueError(f"y_true has {len(y)} elements but scores has {len(s)}")
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def average_precision(y_true: Any, scores: Any) -> float:
    """Average precision (area under the step precision-recall curve, no interpolation);
    tied scores form one threshold. NaN when there is no positive.

    Computed in the order of scikit-learn's ``average_precision_score`` (descending stable
    sort, one point per distinct score, ``-sum(diff(recall) * precision[:-1])`` over the
    reversed curve), so the VizWiz figure equals the official code's to the last bit in
    practice (scikit-learn >= 1.1 returns 0 instead of NaN without positives)."""
    y = _binary_labels(y_true)
    s = _as_1d(scores, "scores").astype(np.float64)
    if len(y) != len(s):
        raise ValueError(f"y_true has {len(y)} elements but scores has {len(s)}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    if int(y.sum()) == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")[::-1]
    s_sorted, y_sorted = s[order], y[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s) - 1]
    tps = np.cumsum(y_sorted, dtype=np.float64)[last]
    fps = 1 + last - tps
    precision = np.r_[(tps / (tps + fps))[::-1], 1.0]
    recall = np.r_[(tps / tps[-1])[::-1], 0.0]
    return float(-np.sum(np.diff(recall) * precision[:-1]))


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Share of equal elements (single-label)."""
    t, p = _as_1d(y_true, "y_true"), _as_1d(y_pred, "y_pred")
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} elements but y_pred has {len(p)}")
    if len(t) == 0:
        raise ValueError("accuracy of an empty set")
    return float(np.mean(t == p))


def subset_accuracy(y_true: Any, y_pred: Any) -> float:
    """Multi-label exact match: share of rows whose whole label set is right."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape or t.ndim != 2:
        raise ValueError(f"expected two [N, L] indicator matrices, got {t.shape} and {p.shape}")
    return float(np.mean(np.all(t.astype(bool) == p.astype(bool), axis=1)))


def _f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denom = 2 * tp + fp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return f1.astype(np.float64)


def f1_scores(y_true: Any, y_pred: Any, num_labels: int | None = None) -> dict[str, Any]:
    """Per-class, macro and micro F1.

    Single-label: ``y_true``/``y_pred`` are 1-D class ids in ``[0, num_labels)``
    (``num_labels`` defaults to the largest id + 1). Multi-label: both are [N, L] 0/1
    indicator matrices. Returns ``{"per_label": [...], "macro": f, "micro": f}``.
    """
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true shape {t.shape} != y_pred shape {p.shape}")
    if t.ndim == 1:
        t, p = t.astype(np.int64), p.astype(np.int64)
        if len(t) and (t.min() < 0 or p.min() < 0):
            raise ValueError("class ids must be >= 0")
        n = num_labels if num_labels is not None else int(max(t.max(initial=-1),
                                                                p.max(initial=-1)) + 1)
        if len(t) and max(t.max(), p.max()) >= n:
            raise ValueError(f"class id >= num_labels={n}")
        t_ind = np.zeros((len(t), n), dtype=bool)
        p_ind = np.zeros((len(p), n), dtype=bool)
        t_ind[np.arange(len(t)), t] = True
        p_ind[np.arange(len(p)), p] = True
    elif t.ndim == 2:
        t_ind, p_ind = t.astype(bool), p.astype(bool)
    else:
        raise ValueError(f"expected 1-D ids or [N, L] indicators, got shape {t.shape}")
    tp = (t_ind & p_ind).sum(0).astype(np.float64)
    fp = (~t_ind & p_ind).sum(0).astype(np.float64)
    fn = (t_ind & ~p_ind).sum(0).astype(np.float64)
    per = _f1_from_counts(tp, fp, fn)
    micro = _f1_from_counts(tp.sum(keepdims=True), fp.sum(keepdims=True),
                            fn.sum(keepdims=True))[0]
    return {
        "per_label": per.tolist(),
        "macro": float(per.mean()) if len(per) else float("nan"),
        "micro": float(micro),
    }


def evaluate_classification(
    labels: Any,
    scores: Any,
    *,
    multi_label: bool | None = None,
    threshold: float = 0.5,
    label_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Accuracy, macro/micro F1 and AUROC for a classifier's outputs.

    * binary: ``labels`` [N] 0/1, ``scores`` [N] probability (or any monotone score) of
      the positive class; predictions are ``scores >= threshold``.
    * single-label multi-class: ``labels`` [N] ids, ``scores`` [N, C]; prediction = argmax;
      AUROC one-vs-rest per class, macro over classes where it is defined.
    * multi-label: ``labels`` [N, L] 0/1, ``scores`` [N, L]; ``multi_label=True`` (or a 2-D
      ``labels``); predictions ``scores >= threshold``; accuracy is the subset accuracy,
      ``label_accuracy`` the per-label (Hamming) accuracy.
    """
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if multi_label is None:
        multi_label = y.ndim == 2
    names = list(label_names) if label_names is not None else None
    out: dict[str, Any] = {}
    if multi_label:
        if y.shape != s.shape or y.ndim != 2:
            raise ValueError(f"multi-label needs labels and scores of shape [N, L]; got "
                             f"{y.shape} and {s.shape}")
        y = y.astype(np.int64)
        pred = (s >= threshold).astype(np.int64)
        out["accuracy"] = subset_accuracy(y, pred)
        out["label_accuracy"] = float(np.mean(y == pred))
        f1 = f1_scores(y, pred)
        aucs = [roc_auc(y[:, j], s[:, j]) for j in range(y.shape[1])]
    elif s.ndim == 1:
        y = _binary_labels(y, "labels")
        if len(y) != len(s):
            raise ValueError(f"labels has {len(y)} elements but scores has {len(s)}")
        pred = (s >= threshold).astype(np.int64)
        out["accuracy"] = accuracy(y, pred)
        f1 = f1_scores(y, pred, num_labels=2)
        out["f1"] = f1["per_label"][1]
        aucs = [roc_auc(y, s)]
        out["average_precision"] = average_precision(y, s)
    elif s.ndim == 2:
        y = _as_1d(y, "labels").astype(np.int64)
        if len(y) != s.shape[0]:
            raise ValueError(f"labels has {len(y)} elements but scores has {s.shape[0]} rows")
        pred = s.argmax(1)
        out["accuracy"] = accuracy(y, pred)
        f1 = f1_scores(y, pred, num_labels=s.shape[1])
        aucs = [roc_auc((y == c).astype(np.int64), s[:, c]) for c in range(s.shape[1])]
    else:
        raise ValueError(f"scores must be [N] or [N, C], got shape {s.shape}")
    out["macro_f1"] = f1["macro"]
    out["micro_f1"] = f1["micro"]
    defined = [a for a in aucs if not np.isnan(a)]
    out["auroc"] = float(np.mean(defined)) if defined else float("nan")
    if len(aucs) > 1:
        keys = names if names is not None and len(names) == len(aucs) else range(len(aucs))
        out["auroc_per_label"] = {k: a for k, a in zip(keys, aucs)}
        out["f1_per_label"] = {k: f for k, f in zip(keys, f1["per_label"])}
    return out
