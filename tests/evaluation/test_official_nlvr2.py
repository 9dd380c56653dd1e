"""NLVR2: files are read as strictly as lil-lab/nlvr ``nlvr2/eval/metrics.py`` reads them, and
every example, the accuracy and the consistency equal the script's.

``official_metrics`` is a line-for-line transcription, written for this test, of
``metrics.py`` (e6a286a): it reads the csv and the JSON-lines file the same way and returns
what the script prints (or raises what it would raise, or ``None`` where it prints that
predictions are missing and exits).
"""

from __future__ import annotations

import json
import random

import pytest

from lxmert.evaluation import (
    score,
    evaluate_nlvr2,
    read_nlvr2_predictions,
    write_nlvr2_predictions,
)


def official_metrics(predictions_path, labels_path):
    predictions = {}
    for line in open(predictions_path).readlines():
        if line:
            splits = line.strip().split(",")
            identifier = splits[0]
            prediction = splits[1]
            predictions[identifier] = prediction
    labeled_examples = [json.loads(line) for line in open(labels_path).readlines() if line]
    total_num = len(labeled_examples)
    if len(predictions) < total_num:
        return None                      # "Some predictions are missing!" and exit()
    num_correct = 0.0
    consistency_dict = {}
    per_example = {}
    for example in labeled_examples:
        anon_label = example["identifier"].split("-")
        anon_label[2] = ""
        anon_label = "-".join(anon_label)
        if anon_label not in consistency_dict:
            consistency_dict[anon_label] = True
        lookup = example["identifier"]
        prediction = predictions[lookup]
        if prediction.lower() == example["label"].lower():
            num_correct += 1.0
            per_example[lookup] = 1.0
        else:
            consistency_dict[anon_label] = False
            per_example[lookup] = 0.0
    num_consistent = 0.0
    unique_sentence = len(consistency_dict)
    for identifier, consistent in consistency_dict.items():
        if consistent:
            num_consistent += 1
    return {"precision": num_correct / total_num, "consistency": num_consistent / unique_sentence,
            "per_example": per_example}


VALID = ["True", "False", "true", "false", "TRUE", "FALSE", "tRuE"]
INVALID = [" True", " false", "1", "0", "yes", "no", "T", "F", "True.", "\"True\"", "Tru e", "none"]


def labelled_examples(rng: random.Random, n_sets: int) -> list[dict]:
    out = []
    for s in range(n_sets):
        for pair in range(rng.randrange(1, 5)):
            for sent in range(rng.randrange(1, 3)):
                out.append({"identifier": f"dev-{s}-{pair}-{sent}", "sentence": f"sentence {s} {sent}",
                            "label": rng.choice(["True", "False"])})
    return out


def prediction_lines(rng: random.Random, examples: list[dict], invalid_rate: float) -> list[str]:
    lines = []
    for ex in examples:
        value = rng.choice(INVALID) if rng.random() < invalid_rate else rng.choice(VALID)
        tail = rng.choice(["", "", "", ",0.93", ",", " "])          # later fields are ignored
        end = rng.choice(["\n", "\n", "\r\n"])
        lines.append(f"{ex['identifier']},{value}{tail}{end}")
    rng.shuffle(lines)
    return lines


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("nlvr2")
    rng = random.Random(3)
    examples = labelled_examples(rng, 600)
    labels = root / "dev.json"
    labels.write_text("".join(json.dumps(e) + "\n" for e in examples))
    clean = root / "clean.csv"
    clean.write_text("".join(prediction_lines(rng, examples, 0.0)), newline="")
    dirty = root / "dirty.csv"
    dirty.write_text("".join(prediction_lines(rng, examples, 0.15)), newline="")
    return examples, labels, clean, dirty


def test_a_clean_file_scores_exactly_like_the_official_script(files):
    examples, labels, clean, _ = files
    off = official_metrics(clean, labels)
    ours = score("nlvr2", clean, labels)
    assert ours["per_example"] == off["per_example"]
    assert (ours["accuracy"], ours["consistency"]) == (off["precision"], off["consistency"])
    assert ours["official"] == {"precision": off["precision"], "consistency": off["consistency"]}
    assert len(examples) > 1500


def test_what_the_script_scores_wrong_is_an_error_naming_the_line(files):
    _, labels, _, dirty = files
    lines = dirty.read_text().splitlines()
    first = next(i for i, line in enumerate(lines, 1)
                 if line.strip().split(",")[1].lower() not in ("true", "false"))
    with pytest.raises(ValueError, match=rf"dirty.csv:{first}: prediction .* neither True nor False"):
        read_nlvr2_predictions(dirty)
    with pytest.raises(ValueError, match=rf"dirty.csv:{first}:"):
        score("nlvr2", dirty, labels)


def test_non_strict_reading_scores_every_example_like_the_official_script(files):
    """strict=False keeps what the script reads, and the score is the server's."""
    _, labels, _, dirty = files
    off = official_metrics(dirty, labels)
    with pytest.warns(UserWarning) as caught:
        ours = score("nlvr2", dirty, labels, strict=False)
    messages = [str(w.message) for w in caught]
    assert any("dirty.csv:" in m for m in messages)                # the reader names the line
    assert any("scores them wrong" in m for m in messages)         # the scorer counts them
    assert ours["per_example"] == off["per_example"]
    assert (ours["accuracy"], ours["consistency"]) == (off["precision"], off["consistency"])
    assert ours["num_unscorable"] > 100
    # the same file read leniently (1 -> True, " True" -> True) would have scored higher
    lenient = {}
    for line in dirty.read_text().splitlines():
        ident, value = line.strip().split(",")[:2]
        lenient[ident] = value.strip().lower() in ("true", "1", "yes", "t", '"true"', "true.")
    examples = [json.loads(x) for x in labels.read_text().splitlines()]
    assert evaluate_nlvr2(lenient, examples)["accuracy"] > off["precision"]


@pytest.mark.parametrize("content, problem", [
    ("dev-0-0-0,True\n\ndev-0-1-0,False\n", "2: blank line"),
    ("dev-0-0-0,True\ndev-0-1-0\n", "2: no comma"),
    ("dev-0-0-0,True\n   \n", "2: blank line"),
])
def test_lines_the_script_cannot_read_are_errors(tmp_path, content, problem):
    path = tmp_path / "p.csv"
    path.write_text(content)
    labels = tmp_path / "l.json"
    labels.write_text("".join(json.dumps({"identifier": f"dev-0-{i}-0", "label": "True"}) + "\n" for i in range(2)))
    with pytest.raises(IndexError):
        official_metrics(path, labels)
    for strict in (True, False):
        with pytest.raises(ValueError, match=rf"p.csv:{problem}"):
            read_nlvr2_predictions(path, strict=strict)


def test_missing_identifiers_are_an_error_like_the_script(files, tmp_path):
    _, labels, clean, _ = files
    lines = clean.read_text().splitlines(keepends=True)
    short = tmp_path / "short.csv"
    short.write_text("".join(lines[:-5]), newline="")
    assert official_metrics(short, labels) is None
    with pytest.raises(ValueError, match="5 annotated NLVR2 example ids have no prediction"):
        score("nlvr2", short, labels)


def test_the_written_file_is_scored_by_the_official_script(files, tmp_path):
    examples, labels, _, _ = files
    rng = random.Random(11)
    preds = {e["identifier"]: rng.choice([0, 1, True, False]) for e in examples}
    path = write_nlvr2_predictions(tmp_path / "predictions.csv", preds)
    off = official_metrics(path, labels)
    assert off is not None
    ours = evaluate_nlvr2(preds, [json.loads(x) for x in labels.read_text().splitlines()])
    assert ours["per_example"] == off["per_example"]
    assert (ours["accuracy"], ours["consistency"]) == (off["precision"], off["consistency"])
    assert score("nlvr2", path, labels)["accuracy"] == off["precision"]
