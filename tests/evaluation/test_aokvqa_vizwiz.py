"""A-OKVQA MC/DA and choice mapping; VizWiz accuracy (its own contractions table) and
answerability AP."""

from __future__ import annotations

import numpy as np
import pytest

from lxmert.evaluation.aokvqa import (
    choice_scores_from_answer_scores,
    da_accuracy,
    evaluate_aokvqa,
    map_to_choice,
    select_choice,
)
from lxmert.evaluation.vizwiz import (
    evaluate_vizwiz,
    normalize_vizwiz_answer,
    vizwiz_accuracy,
)

DATASET = [
    {"question_id": "a", "choices": ["bike", "car", "train", "boat"], "correct_choice_idx": 0,
     "direct_answers": ["bike"] * 4 + ["bicycle"] * 6, "difficult_direct_answer": False},
    {"question_id": "b", "choices": ["2", "3", "4", "5"], "correct_choice_idx": 1,
     "direct_answers": ["3"] * 2 + ["4"] * 8, "difficult_direct_answer": False},
    {"question_id": "c", "choices": ["red", "blue", "green", "white"], "correct_choice_idx": 3,
     "direct_answers": ["white"] * 10, "difficult_direct_answer": True},
]


def test_da_accuracy_is_min_one_matches_over_three_without_leave_one_out():
    assert da_accuracy("3", ["3"] * 2 + ["4"] * 8) == pytest.approx(2 / 3)   # VQA LOO would be 0.6
    assert da_accuracy("4", ["3"] * 2 + ["4"] * 8) == 1.0
    assert da_accuracy("Three", ["3"] * 3) == 0.0          # exact strings, no normalisation
    assert da_accuracy("three", ["three"] * 3) == 1.0


def test_evaluate_aokvqa_by_hand():
    preds = {"a": {"multiple_choice": "bike", "direct_answer": "bicycle"},
             "b": {"multiple_choice": "4", "direct_answer": "3"},
             "c": {"multiple_choice": "white", "direct_answer": "white"}}
    res = evaluate_aokvqa(preds, DATASET)
    assert res["mc_accuracy"] == pytest.approx(2 / 3)          # a, c right
    # official DA: non-difficult questions only: a -> 1, b -> 2/3
    assert res["da_accuracy"] == pytest.approx((1 + 2 / 3) / 2)
    assert res["da_accuracy_difficult"] == 1.0
    assert res["da_accuracy_all"] == pytest.approx((1 + 2 / 3 + 1) / 3)
    # the script prints sum / n * 100, unrounded
    assert res["official"] == {"mc": 2 / 3 * 100, "da": (1 + 2 / 3) / 2 * 100}
    assert res["per_question"]["mc"] == {"a": 1.0, "b": 0.0, "c": 1.0}
    # missing predictions score 0 (official strict=False), MC only when only MC is given
    only_mc = evaluate_aokvqa({"a": {"multiple_choice": "bike"}}, DATASET)
    assert only_mc["mc_accuracy"] == pytest.approx(1 / 3) and "da_accuracy" not in only_mc
    with pytest.raises(KeyError, match="not in the dataset"):
        evaluate_aokvqa({"zz": "bike"}, DATASET)


def test_map_to_choice_rules():
    choices = ["bike", "red car", "train", "two boats"]
    assert map_to_choice("train", choices) == "train"              # exact
    assert map_to_choice("The Train.", choices) == "train"         # normalised exact
    assert map_to_choice("2 boats", choices) == "two boats"        # number word normalised
    assert map_to_choice("car", choices) == "red car"              # word overlap
    assert map_to_choice("bikes", choices) == "bike"               # character trigrams
    # a user embedding reproduces the official GloVe-style mapping
    vecs = {"vehicle": [1, 0], "bike": [0, 1], "red car": [0.9, 0.1], "train": [0.5, 0.5],
            "two boats": [-1, 0]}
    assert map_to_choice("vehicle", choices, embed=lambda xs: np.array([vecs[x] for x in xs])) == "red car"


def test_scoring_never_maps_answers_mapping_is_a_prediction_step():
    # Off-choice and differently cased answers score 0, as in the leaderboard script.
    res = evaluate_aokvqa({"a": "bikes", "b": "three", "c": "White"}, DATASET)
    assert res["mc_accuracy"] == 0.0 and res["mc_off_choice"] == 3
    with pytest.raises(TypeError, match="map_choices"):
        evaluate_aokvqa({"a": "bikes"}, DATASET, map_choices=True)
    mapped = {q: map_to_choice(a, next(e["choices"] for e in DATASET if e["question_id"] == q))
              for q, a in {"a": "bikes", "b": "three", "c": "White"}.items()}
    assert mapped == {"a": "bike", "b": "3", "c": "white"}
    assert evaluate_aokvqa(mapped, DATASET)["mc_accuracy"] == 1.0


@pytest.mark.parametrize("flag, in_da", [(False, True), (True, False), (0, False), (None, False)])
def test_da_keeps_questions_whose_difficult_flag_is_false(flag, in_da):
    # eval_predictions.py keeps ``v['difficult_direct_answer'] is False``: 0 or None is not False.
    data = [dict(DATASET[0], difficult_direct_answer=flag), DATASET[1]]
    res = evaluate_aokvqa({"a": {"direct_answer": "bike"}, "b": {"direct_answer": "3"}}, data)
    assert res["da_num_questions"] == (2 if in_da else 1)


def test_aokvqa_extra_mc_answers_and_missing_questions():
    preds = {"a": {"multiple_choice": "car", "multiple_choice_map": "bike", "direct_answer": "bike"}}
    res = evaluate_aokvqa(preds, DATASET)
    # b and c have no prediction: they count, with 0 (official strict=False)
    assert res["mc_accuracy"] == 0.0 and res["mc_accuracy_map"] == pytest.approx(1 / 3)
    assert res["mc_num_questions"] == 3 and res["da_accuracy"] == 0.5   # a: 4 matches -> 1, b: 0
    assert evaluate_aokvqa(preds, DATASET, missing="ignore")["mc_accuracy_map"] == 1.0
    with pytest.raises(ValueError, match="no multiple_choice prediction"):
        evaluate_aokvqa(preds, DATASET, missing="error")
    with pytest.raises(KeyError, match="unknown key 'rationale'"):
        evaluate_aokvqa({"a": {"rationale": "x"}}, DATASET)
    with pytest.raises(TypeError, match="must be a string"):
        evaluate_aokvqa({"a": {"multiple_choice": 3}}, DATASET)


def test_select_choice_and_choice_scores():
    assert select_choice(["x", "y", "z"], [0.1, 0.7, 0.7]) == "y"
    scores = choice_scores_from_answer_scores(["Bike", "car", "zebra"], [0.2, 0.9, 0.1],
                                              {"bike": 0, "car": 1, "boat": 2})
    assert scores == [0.2, 0.9, float("-inf")]


# ------------------------------------------------------------------------------ VizWiz
VIZ = [
    {"image": "v0.jpg", "answers": ["yes"] * 10, "answer_type": "yes/no", "answerable": 1},
    {"image": "v1.jpg", "answers": ["unanswerable"] * 6 + ["blue"] * 4, "answer_type": "unanswerable",
     "answerable": 0},
    {"image": "v2.jpg", "answers": [{"answer": "3", "answer_confidence": "yes"}] * 2 +
     [{"answer": "4", "answer_confidence": "maybe"}] * 8, "answer_type": "number", "answerable": 1},
    {"image": "v3.jpg", "answers": ["soup"] * 10, "answer_type": "other", "answerable": 0},
]


def test_vizwiz_accuracy_per_type():
    preds = {"v0.jpg": "Yes.", "v1.jpg": "unanswerable", "v2.jpg": "three", "v3.jpg": "pasta"}
    res = evaluate_vizwiz(preds, VIZ)
    # v0 1.0, v1 1.0 (6 matches), v2 "3": 2 of 10 -> 0.6, v3 0
    assert res["accuracy"] == pytest.approx(2.6 / 4)
    assert res["per_answer_type"] == {"yes/no": 1.0, "unanswerable": 1.0,
                                      "number": pytest.approx(0.6), "other": 0.0}
    assert res["official"]["overall"] == 65.0
    assert res["per_question"] == {"v0.jpg": 1.0, "v1.jpg": 1.0, "v2.jpg": pytest.approx(0.6), "v3.jpg": 0.0}


# (prediction, ground truth x10, accuracy): the VizWiz table restores the typographic
# apostrophe, and the ground truth is compared exactly as stored.
VIZWIZ_CASES = [
    ("dont", ["don\u2019t"] * 10, 1.0),
    ("dont", ["don't"] * 10, 0.0),            # VQA's table would give 1.0 here
    ("don't", ["don't"] * 10, 1.0),           # no key: left as typed
    ("don\u2019t", ["don\u2019t"] * 10, 1.0),
    ("whats", ["what\u2019s"] * 10, 1.0),
    ("wheres", ["where's"] * 10, 1.0),        # one of the entries that kept the straight one
    ("weve", ["we've"] * 10, 1.0),
    ("cant", ["can't"] * 10, 1.0),
    ("Yes.", ["yes"] * 10, 1.0),              # the prediction is always normalised
    ("yes", ["Yes"] * 10, 0.0),               # ... the ground truth never
    ("yes", ["yes "] * 10, 0.0),
]


@pytest.mark.parametrize("pred, answers, expected", VIZWIZ_CASES)
def test_vizwiz_contractions_and_raw_ground_truth(pred, answers, expected):
    assert vizwiz_accuracy(pred, answers) == pytest.approx(expected)


def test_vizwiz_normalisation_differs_from_vqa_only_in_the_table():
    from lxmert.evaluation.vqa import normalize_vqa_answer

    assert normalize_vizwiz_answer("Dont  go!") == "don\u2019t go"
    assert normalize_vqa_answer("Dont  go!") == "don't go"
    assert normalize_vizwiz_answer("The two Dogs.") == normalize_vqa_answer("The two Dogs.") == "2 dogs"


def test_vizwiz_answerability_ap_by_hand():
    # answerable gt [1, 0, 1, 0]; p(answerable) below. Unanswerability: positives v1, v3 with
    # scores 1-p = [0.2, 0.7, 0.6, 0.6] -> ranking v1 0.7 (+), then the tie v2/v3 at 0.6
    # (one +, one -), then v0 0.2 (-).
    # thresholds: 0.7: P=1, R=1/2; 0.6: P=2/3, R=1; 0.2: P=1/2, R=1
    # AP = 1/2*1 + 1/2*2/3 = 5/6.
    p = {"v0.jpg": 0.8, "v1.jpg": 0.3, "v2.jpg": 0.4, "v3.jpg": 0.4}
    res = evaluate_vizwiz({}, VIZ, p)
    assert res["unanswerable_ap"] == pytest.approx(5 / 6)
    # F1 at 1-p > 0.5: predicted unanswerable v1, v2, v3 -> TP 2, FP 1, FN 0 -> 4/5
    assert res["unanswerable_f1"] == pytest.approx(0.8)
    # answerable AP: scores [0.8, 0.3, 0.4, 0.4], positives v0, v2:
    # 0.8: P=1 R=1/2; 0.4 (v2 +, v3 -): P=2/3 R=1 -> AP = 1/2 + 1/2*2/3 = 5/6
    assert res["answerable_ap"] == pytest.approx(5 / 6)
    assert res["official"]["unanswerability"] == {"average_precision": 83.33, "f1_score": 80.0}
    derived = evaluate_vizwiz({"v0.jpg": "yes", "v1.jpg": "Unanswerable", "v2.jpg": "3",
                               "v3.jpg": "soup"}, VIZ, "from_answers")
    # hard scores: unanswerable = [0, 1, 0, 0]: AP = 1*1/2 + (1/2)*(2/4) = 0.75
    assert derived["unanswerable_ap"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluate_vizwiz({}, VIZ, {k: 2.0 for k in p})
