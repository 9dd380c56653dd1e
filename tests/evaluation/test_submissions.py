"""Test-server files: exact formats, round trips, atomicity, clear errors."""

from __future__ import annotations

import json
import os

import pytest

from lxmert.evaluation.submissions import (
    atomic_open,
    read_gqa_attentions,
    read_nlvr2_predictions,
    read_predictions,
    read_vizwiz_predictions,
    write_aokvqa_submission,
    write_classification_predictions,
    write_gqa_submission,
    write_nlvr2_predictions,
    write_predictions,
    write_vizwiz_submission,
    write_vqa_submission,
)


def test_vqa_exact_format_and_round_trip(tmp_path):
    path = write_vqa_submission(tmp_path / "vqa.json", {458752000: "net", "458752001": "pitcher"})
    assert path.read_text() == ('[{"question_id": 458752000, "answer": "net"}, '
                                '{"question_id": 458752001, "answer": "pitcher"}]\n')
    assert read_predictions(path) == {458752000: "net", 458752001: "pitcher"}
    with pytest.raises(TypeError, match="integers"):
        write_vqa_submission(tmp_path / "bad.json", {"q1": "x"})
    with pytest.raises(ValueError, match="duplicate"):
        write_vqa_submission(tmp_path / "dup.json", [(1, "a"), (1, "b")])
    assert not (tmp_path / "bad.json").exists() and not (tmp_path / "dup.json").exists()


def test_gqa_exact_format_and_round_trip(tmp_path):
    path = write_gqa_submission(tmp_path / "gqa.json", {20968379: "no", "201307251": "left"})
    assert json.loads(path.read_text()) == [{"questionId": "20968379", "prediction": "no"},
                                            {"questionId": "201307251", "prediction": "left"}]
    assert read_predictions(path) == {"20968379": "no", "201307251": "left"}


def test_nlvr2_csv_exact_format_and_round_trip(tmp_path):
    preds = {"test1-0-1-0": 1, "test1-0-1-1": False, "test1-3-0-0": "true"}
    path = write_nlvr2_predictions(tmp_path / "nlvr2.csv", preds)
    assert path.read_bytes() == b"test1-0-1-0,True\ntest1-0-1-1,False\ntest1-3-0-0,True\n"
    assert read_predictions(path) == {"test1-0-1-0": True, "test1-0-1-1": False, "test1-3-0-0": True}
    (tmp_path / "broken.csv").write_text("test1-0-1-0,True\ntest1-0-1-1\n")
    with pytest.raises(ValueError, match=r"broken.csv:2"):
        read_predictions(tmp_path / "broken.csv", task="nlvr2")


# (file content, the line and problem named): what lil-lab/nlvr metrics.py would read but
# never count right is an error in strict mode, naming file and line.
NLVR2_STRICT = [
    ("dev-0-0-0,True\ndev-0-1-0, True\n", "2: prediction ' True'"),
    ("dev-0-0-0,1\n", "1: prediction '1'"),
    ("dev-0-0-0,0\n", "1: prediction '0'"),
    ("dev-0-0-0,yes\n", "1: prediction 'yes'"),
    ("dev-0-0-0,True ,x\n", "1: prediction 'True '"),
    ("dev-0-0-0 ,True\n", "1: identifier 'dev-0-0-0 '"),
    ("\ufeffdev-0-0-0,True\n", "1: identifier .*byte-order mark"),
    ("dev-0-0-0,True\ndev-0-0-0,False\n", "2: identifier 'dev-0-0-0' repeated"),
]


@pytest.mark.parametrize("content, problem", NLVR2_STRICT)
def test_nlvr2_reader_is_as_strict_as_the_official_script(tmp_path, content, problem):
    path = tmp_path / "p.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=rf"p.csv:{problem}"):
        read_predictions(path, task="nlvr2")


def test_nlvr2_reader_accepts_what_the_official_script_scores(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes(b"dev-0-0-0,TRUE\r\ndev-0-1-0,false,0.93\r\n  dev-0-2-0,True  \ndev-0-3-0,tRuE,")
    assert read_nlvr2_predictions(path) == {"dev-0-0-0": True, "dev-0-1-0": False, "dev-0-2-0": True,
                                            "dev-0-3-0": True}
    # non-strict: kept as read, scored wrong later, one warning naming the first line
    path.write_text("dev-0-0-0, True\ndev-0-1-0,1\ndev-0-2-0,False\n")
    with pytest.warns(UserWarning, match=r"2 line\(s\).*p.csv:1"):
        got = read_nlvr2_predictions(path, strict=False)
    assert got == {"dev-0-0-0": " True", "dev-0-1-0": "1", "dev-0-2-0": False}


def test_gqa_attention_file(tmp_path):
    path = tmp_path / "att.json"
    path.write_text(json.dumps([{"questionId": 7, "attention": [[0, 0, 1, 1, 0.5]]}]))
    assert read_gqa_attentions(path) == {"7": [[0, 0, 1, 1, 0.5]]}
    path.write_text(json.dumps([{"questionId": "7"}]))
    with pytest.raises(KeyError, match="att.json: entry #0"):
        read_gqa_attentions(path)


def test_aokvqa_format_and_round_trip(tmp_path):
    path = write_aokvqa_submission(tmp_path / "a.json", {"q1": "bike", "q2": "car"}, {"q1": "bicycle"})
    data = json.loads(path.read_text())
    assert data == {"q1": {"multiple_choice": "bike", "direct_answer": "bicycle"},
                    "q2": {"multiple_choice": "car"}}
    assert read_predictions(path) == data
    again = write_predictions("aokvqa", tmp_path / "b.json", data)
    assert json.loads(again.read_text()) == data


def test_vizwiz_format_with_answerability(tmp_path):
    path = write_vizwiz_submission(tmp_path / "v.json", {"VizWiz_test_00000000.jpg": "unanswerable"},
                                   answerable={"VizWiz_test_00000000.jpg": 0.25})
    assert json.loads(path.read_text()) == [
        {"image": "VizWiz_test_00000000.jpg", "answer": "unanswerable", "answerable": 0.25}]
    answers, answerable = read_vizwiz_predictions(path)
    assert answers == {"VizWiz_test_00000000.jpg": "unanswerable"}
    assert answerable == {"VizWiz_test_00000000.jpg": 0.25}
    plain = write_vizwiz_submission(tmp_path / "p.json", {"a.jpg": "yes"})
    assert read_predictions(plain) == {"a.jpg": "yes"}
    assert read_vizwiz_predictions(plain)[1] is None


@pytest.mark.parametrize("ext", [".jsonl", ".csv"])
def test_classification_round_trip(tmp_path, ext):
    path = write_classification_predictions(tmp_path / f"c{ext}", ["m1", "m2"], [1, 0],
                                            [[0.2, 0.8], [0.9, 0.1]], label_names=["ok", "hateful"])
    got = read_predictions(path)
    assert list(got) == ["m1", "m2"]
    assert got["m1"]["scores"] == [0.2, 0.8] and str(got["m2"]["label"]) == "0"
    if ext == ".csv":
        assert path.read_text().splitlines()[0] == "id,label,score_ok,score_hateful"


def test_atomic_open_keeps_old_file_on_error_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write("partial")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["sub.json"]


def test_reader_errors_name_the_file(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('[{"question_id": 1}]')
    with pytest.raises(KeyError, match="x.json.*entry #0"):
        read_predictions(bad, task="vqa")
    bad.write_text("[{")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_predictions(bad)
    bad.write_text('[{"foo": 1}]')
    with pytest.raises(ValueError, match="cannot tell"):
        read_predictions(bad)
    with pytest.raises(FileNotFoundError):
        read_predictions(tmp_path / "missing.json")
