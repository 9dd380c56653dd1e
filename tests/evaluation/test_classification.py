"""Accuracy, F1, AUROC (ties) and AP against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lxmert.evaluation.classification import (
    average_precision,
    evaluate_classification,
    f1_scores,
    rankdata,
    roc_auc,
    subset_accuracy,
)


def test_rankdata_average_ties():
    assert rankdata([0.1, 0.5, 0.5, 0.9]).tolist() == [1.0, 2.5, 2.5, 4.0]
    assert rankdata([3, 3, 3]).tolist() == [2.0, 2.0, 2.0]


def test_auroc_with_ties_by_hand():
    # pairs (pos, neg): (0.5, 0.1)=1, (0.5, 0.5)=1/2, (0.9, 0.1)=1, (0.9, 0.5)=1 -> 3.5/4
    assert roc_auc([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.9]) == pytest.approx(0.875)
    assert roc_auc([0, 1], [0.3, 0.3]) == 0.5
    assert roc_auc([1, 0], [0.9, 0.1]) == 1.0
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3]))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 4)), min_size=2, max_size=25))
def test_auroc_equals_pairwise_definition(pairs):
    y = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs], dtype=float)
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        assert math.isnan(roc_auc(y, s))
        return
    expected = np.mean([(a > b) + 0.5 * (a == b) for a in pos for b in neg])
    assert roc_auc(y, s) == pytest.approx(expected)


def test_average_precision_by_hand():
    # 0.9: P=1 R=1/2; 0.8: P=1/2 R=1/2; 0.7: P=2/3 R=1; 0.1: P=1/2 R=1 -> 1/2 + 1/2*2/3
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(5 / 6)
    # a tie enters as one threshold: 0.5 (one +, one -): P=1/2 R=1/2; 0.2: P=2/3 R=1
    assert average_precision([1, 0, 1], [0.5, 0.5, 0.2]) == pytest.approx(0.25 + 1 / 3)
    assert math.isnan(average_precision([0, 0], [0.1, 0.2]))
    with pytest.raises(ValueError, match="0/1"):
        average_precision([2, 0], [0.1, 0.2])


def test_f1_single_label_by_hand():
    f1 = f1_scores([0, 1, 2, 2], [0, 2, 2, 1])
    # class 0: F1 1; class 1: TP0 FP1 FN1 -> 0; class 2: TP1 FP1 FN1 -> 2/4
    assert f1["per_label"] == [1.0, 0.0, 0.5]
    assert f1["macro"] == pytest.approx(0.5)
    assert f1["micro"] == pytest.approx(0.5)      # equals accuracy for single-label


def test_multilabel_metrics_by_hand():
    y = np.array([[1, 0], [1, 1]])
    s = np.array([[0.9, 0.2], [0.4, 0.7]])
    res = evaluate_classification(y, s, label_names=["hate", "humour"])
    assert res["accuracy"] == 0.5 and res["label_accuracy"] == 0.75
    assert subset_accuracy(y, (s >= 0.5).astype(int)) == 0.5
    # label 0: TP1 FN1 -> 2/3; label 1: TP1 -> 1; micro: TP2 FN1 -> 4/5
    assert res["f1_per_label"] == {"hate": pytest.approx(2 / 3), "humour": 1.0}
    assert res["micro_f1"] == pytest.approx(0.8)
    # label 0 has no negative -> AUROC undefined, macro over label 1 only
    assert math.isnan(res["auroc_per_label"]["hate"]) and res["auroc"] == 1.0


def test_binary_and_multiclass_evaluation():
    res = evaluate_classification([0, 1, 1, 0], [0.2, 0.6, 0.4, 0.7])
    assert res["accuracy"] == 0.5
    assert res["auroc"] == pytest.approx(0.5)     # pos {0.6,0.4} vs neg {0.2,0.7}: 2 of 4
    assert res["f1"] == pytest.approx(0.5)
    mc = evaluate_classification([0, 1, 2], [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.5, 0.1, 0.4]])
    assert mc["accuracy"] == pytest.approx(2 / 3)
    assert mc["auroc_per_label"][2] == 1.0      # class 2 scores: 0.4 vs 0.1, 0.1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 5)), min_size=1, max_size=25))
def test_average_precision_equals_threshold_definition(pairs):
    y = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs], dtype=float)
    if y.sum() == 0:
        assert math.isnan(average_precision(y, s))
        return
    ap, prev_r = 0.0, 0.0
    for t in sorted(set(s.tolist()), reverse=True):
        sel = s >= t
        p = y[sel].sum() / sel.sum()
        r = y[sel].sum() / y.sum()
        ap += (r - prev_r) * p
        prev_r = r
    assert average_precision(y, s) == pytest.approx(ap)
