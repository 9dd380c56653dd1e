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


def test_nlvr2_predictions_are_compared_as_the_official_script_compares_them():
    ex = [{"identifier": "dev-1-0-0", "label": "True"}, {"identifier": "dev-1-1-0", "label": "False"}]
    # any case of true/false counts; class ids and bools stand for the written labels
    assert evaluate_nlvr2({"dev-1-0-0": "TRUE", "dev-1-1-0": "false"}, ex)["accuracy"] == 1.0
    assert evaluate_nlvr2({"dev-1-0-0": 1, "dev-1-1-0": False}, ex)["accuracy"] == 1.0
    # " True" (padded), "1" as text: the official script scores them wrong - and says so
    with pytest.warns(UserWarning, match="neither 'True' nor 'False'"):
        res = evaluate_nlvr2({"dev-1-0-0": " True", "dev-1-1-0": "0"}, ex)
    assert res["accuracy"] == 0.0 and res["num_unscorable"] == 2
    with pytest.raises(TypeError, match="class id 0/1"):
        evaluate_nlvr2({"dev-1-0-0": 2, "dev-1-1-0": 0}, ex)


def test_nlvr2_extra_predictions_for_a_subset_file():
    ex = [{"identifier": "dev-1-0-0", "label": "True"}]
    preds = {"dev-1-0-0": True, "dev-9-0-0": False}
    with pytest.raises(KeyError, match="not in the annotations"):
        evaluate_nlvr2(preds, ex)
    assert evaluate_nlvr2(preds, ex, extra="ignore")["num_examples"] == 1


def test_nlvr2_per_category_accuracy_from_the_annotated_sentences_file(tmp_path):
    from lxmert.evaluation import read_nlvr2_categories

    path = tmp_path / "annotated_dev_examples.txt"
    path.write_text("two dogs\n* cardinality (hard)\n* coreference\n\na red car \n* spatial relations\n"
                    "*\n\nunannotated sentence\n")
    cats = read_nlvr2_categories(path)
    assert cats == {"two dogs": ["cardinality (hard)", "coreference"], "a red car": ["spatial relations"],
                    "unannotated sentence": []}
    preds = {"dev-1-0-0": True, "dev-1-1-0": True, "dev-1-2-1": "True", "dev-1-3-1": 1, "dev-2-0-0": "false"}
    res = evaluate_nlvr2(preds, EXAMPLES, categories=path)
    # "two dogs": dev-1-0-0 right, dev-1-1-0 wrong, dev-2-0-0 right; "a red car": both right
    assert res["per_category"] == {"cardinality (hard)": pytest.approx(2 / 3), "coreference": pytest.approx(2 / 3),
                                   "spatial relations": 1.0}
    assert res["category_counts"] == {"cardinality (hard)": 3, "coreference": 3, "spatial relations": 2}
    bad = tmp_path / "bad.txt"
    bad.write_text("* negation\nsentence\n")
    with pytest.raises(ValueError, match=r"bad.txt:1: phenomenon"):
        read_nlvr2_categories(bad)


# ------------------------------------------------------------------------------ GQA extras
def _scene_question(detailed="colorQuery", annotations=None):
    return {"answer": "red", "isBalanced": True, "imageId": "img", "question": "what color?",
            "types": {"structural": "query", "semantic": "attr", "detailed": detailed},
            "semantic": [{"operation": "select", "argument": "scene"}],
            "annotations": annotations or {"question": {"0": "o1"}, "fullAnswer": {}},
            "entailed": [], "groups": {"global": None}}


SCENE = {"img": {"width": 100, "height": 100,
                 "objects": {"o1": {"x": 0, "y": 0, "w": 50, "h": 50}, "o2": {"x": 50, "y": 0, "w": 50, "h": 50}}}}


def test_gqa_validity_plausibility_and_the_common_rule():
    questions = {"a": _scene_question(), "b": _scene_question("materialCompareCommon")}
    choices = {"a": {"valid": ["red", "blue"], "plausible": ["blue"]},
               "b": {"valid": ["red"], "plausible": ["red"]}}
    # "b" is a ...Common question: its group is ["color", "material", "shape"], not the choices
    res = evaluate_gqa({"a": "red", "b": "red"}, questions, choices=choices)
    assert res["validity"] == 0.5 and res["plausibility"] == 0.0
    res = evaluate_gqa({"a": "red", "b": "material"}, questions, choices=choices)
    assert res["validity"] == 1.0 and res["plausibility"] == 0.5
    with pytest.raises(KeyError, match="not in the choices"):
        evaluate_gqa({"a": "red"}, {"a": questions["a"]}, choices={})


def test_gqa_grounding_by_hand():
    q = {"a": _scene_question()}                      # gold region: o1 = (0, 0, .5, .5)
    boxes = {"a": [[0, 0, 0.5, 0.5, 0.6], [0.25, 0.25, 0.75, 0.75, 0.4]]}
    # box 1 lies inside the region (rate 1), a quarter of box 2 does: 0.6 + 0.4 / 4
    res = evaluate_gqa({"a": "red"}, q, scene_graphs=SCENE, attentions=boxes)
    assert res["grounding"] == pytest.approx(0.7)
    # the whole-image region of scene questions never applies (eval.py tests dict keys)
    q2 = {"a": _scene_question(annotations={"question": {}, "fullAnswer": {}})}
    assert evaluate_gqa({"a": "red"}, q2, scene_graphs=SCENE, attentions=boxes)["grounding"] == 0.0
    # a grid's first index is x: the region o2 = (.5, 0, 1, .5) is cell [1][0]
    grid = {"a": [[0.1, 0.2], [0.3, 0.4]]}
    q3 = {"a": _scene_question(annotations={"question": {"0": "o2"}, "fullAnswer": {}})}
    res = evaluate_gqa({"a": "red"}, q3, scene_graphs=SCENE, attentions=grid, attention_kind="grid")
    assert res["grounding"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="scene_graphs"):
        evaluate_gqa({"a": "red"}, q, attentions=boxes)
    with pytest.raises(ValueError, match="no area"):
        evaluate_gqa({"a": "red"}, q, scene_graphs=SCENE, attentions={"a": [[0.2, 0.2, 0.2, 0.5, 1.0]]})
    with pytest.raises(KeyError, match="no attention map"):
        evaluate_gqa({"a": "red"}, q, scene_graphs=SCENE, attentions={})


def test_gqa_absent_metrics_and_consistency_needs_the_entailed_questions():
    res = evaluate_gqa({"q1": "yes", "q2": "yes", "q3": "cat"}, QUESTIONS)
    assert set(res["absent"]) == {"validity", "plausibility", "grounding"}
    # q1 is right and entails q2; without q2 in the questions, consistency is absent, not 0
    res = evaluate_gqa({"q1": "yes"}, {"q1": QUESTIONS["q1"]})
    assert "consistency" not in res and "'q2'" in res["absent"]["consistency"]


def test_gqa_only_balanced_questions_need_predictions():
    # q4 is unbalanced: eval.py does not ask for its prediction
    res = evaluate_gqa({"q1": "yes", "q2": "yes", "q3": "cat"}, QUESTIONS)
    assert res["num_questions"] == 3
    with pytest.raises(ValueError, match="no prediction"):
        evaluate_gqa({"q1": "yes", "q2": "yes"}, QUESTIONS)
