"""Readers of A-OKVQA, VizWiz and classification JSONL, and the choice / answerability rules."""

from __future__ import annotations

import json

import numpy as np
import pytest

from support.tiny import tiny_store
from lxmert.data.aokvqa import (AOKVQADataset, aokvqa_predictions, aokvqa_soft_label, build_aokvqa_answer_table,
                                mc_predictions)
from lxmert.data.classification import ClassificationDataset
from lxmert.data.sources import DataFormatError
from lxmert.data.vizwiz import ANSWERABLE, VizWizDataset, build_vizwiz_answer_table, vizwiz_predictions
from lxmert.evaluation import evaluate_aokvqa, evaluate_vizwiz
from lxmert.evaluation.aokvqa import da_accuracy
from lxmert.text import AnswerTable

COCO = ["COCO_val2014_000000000042", "COCO_train2014_000000000007"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("beyond_store")
    return tiny_store(root, COCO + ["VizWiz_val_00000001", "VizWiz_val_00000002", "meme_1", "meme_2"])


def _aok(qid, image_id, answers, choices=("red", "blue", "dog", "two"), correct=0, difficult=False):
    return {"question_id": qid, "image_id": image_id, "question": "what colour is the ball?",
            "choices": list(choices), "correct_choice_idx": correct, "direct_answers": list(answers),
            "difficult_direct_answer": difficult, "rationales": ["..."]}


def test_aokvqa_reader_soft_scores_equal_the_da_metric_and_images_are_found(tmp_path, store):
    answers = ["red"] * 4 + ["blue"] * 2 + ["crimson"] * 1 + ["dog"] * 3
    data = [_aok("a1", 42, answers), _aok("a2", 7, ["blue"] * 10, correct=1)]
    path = tmp_path / "aokvqa_v1p0_val.json"
    path.write_text(json.dumps(data))
    table = AnswerTable(["red", "blue", "dog", "two"])
    ds = AOKVQADataset(path, store, answer_table=table)
    assert [e.img_id for e in ds.entries] == COCO  # 42 is in val2014, 7 in train2014
    target = ds[0]["target"]
    for answer in ("red", "blue", "dog"):
        # the training target of each answer is the credit the official DA metric gives it
        assert target[table.index(answer)] == pytest.approx(da_accuracy(answer, answers))
    assert target[table.index("two")] == 0.0
    assert ds.stats.answers_dropped == 1  # "crimson" is not in the table: counted, not silent
    assert aokvqa_soft_label(["a", "a", "b"], "vqa") == {"a": 0.6, "b": 0.3}
    batch, meta = ds.collate([ds[0], ds[1]])
    assert batch["labels"].shape == (2, 4) and meta["question_id"] == ["a1", "a2"]
    fmt = AOKVQADataset(path, store, answer_table=table, image_format=lambda i: COCO[0] if i == 42 else COCO[1])
    assert fmt.entries[1].img_id == COCO[1]


def test_aokvqa_reader_errors_name_the_file_and_entry(tmp_path, store):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([_aok("a1", 42, ["red"] * 10), {"question_id": "a2", "image_id": 42}]))
    with pytest.raises(DataFormatError, match=r"bad.json: entry 1.*'question'"):
        AOKVQADataset(path, store, answer_table=AnswerTable(["red"]))
    path.write_text(json.dumps([_aok("a1", 42, ["red"] * 10, correct=7)]))
    with pytest.raises(DataFormatError, match=r"entry 0 \(question_id 'a1'\).*correct_choice_idx 7"):
        AOKVQADataset(path, store, answer_table=AnswerTable(["red"]))
    path.write_text(json.dumps([_aok("a1", 99, ["red"] * 10)]))
    with pytest.raises(KeyError, match=r"image_id 99 matches no feature-store id.*COCO_val2014_000000000099"):
        AOKVQADataset(path, store, answer_table=AnswerTable(["red"]))


def test_multiple_choice_by_scoring_choices_and_by_mapping_the_answer():
    answers = ["red", "blue", "dog", "cats"]
    choices = [["red", "blue", "green", "dog"],      # all but green in the table
               ["a cat", "the bird", "fish", "horse"]]  # none in the table
    scores = np.array([[1.0, 3.0, 0.0, 9.0],   # best answer overall: "cats" (not a choice)
                       [0.0, 0.0, 0.0, 5.0]])
    # scored: row 0 -> red 1.0, blue 3.0, green not in the table, dog 0.0 -> "blue" (the
    # overall best answer "cats" is no choice); row 1 -> no choice in the table -> mapping
    assert mc_predictions(scores, choices, answers, mode="score") == ["blue", "a cat"]
    # mapped: the best answer "cats" -> the nearest choice ("a cat": closest string)
    mapped = mc_predictions(scores, choices, answers, mode="map")
    assert mapped[1] == "a cat"
    data = [{"question_id": "q1", "choices": choices[0], "correct_choice_idx": 1, "direct_answers": ["blue"] * 10},
            {"question_id": "q2", "choices": choices[1], "correct_choice_idx": 0, "direct_answers": ["cats"] * 3}]
    preds = aokvqa_predictions(["q1", "q2"], scores, data, answers, mc_mode="score")
    assert preds == {"q1": {"direct_answer": "cats", "multiple_choice": "blue"},
                     "q2": {"direct_answer": "cats", "multiple_choice": "a cat"}}
    result = evaluate_aokvqa(preds, data)
    assert result["mc_accuracy"] == 1.0
    assert result["da_accuracy"] == pytest.approx((0.0 + 1.0) / 2)  # q2: 3 matches -> 1.0


def test_answer_table_from_training_files(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps([_aok("a", 1, ["red"] * 6 + ["blue"] * 4), _aok("b", 2, ["blue"] * 10)]))
    table = build_aokvqa_answer_table(path)
    assert table.answers == ["blue", "red", "dog", "two"]  # by frequency, then unseen choices
    assert build_aokvqa_answer_table(path, include_choices=False).answers == ["blue", "red"]


def _viz(image, answers, answerable, answer_type="other"):
    return {"image": image, "question": "what is this?", "answerable": answerable, "answer_type": answer_type,
            "answers": [{"answer": a, "answer_confidence": "yes"} for a in answers]}


def test_vizwiz_reader_targets_and_answerability_logit(tmp_path, store):
    path = tmp_path / "val.json"
    path.write_text(json.dumps([
        _viz("VizWiz_val_00000001.jpg", ["Coffee!"] * 3 + ["tea"] * 7, 1),
        _viz("VizWiz_val_00000002.jpg", ["unanswerable"] * 8 + ["coffee"] * 2, 0, "unanswerable"),
    ]))
    table = build_vizwiz_answer_table(path, min_count=1)
    assert table.answers[-1] == ANSWERABLE and "unanswerable" in table and "coffee" in table  # normalised
    ds = VizWizDataset(path, store, answer_table=AnswerTable([a for a in table.answers if a != ANSWERABLE]))
    assert ds.answer_table.answers[-1] == ANSWERABLE  # added when missing
    t0, t1 = ds[0]["target"], ds[1]["target"]
    idx = ds.answer_table.index
    assert t0[idx("coffee")] == pytest.approx(0.9) and t0[idx("tea")] == 1.0 and t0[idx(ANSWERABLE)] == 1.0
    assert t1[idx("unanswerable")] == 1.0 and t1[idx("coffee")] == pytest.approx(0.6) and t1[idx(ANSWERABLE)] == 0.0
    assert ds.question_ids == ["VizWiz_val_00000001.jpg", "VizWiz_val_00000002.jpg"]
    assert [e.img_id for e in ds.entries] == ["VizWiz_val_00000001", "VizWiz_val_00000002"]

    answers = ds.answer_table.answers
    scores = np.zeros((2, len(answers)))
    scores[:, idx(ANSWERABLE)] = [2.0, -1.0]  # also the largest logit of row 0: never an answer
    scores[0, idx("tea")] = 1.0
    scores[1, idx("unanswerable")] = 1.5
    best, p = vizwiz_predictions(scores, answers)
    assert best == ["tea", "unanswerable"]
    assert p == pytest.approx(1 / (1 + np.exp(-np.array([2.0, -1.0]))))
    _, p2 = vizwiz_predictions(scores, answers, answerability="unanswerable")
    assert p2 == pytest.approx([0.5, 1 - 1 / (1 + np.exp(-1.5))])
    res = evaluate_vizwiz(dict(zip(ds.question_ids, best)), ds.raw, dict(zip(ds.question_ids, p.tolist())))
    assert res["accuracy"] == 1.0 and res["unanswerable_ap"] == 1.0


def test_vizwiz_needs_the_answerable_flag_for_the_logit(tmp_path, store):
    path = tmp_path / "val.json"
    entry = _viz("VizWiz_val_00000001.jpg", ["tea"] * 10, 1)
    del entry["answerable"]
    path.write_text(json.dumps([entry]))
    with pytest.raises(DataFormatError, match=r"val.json: entry 0 \(image 'VizWiz_val_00000001.jpg'\).*answerable"):
        VizWizDataset(path, store, answer_table=AnswerTable(["tea", "unanswerable"]))
    ds = VizWizDataset(path, store, answer_table=AnswerTable(["tea", "unanswerable"]), answerability="unanswerable")
    assert ANSWERABLE not in ds.answer_table


def _jsonl(path, rows):
    path.write_text("".join((json.dumps(r) if not isinstance(r, str) else r) + "\n" for r in rows))
    return path


def test_classification_single_binary_and_multi_label(tmp_path, store):
    single = _jsonl(tmp_path / "s.jsonl", [{"id": "x", "img_id": "meme_1", "text": "hi", "labels": 1},
                                           "", {"img_id": "meme_2", "text": "yo", "labels": 0}])
    ds = ClassificationDataset(single, store)
    assert ds.label_names == [0, 1] and not ds.multi_label and ds.ids == ["x", "s:3"]
    assert [ds[i]["target"] for i in range(2)] == [1, 0]
    assert ds.collate([ds[0], ds[1]]).inputs["labels"].tolist() == [1, 0]
    binary = ClassificationDataset(single, store, binary=True)
    assert binary.head_labels == ["1"] and binary.head_multi_label
    assert binary.collate([binary[0], binary[1]]).inputs["labels"].tolist() == [[1.0], [0.0]]
    assert binary.gold().tolist() == [1, 0]

    multi = _jsonl(tmp_path / "m.jsonl", [{"img_id": "meme_1", "text": "a", "labels": ["dog", "cat"]},
                                          {"img_id": "meme_2", "text": "b", "labels": []}])
    md = ClassificationDataset(multi, store)
    assert md.multi_label and md.label_names == ["cat", "dog"]
    assert md[0]["target"].tolist() == [1.0, 1.0] and md[1]["target"].tolist() == [0.0, 0.0]
    assert md.gold().shape == (2, 2)


@pytest.mark.parametrize("line, message", [
    ("{not json", r"bad.jsonl:2: not valid JSON"),
    ({"img_id": "meme_1", "labels": 1}, r"bad.jsonl:2: missing key 'text'"),
    ({"img_id": "meme_1", "text": "a", "labels": 1.5}, r"bad.jsonl:2: a label must be an int or a string"),
    ({"img_id": "meme_1", "text": "a", "labels": 7}, r"bad.jsonl:2: label 7 is not one of \[0, 1\]"),
    ({"img_id": "nope", "text": "a", "labels": 1}, r"bad.jsonl:2: image 'nope' is not in the feature store"),
])
def test_classification_errors_name_file_and_line(tmp_path, store, line, message):
    path = _jsonl(tmp_path / "bad.jsonl", [{"img_id": "meme_1", "text": "a", "labels": 0}, line])
    with pytest.raises((DataFormatError, KeyError), match=message):
        ClassificationDataset(path, store, label_names=[0, 1])
