"""get_metric: the training loop's entry point."""

from __future__ import annotations

import pytest

from lxmert.evaluation import METRICS, get_metric


def test_vqa_metric_with_release_labels_and_official_answers():
    metric = get_metric("vqa")
    release = [
        {"question_id": 1, "label": {"yes": 1.0}, "answer_type": "yes/no"},
        {"question_id": 2, "label": {"2": 0.6, "3": 1.0}, "answer_type": "number"},
    ]
    out = metric({1: "yes", 2: "2"}, release)
    assert out["accuracy"] == pytest.approx(0.8) and out["label_score"] == pytest.approx(0.8)
    assert out["accuracy/number"] == pytest.approx(0.6)
    official = [dict(r, answers=a) for r, a in zip(release, (["yes"] * 10, ["2"] * 2 + ["3"] * 8))]
    out = metric([{"question_id": 1, "answer": "yes"}, {"question_id": 2, "answer": "two"}], official)
    assert out["accuracy"] == pytest.approx(0.8)
    assert out["accuracy/yes/no"] == 1.0
    assert metric.primary == "accuracy"


def test_soft_label_files_break_down_by_answer_and_question_type():
    release = [
        {"question_id": 1, "label": {"yes": 1.0}, "answer_type": "yes/no", "question_type": "is the"},
        {"question_id": 2, "label": {"2": 0.6, "3": 1.0}, "answer_type": "number", "question_type": "how many"},
        {"question_id": 3, "label": {"4": 1.0}, "answer_type": "number", "question_type": "how many"},
    ]
    out = get_metric("vqa")({1: "yes", 2: "2", 3: "5"}, release)
    assert out["accuracy/question_type/how many"] == pytest.approx(0.3)
    assert out["accuracy/question_type/is the"] == 1.0 and out["accuracy/number"] == pytest.approx(0.3)


def test_metric_options_bind_the_vqa_rules():
    data = [{"question_id": 1, "answers": ["no"] * 10}]
    assert get_metric("vqa")({1: "No"}, data)["accuracy"] == 0.0
    assert get_metric("vqa", rules="legacy")({1: "No"}, data)["accuracy"] == 1.0
    assert get_metric("vqa").with_options(rules="legacy")({1: "No"}, data)["accuracy"] == 1.0
    with pytest.raises(TypeError, match="no option 'rules'"):
        get_metric("gqa", rules="legacy")
    with pytest.raises(ValueError, match="rules"):
        get_metric("vqa", rules="2017")({1: "No"}, data)


def test_every_task_has_a_metric_and_unknown_tasks_fail():
    assert set(METRICS) == {"vqa", "gqa", "nlvr2", "aokvqa", "vizwiz", "classification"}
    with pytest.raises(KeyError, match="known"):
        get_metric("coco")


def test_other_registry_metrics():
    nlvr = get_metric("nlvr2")({"dev-1-0-0": 1, "dev-1-1-0": 0},
                               [{"identifier": "dev-1-0-0", "label": 1, "sent": "s"},
                                {"identifier": "dev-1-1-0", "label": 1, "sent": "s"}])
    assert nlvr == {"accuracy": 0.5, "consistency": 0.0, "num_examples": 2.0, "num_sentences": 1.0,
                    "num_unscorable": 0.0}
    gqa = get_metric("gqa")({"a": "left"}, [{"question_id": "a", "label": {"left": 1.0}},
                                            {"question_id": "b", "label": {"no": 1.0}}])
    assert gqa["accuracy"] == 1.0 and gqa["num_questions"] == 1.0
    aok_data = [{"question_id": "q", "choices": ["bike", "car"], "correct_choice_idx": 0,
                 "direct_answers": ["bike"] * 10, "difficult_direct_answer": False},
                {"question_id": "r", "choices": ["bike", "car"], "correct_choice_idx": 1,
                 "direct_answers": ["car"] * 10, "difficult_direct_answer": False}]
    # the official scoring path: an off-choice answer is wrong (no mapping), an unpredicted
    # question counts as wrong
    aok = get_metric("aokvqa")({"q": "Bikes"}, aok_data)
    assert aok["mc_accuracy"] == 0.0 and aok["da_accuracy"] == 0.0 and aok["mc_off_choice"] == 1.0
    aok = get_metric("aokvqa")({"q": {"multiple_choice": "bike", "multiple_choice_map": "bike",
                                      "direct_answer": "bike"}}, aok_data)
    assert aok["mc_accuracy"] == aok["mc_accuracy_map"] == aok["da_accuracy"] == 0.5
    viz = get_metric("vizwiz")({"a.jpg": {"answer": "yes", "answerable": 0.9},
                               "b.jpg": {"answer": "unanswerable", "answerable": 0.1}},
                              [{"image": "a.jpg", "answers": ["yes"] * 10, "answerable": 1},
                               {"image": "b.jpg", "answers": ["unanswerable"] * 10, "answerable": 0}])
    assert viz["accuracy"] == 1.0 and viz["unanswerable_ap"] == 1.0
    cls = get_metric("classification")({"m1": 0.9, "m2": {"scores": 0.2}, "m3": 0.6},
                                       [{"id": "m1", "label": 1}, {"id": "m2", "label": 0},
                                        {"id": "m3", "label": 0}])
    assert cls["accuracy"] == pytest.approx(2 / 3) and cls["auroc"] == 1.0


def test_registry_accepts_dataclass_entries_and_keyed_dicts():
    from dataclasses import dataclass

    @dataclass
    class Entry:              # the shape of lxmert.data.qa.QAEntry
        question_id: int
        img_id: str
        sent: str
        label: dict | None

    entries = [Entry(1, "img", "q?", {"yes": 1.0}), Entry(2, "img", "q?", {"no": 0.3})]
    assert get_metric("vqa")({1: "yes", 2: "no"}, entries)["accuracy"] == pytest.approx(0.65)
    # a dataset object exposing .entries
    ds = type("DS", (), {"entries": entries})()
    assert get_metric("vqa")({1: "no"}, ds)["accuracy"] == 0.0
    # GQA's questions file is keyed by id and its entries do not repeat it
    questions = {"07": {"answer": "left", "isBalanced": True, "types": {"structural": "query",
                                                                          "semantic": "rel"}}}
    out = get_metric("gqa")({"07": "left"}, questions)
    assert out["accuracy"] == 1.0 and out["accuracy/structural_type/query"] == 1.0
    with pytest.raises(KeyError, match="not in the annotations"):
        get_metric("vqa")({3: "x"}, entries)
    with pytest.raises(KeyError, match="need 'answers'"):
        get_metric("vqa")({1: "yes"}, [Entry(1, "i", "s", None)])


def test_score_from_files(tmp_path):
    import json

    from lxmert.evaluation import (
        score,
        write_nlvr2_predictions,
        write_vizwiz_submission,
    )

    # raw NLVR2 annotations are JSON lines with "True"/"False" labels
    ann = tmp_path / "dev.json"
    ann.write_text("\n".join(json.dumps({"identifier": f"dev-1-{i}-0", "label": "True", "sent": "s"})
                             for i in range(2)) + "\n")
    preds = write_nlvr2_predictions(tmp_path / "p.csv", {"dev-1-0-0": True, "dev-1-1-0": False})
    res = score("nlvr2", preds, ann)
    assert res["accuracy"] == 0.5 and res["consistency"] == 0.0
    viz_ann = tmp_path / "val.json"
    viz_ann.write_text(json.dumps([{"image": "a.jpg", "answers": ["yes"] * 10, "answerable": 1,
                                    "answer_type": "yes/no"},
                                   {"image": "b.jpg", "answers": ["no"] * 10, "answerable": 0,
                                    "answer_type": "yes/no"}]))
    sub = write_vizwiz_submission(tmp_path / "v.json", {"a.jpg": "yes", "b.jpg": "yes"},
                                  answerable={"a.jpg": 0.9, "b.jpg": 0.2})
    res = score("vizwiz", sub, viz_ann)
    assert res["accuracy"] == 0.5 and res["unanswerable_ap"] == 1.0
    (tmp_path / "bad.json").write_text('{"a": 1}\n{oops\n')
    with pytest.raises(ValueError, match="bad.json:2"):
        score("nlvr2", preds, tmp_path / "bad.json")
