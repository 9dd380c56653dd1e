"""Issue 21, evaluation: scores that miscounted.

The table format is tests/support/faults.py's. Group 3: repeated ids in predictions (30 entries
of one id were scored as `num_questions: 1`) or in annotations - in memory (the registry
metrics the training loop uses) or in files (`lxmert score`) - are refused naming the file
or entry and the id; a VQA id of 2.9 in a prediction file too. Distinct ids score every
question.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from support.faults import Case, Env, check_table, cli, one_line, run_case
from lxmert.evaluation import get_metric
from lxmert.evaluation import score as score_files

# ---------------------------------------------------------------------------- helpers


def vqa_entries(n: int = 30) -> list[dict]:
    return [{"question_id": 100 + i, "label": {"yes": 1.0}, "answer_type": "yes/no", "sent": f"q{i}?",
             "img_id": "x"} for i in range(n)]


def official_vqa(n: int = 30) -> dict:
    return {"annotations": [{"question_id": 100 + i, "answer_type": "yes/no", "question_type": "is",
                             "multiple_choice_answer": "yes",
                             "answers": [{"answer": "yes", "answer_confidence": "yes", "answer_id": k + 1}
                                         for k in range(10)]} for i in range(n)]}


def write(env: Env, name: str, data: Any) -> Path:
    path = env.tmp / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def score(env: Env, task: str, predictions: Any, annotations: Any, pred_name: str = "pred.json") -> Any:
    return cli("score", task, write(env, pred_name, predictions), write(env, "ann.json", annotations))


def one_id_thirty_times(env: Env) -> Any:
    return get_metric("vqa")([{"question_id": 100, "answer": "yes"}] * 30, vqa_entries())


def repeated_annotation(env: Env) -> Any:
    entries = vqa_entries()
    entries[7]["question_id"] = 100
    return get_metric("vqa")({100: "yes", 101: "no"}, entries)


def gqa_id_keyed_file(env: Env) -> Any:
    entry = '{"answer": "yes", "question": "is it?", "types": {"structural": "verify"}}'
    text = f'{{"q1": {entry}, "q2": {entry}, "q1": {entry}}}'
    return score(env, "gqa", [{"questionId": "q1", "prediction": "yes"}], text)


def counts_every_question(env: Env) -> Any:
    return score_files("vqa", write(env, "pred.json", [{"question_id": 100 + i, "answer": "yes"} for i in range(30)]),
                    write(env, "ann.json", official_vqa()))


# ---------------------------------------------------------------------------- the table

CASES: list[Case] = [
    Case("predictions: one question id 30 times (in memory)", 3, one_id_thirty_times,
         r"refused: predictions: entry #1 repeats question_id 100 \(first at entry #0\)"),
    Case("annotations: a question id repeated (in memory)", 3, repeated_annotation,
         r"refused: annotations: entry #7 repeats question_id 100 \(first at entry #0\)"),
    Case("classification annotations: an id repeated", 3, lambda env: get_metric("classification")(
        {"a": 1, "b": 0}, [{"id": "a", "label": 1}, {"id": "b", "label": 0}, {"id": "a", "label": 0}]),
         r"refused: annotations: entry #2 repeats id 'a' \(first at entry #0\)"),
    Case("score: a prediction file repeating an id", 3,
         lambda env: score(env, "vqa", [{"question_id": 100, "answer": "yes"}] * 30, official_vqa()),
         r"refused: ^lxmert score: error: \S+/pred\.json: entry #1 repeats question_id 100$", one_line),
    Case("score: an annotation file repeating an id", 3, lambda env: score(
        env, "vqa", [{"question_id": 100, "answer": "yes"}],
        {"annotations": official_vqa(3)["annotations"] + [official_vqa(1)["annotations"][0]]}),
         r"refused: ^lxmert score: error: \S+/ann\.json: entry #3 repeats question_id 100 \(first at entry #0\)$",
         one_line),
    Case("score: an NLVR2 annotation file repeating an identifier", 3, lambda env: score(
        env, "nlvr2", "dev-1-0-0,True\n", "\n".join(json.dumps({"identifier": "dev-1-0-0", "label": "True",
                                                                "sent": "s"}) for _ in range(2)),
        pred_name="pred.csv"),
         r"refused: ^lxmert score: error: \S+/ann\.json: entry #1 repeats identifier 'dev-1-0-0'", one_line),
    Case("score: an id-keyed GQA file repeating an id", 3, gqa_id_keyed_file,
         r"refused: ^lxmert score: error: \S+/ann\.json: key 'q1' repeated in one JSON object$", one_line),
    Case("score: a VQA prediction id of 2.9", 3, lambda env: score(
        env, "vqa", [{"question_id": 2.9, "answer": "yes"}], official_vqa()),
         r"refused: ^lxmert score: error: \S+/pred\.json: VQA question ids must be integers, got 2\.9$", one_line),
    Case("score: a VQA prediction id given as the string \"3\"", 3, lambda env: score(
        env, "vqa", [{"question_id": "3", "answer": "yes"}], official_vqa()),
         r"refused: ^lxmert score: error: \S+/pred\.json: VQA question ids must be integers, got '3'$", one_line),
    Case("score: an annotation file not UTF-8", 3, lambda env: cli(
        "score", "vqa", write(env, "pred.json", [{"question_id": 100, "answer": "yes"}]),
        (env.tmp / "ann.json", (env.tmp / "ann.json").write_bytes(b'{"annotations": "caf\xff"}'))[0]),
         r"refused: ^lxmert score: error: \S+/ann\.json: not UTF-8 text", one_line),
    Case("distinct ids: every question counted", 3, counts_every_question,
         "handled: 30 questions scored",
         lambda env, r: None if r["num_questions"] == 30 and r["official"]["overall"] == 100.0 else pytest.fail(str(r))),
]


def test_case_table_is_well_formed():
    check_table(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault_world, fault_runs) -> None:
    run_case(case, Env(tmp_path, monkeypatch, fault_world, fault_runs))
