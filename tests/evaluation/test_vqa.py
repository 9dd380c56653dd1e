"""Official VQA evaluation: normalisation, the master and legacy rules, leave-one-out accuracy,
aggregation, soft scores."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lxmert.evaluation.vqa import (
    CONTRACTIONS,
    evaluate_vqa,
    label_score,
    leave_one_out_accuracy,
    normalize_vqa_answer,
    process_digit_article,
    process_punctuation,
    soft_scores,
    vqa_accuracy,
    vqa_soft_score,
)


# --------------------------------------------------------------------- normalisation
@pytest.mark.parametrize("text, expected", [
    ("black/white", "black white"),      # mark not touching a space -> space
    ("black / white", "black  white"),   # mark touching a space -> deleted
    ("1,000", "1000"),                   # comma between digits -> every mark deleted
    ("hello,world", "hello world"),
    ("hello, world", "hello world"),
    ("yes.", "yes"),                     # period not followed by a digit -> removed
    ("2.5", "2.5"),                      # period before a digit kept
    ("u.s.a.", "usa"),
    ("what?!", "what  "),                # neither mark touches a space: both become spaces
])
def test_process_punctuation(text, expected):
    assert process_punctuation(text) == expected


def test_punctuation_decision_uses_the_original_text():
    # '(' touches a space in the input, so it is deleted everywhere; ')' touches none -> space.
    assert process_punctuation("a (b)c") == "a b c"


def test_period_removal_is_capped_at_32_like_the_official_call():
    # The official code passes re.UNICODE (32) where re.sub's count goes.
    assert process_punctuation("." * 40) == "." * 8


@pytest.mark.parametrize("text, expected", [
    ("none", "0"), ("zero", "0"), ("One", "1"), ("two", "2"), ("three", "3"), ("four", "4"),
    ("five", "5"), ("six", "6"), ("seven", "7"), ("eight", "8"), ("nine", "9"), ("ten", "10"),
    ("eleven", "eleven"),                 # not in the official map
    ("Two Dogs", "2 dogs"),
    ("a dog", "dog"), ("an apple", "apple"), ("The Cat", "cat"), ("the", ""),
    ("dont", "don't"), ("whats", "what's"), ("isnt", "isn't"), ("cant", "can't"),
    ("youre", "you're"), ("wont", "won't"), ("oclock", "o'clock"),
    ("Im", "im"),                         # capitalised key can never match after lower()
    ("somebody'd", "somebodyd"),          # odd official entry kept
])
def test_process_digit_article(text, expected):
    assert process_digit_article(text) == expected


def test_contractions_table_is_complete():
    # 120 entries in the official vqaEval.py table.
    assert len(CONTRACTIONS) == 120
    assert CONTRACTIONS["whatll"] == "what'll" and CONTRACTIONS["yall'd've"] == "y'all'd've"


def test_normalize_vqa_answer_full_pipeline():
    assert normalize_vqa_answer("  The two\tDogs.\n") == "2 dogs"
    assert normalize_vqa_answer("Whats that?") == "what's that"


# --------------------------------------------------------------------- per-question accuracy
def brute_force_loo(pred: str, answers: list[str]) -> float:
    """The definition spelled out: drop each annotator in turn, count matches among the rest."""
    accs = []
    for i in range(len(answers)):
        rest = answers[:i] + answers[i + 1:]
        accs.append(min(1.0, sum(a == pred for a in rest) / 3))
    return sum(accs) / len(accs)


@pytest.mark.parametrize("m, expected", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_leave_one_out_by_hand(m, expected):
    # By hand, m=2: the 2 subsets without a matching annotator see 1 match (1/3), the 8
    # others see 2 (2/3): (2*1/3 + 8*2/3)/10 = 18/30 = 0.6. m=3: (3*2/3 + 7*1)/10 = 0.9.
    # m=4: every subset still has >= 3 matches -> 1.0. m=1: (1*0 + 9*1/3)/10 = 0.3.
    answers = ["yes"] * m + ["no"] * (10 - m)
    assert leave_one_out_accuracy("yes", answers) == pytest.approx(expected)
    assert vqa_soft_score(m) == pytest.approx(expected)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=12), st.sampled_from(["a", "b", "z"]))
def test_leave_one_out_matches_brute_force(answers, pred):
    assert leave_one_out_accuracy(pred, answers) == pytest.approx(brute_force_loo(pred, answers))


def test_legacy_vqa_accuracy_normalises_prediction():
    assert vqa_accuracy("Two.", ["2"] * 10, rules="legacy") == 1.0
    assert vqa_accuracy("the dog", ["dog"] * 3 + ["cat"] * 7, rules="legacy") == pytest.approx(0.9)


def test_legacy_gt_answers_get_punctuation_only_when_they_disagree():
    # Disagreeing annotators: "t-shirt" is processed to "t shirt" and matches.
    assert vqa_accuracy("t-shirt", ["t-shirt"] * 5 + ["shirt"] * 5, rules="legacy") == 1.0
    # Unanimous annotators are left untouched, so the normalised prediction "t shirt" does
    # not match "t-shirt" - the pre-2021 script behaves exactly like this.
    assert vqa_accuracy("t-shirt", ["t-shirt"] * 10, rules="legacy") == 0.0
    # Digits are never applied to the ground truth.
    assert vqa_accuracy("2", ["two"] * 5 + ["three"] * 5, rules="legacy") == 0.0


# One row per rule of the two eras: (prediction, answers, master, legacy).
RULE_CASES = [
    # master touches nothing when the ten answers agree: case, punctuation and number
    # words of the prediction then decide.
    ("No", ["no"] * 10, 0.0, 1.0),
    ("no", ["no"] * 10, 1.0, 1.0),
    ("Two.", ["2"] * 10, 0.0, 1.0),
    ("t-shirt", ["t-shirt"] * 10, 1.0, 0.0),
    ("dont", ["don't"] * 10, 0.0, 1.0),
    # ... but master strips whitespace on both sides first, legacy never cleans the answers.
    ("  yes\n", ["yes"] * 10, 1.0, 1.0),
    ("yes", ["yes\n"] * 10, 1.0, 0.0),
    ("yes", [" yes"] * 5 + ["yes "] * 5, 1.0, 0.0),
    # Disagreeing answers: master normalises them fully (digits too), legacy only their
    # punctuation.
    ("2", ["two"] * 5 + ["three"] * 5, 1.0, 0.0),
    ("the dog", ["Dog"] * 3 + ["cat"] * 7, 0.9, 0.0),
    ("t-shirt", ["t-shirt"] * 5 + ["shirt"] * 5, 1.0, 1.0),
    ("No", ["no"] * 9 + ["nope"], 1.0, 1.0),
    # Unanimous only after cleaning (master): set() is taken on the cleaned answers.
    ("No", ["no", " no"] * 5, 0.0, 1.0),
]


@pytest.mark.parametrize("pred, answers, master, legacy", RULE_CASES)
def test_master_and_legacy_rules(pred, answers, master, legacy):
    assert vqa_accuracy(pred, answers) == pytest.approx(master)
    assert vqa_accuracy(pred, answers, rules="master") == pytest.approx(master)
    assert vqa_accuracy(pred, answers, rules="legacy") == pytest.approx(legacy)


def test_identical_answer_records_exclude_each_other_like_the_official_comparison():
    # vqaEval.py drops from "the other annotators" every record equal to the current one
    # (item != gtAnsDatum). With answer_ids (every official file) that is leave-one-out;
    # identical hand-made records leave nobody to match.
    same = [{"answer": "yes", "answer_confidence": "yes"}] * 10
    assert vqa_accuracy("yes", same) == 0.0
    with_ids = [{"answer": "yes", "answer_confidence": "yes", "answer_id": i} for i in range(10)]
    assert vqa_accuracy("yes", with_ids) == 1.0
    # 4 records "yes"/yes + 1 record "yes"/maybe: each "yes"/yes sees only the other kind.
    mixed = ([{"answer": "yes", "answer_confidence": "yes"}] * 4 + [{"answer": "yes", "answer_confidence": "maybe"}]
             + [{"answer": "no", "answer_confidence": "yes", "answer_id": i} for i in range(5)])
    # "yes"/yes x4 -> 1 other match (1/3); "yes"/maybe -> 4 (1); the five "no" -> 5 (1).
    assert vqa_accuracy("yes", mixed) == pytest.approx((4 / 3 + 1 + 5) / 10)
    # plain strings are distinct annotators
    assert vqa_accuracy("yes", ["yes"] * 10) == 1.0


def test_rules_are_checked():
    with pytest.raises(ValueError, match="master"):
        vqa_accuracy("x", ["x"] * 10, rules="2017")
    with pytest.raises(ValueError, match="legacy"):
        evaluate_vqa({1: "yes"}, ANNOTATIONS, rules="old", missing="ignore")
    with pytest.raises(TypeError, match="question_id 1"):
        evaluate_vqa({1: 3}, ANNOTATIONS, missing="ignore")


# --------------------------------------------------------------------- aggregation
def _ann(qid, answers, at, qt):
    return {"question_id": qid, "answers": [{"answer": a, "answer_id": i + 1} for i, a in enumerate(answers)],
            "answer_type": at, "question_type": qt}


ANNOTATIONS = {"annotations": [
    _ann(1, ["yes"] * 10, "yes/no", "is the"),
    _ann(2, ["2"] * 2 + ["3"] * 8, "number", "how many"),
    _ann(3, ["red"] * 3 + ["blue"] * 7, "other", "what color"),
    _ann(4, ["no"] * 10, "yes/no", "is the"),
]}


def test_evaluate_vqa_overall_and_breakdowns():
    preds = {1: "Yes", 2: "two", 3: "red", 4: "yes"}
    res = evaluate_vqa(preds, ANNOTATIONS, rules="legacy")
    # per question: 1.0, 0.6, 0.9, 0.0
    assert res["per_question"] == {1: 1.0, 2: pytest.approx(0.6), 3: pytest.approx(0.9), 4: 0.0}
    assert res["accuracy"] == pytest.approx(2.5 / 4)
    assert res["per_answer_type"] == {"yes/no": 0.5, "number": pytest.approx(0.6),
                                      "other": pytest.approx(0.9)}
    assert res["per_question_type"]["is the"] == 0.5
    assert res["official"] == {
        "overall": 62.5,
        "perAnswerType": {"yes/no": 50.0, "number": 60.0, "other": 90.0},
        "perQuestionType": {"is the": 50.0, "how many": 60.0, "what color": 90.0},
    }
    assert res["num_questions"] == 4 and res["rules"] == "legacy"
    # master: question 1 has ten identical "yes", so "Yes" is not normalised and scores 0.
    master = evaluate_vqa(preds, ANNOTATIONS)
    assert master["per_question"] == {1: 0.0, 2: pytest.approx(0.6), 3: pytest.approx(0.9), 4: 0.0}
    assert master["official"]["overall"] == 37.5 and master["rules"] == "master"


def test_evaluate_vqa_missing_and_unknown_ids():
    with pytest.raises(ValueError, match="no prediction"):
        evaluate_vqa({1: "yes"}, ANNOTATIONS)
    assert evaluate_vqa({1: "yes"}, ANNOTATIONS, missing="zero")["accuracy"] == 0.25
    assert evaluate_vqa({1: "yes"}, ANNOTATIONS, missing="ignore")["accuracy"] == 1.0
    with pytest.raises(KeyError, match="str vs int"):
        evaluate_vqa({"1": "yes"}, ANNOTATIONS, missing="ignore")
    with pytest.raises(KeyError, match="answers"):
        evaluate_vqa({9: "x"}, [{"question_id": 9, "label": {"x": 1.0}}])


# --------------------------------------------------------------------- training targets
def test_soft_scores():
    answers = ["cat"] * 5 + ["dog"] * 3 + ["bird"] * 2
    assert soft_scores(answers) == {"cat": 1.0, "dog": pytest.approx(0.9), "bird": pytest.approx(0.6)}
    assert soft_scores([{"answer": "a"}, {"answer": "b"}]) == {"a": 0.3, "b": 0.3}
    assert soft_scores(answers, vocabulary={"cat": 0, "bird": 1}) == {"cat": 1.0, "bird": pytest.approx(0.6)}
    assert soft_scores(["Two", "2", "two"], normalize=True) == {"2": pytest.approx(0.9)}
    with pytest.raises(ValueError):
        vqa_soft_score(-1)


def test_soft_scores_equal_official_accuracy_for_every_count():
    for m in range(11):
        answers = ["x"] * m + [f"o{i}" for i in range(10 - m)]
        for rules in ("master", "legacy"):
            assert vqa_accuracy("x", answers, rules=rules) == pytest.approx(vqa_soft_score(m))


def test_label_score_is_the_release_quick_metric():
    labels = {1: {"yes": 1.0}, 2: {"2": 0.6, "3": 1.0}, 3: {"red": 0.9}}
    preds = {1: "yes", 2: "2", 3: "blue"}
    assert label_score(preds, labels) == pytest.approx((1.0 + 0.6 + 0.0) / 3)
    with pytest.raises(KeyError):
        label_score({7: "x"}, labels)


def test_all_permutations_of_a_question_give_the_same_accuracy():
    answers = ["a", "a", "b", "c", "a", "b", "d", "e", "f", "g"]
    for rules in ("master", "legacy"):
        ref = vqa_accuracy("a", answers, rules=rules)
        for perm in itertools.islice(itertools.permutations(answers), 50):
            assert vqa_accuracy("a", list(perm), rules=rules) == pytest.approx(ref)
