"""A-OKVQA: one scoring path, equal to allenai/aokvqa ``evaluation/eval_predictions.py``.

``official_eval_aokvqa`` / ``official_main`` transcribe, for this test, ``eval_aokvqa`` and
the ``__main__`` block of ``eval_predictions.py`` (42e8c44): the leaderboard run, with
``strict=False``. The registry metric (what the training loop calls), ``evaluate`` on files
(``lxmert evaluate``) and ``evaluate_aokvqa`` must all print the same figures on generated
questions with off-choice answers, case variants, missing predictions and difficult flags.
"""

from __future__ import annotations

import json
import random

import pytest

from lxmert.evaluation import (
    score,
    evaluate_aokvqa,
    get_metric,
    write_aokvqa_submission,
)


def official_eval_aokvqa(dataset, preds, multiple_choice=False, strict=True):
    if isinstance(dataset, list):
        dataset = {dataset[i]["question_id"]: dataset[i] for i in range(len(dataset))}
    if multiple_choice is False:
        dataset = {k: v for k, v in dataset.items() if v["difficult_direct_answer"] is False}
    if strict:
        assert set(dataset.keys()).issubset(set(preds.keys()))
    acc = []
    for q in dataset.keys():
        if q not in preds.keys():
            acc.append(0.0)
            continue
        pred = preds[q]
        choices = dataset[q]["choices"]
        direct_answers = dataset[q]["direct_answers"]
        if multiple_choice:
            if strict:
                assert pred in choices, "Prediction must be a valid choice"
            correct_choice_idx = dataset[q]["correct_choice_idx"]
            acc.append(float(pred == choices[correct_choice_idx]))
        else:
            num_match = sum([pred == da for da in direct_answers])
            vqa_acc = min(1.0, num_match / 3.0)
            acc.append(vqa_acc)
    acc = sum(acc) / len(acc) * 100
    return acc


def official_main(dataset, predictions):
    out = {}
    mc_predictions = {q: predictions[q]["multiple_choice"] for q in predictions
                      if "multiple_choice" in predictions[q].keys()}
    if mc_predictions != {}:
        out["mc"] = official_eval_aokvqa(dataset, mc_predictions, multiple_choice=True, strict=False)
    da_predictions = {q: predictions[q]["direct_answer"] for q in predictions
                      if "direct_answer" in predictions[q].keys()}
    if da_predictions != {}:
        out["da"] = official_eval_aokvqa(dataset, da_predictions, multiple_choice=False, strict=False)
    return out


WORDS = ["bike", "Bike", "bikes", "bicycle", "car", "red car", "train", "boat", "two", "2", "Two",
         "the dog", "dog", "dogs", "cat", "white", "White", "white.", " white", "blue", "t-shirt", "tshirt"]


def random_dataset(rng: random.Random, n: int) -> tuple[list[dict], dict]:
    data, preds = [], {}
    for i in range(n):
        choices = rng.sample(WORDS, 4)
        idx = rng.randrange(4)
        pool = choices[:2] + rng.sample(WORDS, 2)
        direct = [rng.choice(pool) for _ in range(10)]
        qid = f"q{i:05d}"
        data.append({"question_id": qid, "image_id": i, "question": "?", "choices": choices,
                     "correct_choice_idx": idx, "direct_answers": direct,
                     "difficult_direct_answer": rng.random() < 0.3, "rationales": []})
        row = {}
        r = rng.random()
        if r < 0.85:
            row["multiple_choice"] = rng.choice(choices + [rng.choice(WORDS), choices[idx].upper()])
            row["multiple_choice_map"] = rng.choice(choices)
        if rng.random() < 0.85:
            row["direct_answer"] = rng.choice(direct + WORDS[:3])
        if row or rng.random() < 0.5:
            preds[qid] = row
    return data, preds


@pytest.fixture(scope="module")
def generated():
    return random_dataset(random.Random(5), 3000)


def leaderboard(preds):
    """The leaderboard file holds only its two keys."""
    return {q: {k: v for k, v in p.items() if k in ("multiple_choice", "direct_answer")} for q, p in preds.items()}


def test_every_path_prints_the_official_figures(generated, tmp_path):
    data, preds = generated
    off = official_main(data, leaderboard(preds))
    ours = evaluate_aokvqa(preds, data)
    assert ours["official"] == off
    assert ours["mc_accuracy"] * 100 == off["mc"] and ours["da_accuracy"] * 100 == off["da"]
    # the training loop's metric: same function, same numbers, plus the mapped MC variant
    metric = get_metric("aokvqa")(preds, data)
    assert metric["mc_accuracy"] == ours["mc_accuracy"] and metric["da_accuracy"] == ours["da_accuracy"]
    mapped = {q: {"multiple_choice": p["multiple_choice_map"]} for q, p in preds.items() if "multiple_choice_map" in p}
    assert metric["mc_accuracy_map"] * 100 == official_main(data, mapped)["mc"]
    # lxmert evaluate on the written file
    ann = tmp_path / "val.json"
    ann.write_text(json.dumps(data))
    sub = write_aokvqa_submission(tmp_path / "predictions.json",
                                  {q: p["multiple_choice"] for q, p in preds.items() if "multiple_choice" in p},
                                  {q: p["direct_answer"] for q, p in preds.items() if "direct_answer" in p})
    assert score("aokvqa", sub, ann)["official"] == off
    # ... and the written file is what the official script loads
    assert official_main(data, json.loads(sub.read_text())) == off


def test_per_question_scores_equal_the_official_rule(generated):
    data, preds = generated
    ours = evaluate_aokvqa(preds, data)
    by_id = {e["question_id"]: e for e in data}
    for q, item_score in ours["per_question"]["mc"].items():
        p = preds.get(q, {}).get("multiple_choice")
        e = by_id[q]
        assert item_score == (0.0 if p is None else float(p == e["choices"][e["correct_choice_idx"]]))
    assert set(ours["per_question"]["da"]) == {q for q, e in by_id.items() if e["difficult_direct_answer"] is False}
    for q, item_score in ours["per_question"]["da"].items():
        p = preds.get(q, {}).get("direct_answer")
        assert item_score == (0.0 if p is None else min(1.0, sum([p == d for d in by_id[q]["direct_answers"]]) / 3.0))
    assert ours["mc_off_choice"] > 100          # off-choice answers occur and score 0


def test_the_generated_predictions_separate_the_old_training_metric(generated):
    """The training metric used to map off-choice answers and skip unpredicted questions;
    on these predictions that gives another number than the official one."""
    data, preds = generated
    ours = evaluate_aokvqa(preds, data)
    skipped = evaluate_aokvqa(preds, data, missing="ignore")
    assert skipped["mc_accuracy"] != ours["mc_accuracy"]
