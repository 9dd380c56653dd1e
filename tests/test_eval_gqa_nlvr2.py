"""GQA exact match (+ official breakdowns) and NLVR2 accuracy / consistency."""

from __future__ import annotations

import pytest

from lxmert.evaluation.gqa import evaluate_gqa, gqa_steps
from lxmert.evaluation.nlvr2 import evaluate_nlvr2, sentence_key, to_bool


def _q(answer, structural, semantic, balanced=True, entailed=(), group=None, text="is it red?"):
    return {
        "answer": answer, "isBalanced": balanced, "question": text,
        "types": {"structural": structural, "semantic": semantic, "detailed": "x"},
        "semantic": [{"operation": "select", "argument": "cat"},
                     {"operation": "exist", "argument": "?"},
                     {"operation": "query", "argument": "name"}],
        "entailed": list(entailed), "groups": {"global": group, "local": None},
    }


QUESTIONS = {
    "q1": _q("yes", "verify", "attr", entailed=["q2"], group="g"),
    "q2": _q("no", "verify", "attr", group="g"),
    "q3": _q("cat", "query", "obj", text="what animal is it?"),
    "q4": _q("dog", "query", "rel", balanced=False),
}


def test_gqa_steps_skip_exist_and_query_name():
    assert gqa_steps(QUESTIONS["q1"]) == 1


def test_gqa_official_breakdowns_by_hand():
    preds = {"q1": "yes", "q2": "yes", "q3": "cat", "q4": "cat"}
    res = evaluate_gqa(preds, QUESTIONS)
    # q4 is unbalanced -> not counted. Correct: q1, q3; wrong: q2.
    assert res["num_questions"] == 3
    assert res["accuracy"] == pytest.approx(2 / 3)
    assert res["binary"] == pytest.approx(0.5)          # verify questions q1, q2
    assert res["open"] == 1.0                           # query question q3
    assert res["per_structural_type"] == {"query": 1.0, "verify": 0.5}
    assert res["per_semantic_type"] == {"attr": 0.5, "obj": 1.0}
    assert res["per_steps"] == {1: pytest.approx(2 / 3)}
    assert res["per_length"] == {3: 0.5, 4: 1.0}
    # q1 is right and entails q2, which is wrong -> consistency 0.
    assert res["consistency"] == 0.0
    # group g: gold {yes: 1, no: 1}, predicted {yes: 2}: chi2 = (2-1)^2/1 + (0-1)^2/1 = 2,
    # weighted by 2 questions / 2 -> 2, divided by 100.
    assert res["distribution"] == pytest.approx(0.02)
    assert res["official"]["accuracy"] == 66.67
    assert res["official"]["per_structural_type"]["verify"] == (50.0, 2)
    assert evaluate_gqa(preds, QUESTIONS, balanced_only=False)["num_questions"] == 4


def test_gqa_exact_match_has_no_normalisation():
    assert evaluate_gqa({"q3": "Cat"}, {"q3": QUESTIONS["q3"]})["accuracy"] == 0.0


def test_gqa_release_format_label_dicts():
    data = [{"question_id": "a", "label": {"left": 1.0}}, {"question_id": "b", "label": {"no": 1.0}}]
    res = evaluate_gqa({"a": "left", "b": "yes"}, data)
    assert res["accuracy"] == 0.5
    assert "binary" not in res and "per_structural_type" not in res
    with pytest.raises(ValueError, match="no prediction"):
        evaluate_gqa({"a": "left"}, data)


# ------------------------------------------------------------------------------ NLVR2
EXAMPLES = [
    {"identifier": "dev-1-0-0", "label": "True", "sent": "two dogs"},
    {"identifier": "dev-1-1-0", "label": "False", "sent": "two dogs"},
    {"identifier": "dev-1-2-1", "label": "True", "sent": "a red car"},
    {"identifier": "dev-1-3-1", "label": "True", "sent": "a red car"},
    {"identifier": "dev-2-0-0", "label": 0, "sent": "two dogs"},   # release json uses 0/1
]


def test_sentence_key_blanks_the_pair_field():
    assert sentence_key("dev-850-2-0") == "dev-850--0"
    with pytest.raises(ValueError):
        sentence_key("bad")


def test_nlvr2_accuracy_and_consistency_by_hand():
    preds = {"dev-1-0-0": True, "dev-1-1-0": True, "dev-1-2-1": "True", "dev-1-3-1": 1,
             "dev-2-0-0": "false"}
    res = evaluate_nlvr2(preds, EXAMPLES)
    assert res["accuracy"] == pytest.approx(4 / 5)
    # sentences: dev-1--0 (pairs 0, 1: one wrong), dev-1--1 (both right), dev-2--0 (right)
    assert res["num_sentences"] == 3
    assert res["consistency"] == pytest.approx(2 / 3)
    # grouping by text merges dev-1--0 and dev-2--0 ("two dogs"): 1 of 2 consistent.
    by_sent = evaluate_nlvr2(preds, EXAMPLES, group_by="sent")
    assert by_sent["num_sentences"] == 2 and by_sent["consistency"] == 0.5


def test_nlvr2_missing_predictions_and_bad_labels():
    with pytest.raises(ValueError, match="no prediction"):
        evaluate_nlvr2({"dev-1-0-0": True}, EXAMPLES)
    res = evaluate_nlvr2({"dev-1-0-0": True}, EXAMPLES, missing="zero")
    assert res["accuracy"] == pytest.approx(1 / 5) and res["consistency"] == 0.0
    with pytest.raises(ValueError, match="True/False"):
        to_bool("maybe")
    with pytest.raises(ValueError, match="group_by"):
        evaluate_nlvr2({}, EXAMPLES, group_by="prefix")
