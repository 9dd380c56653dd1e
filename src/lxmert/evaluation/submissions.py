"""Test-server prediction files: writers and readers.

Formats (what each leaderboard accepts):

=============== ===========================================================================
task            file
=============== ===========================================================================
VQA v2 (EvalAI) json ``[{"question_id": int, "answer": str}, ...]``
GQA (EvalAI)    json ``[{"questionId": str, "prediction": str}, ...]``
NLVR2           csv, no header, one ``identifier,True`` or ``identifier,False`` per line
A-OKVQA         json ``{question_id: {"multiple_choice": str, "direct_answer": str}}``
VizWiz-VQA      json ``[{"image": str, "answer": str}, ...]`` (+ ``"answerable": float`` for
                the answerability track when given)
classification  JSONL ``{"id", "label", "scores"?}`` per line, or CSV with header
                ``id,label[,score_<name>...]``
=============== ===========================================================================

Every writer is atomic: it writes a temporary file in the destination directory, flushes
and fsyncs it, then ``os.replace``-s it over the target, so a crash never leaves a partial
file behind (and an existing file is only replaced by a complete one). Writers validate
their input (types, duplicates) and name the offending id. Readers accept what the writers
produce (and the release's dumps, which use the same formats) and return the
``{id: prediction}`` mappings the ``evaluate_*`` functions take.
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lxmert.atomic import atomic_open

from .nlvr2 import to_bool

__all__ = [
    "TASKS",
    "read_gqa_attentions",
    "read_nlvr2_predictions",
    "read_predictions",
    "read_vizwiz_predictions",
    "write_aokvqa_submission",
    "write_classification_predictions",
    "write_gqa_submission",
    "write_nlvr2_predictions",
    "write_predictions",
    "write_vizwiz_submission",
    "write_vqa_submission",
]

TASKS = ("vqa", "gqa", "nlvr2", "aokvqa", "vizwiz", "classification")

PathLike = str | os.PathLike
Pairs = Mapping[Any, Any] | Iterable[tuple[Any, Any]]


def _items(predictions: Pairs) -> list[tuple[Any, Any]]:
    items = list(predictions.items()) if isinstance(predictions, Mapping) else list(predictions)
    seen: set[Any] = set()
    for i, item in enumerate(items):
        if not (isinstance(item, tuple) and len(item) == 2):
            raise TypeError(f"prediction #{i} must be an (id, answer) pair, got {item!r}")
        if item[0] in seen:
            raise ValueError(f"duplicate prediction id {item[0]!r} (prediction #{i})")
        seen.add(item[0])
    return items


def _answer(value: Any, ident: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"answer for {ident!r} must be a string, got {type(value).__name__}")
    return value


def _int_id(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError(f"question id {value!r} is a bool")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise TypeError(f"VQA question ids must be integers, got {value!r}")


def _dump_json(path: PathLike, obj: Any) -> Path:
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False)
        f.write("\n")
    return Path(path)


def write_vqa_submission(path: PathLike, predictions: Pairs) -> Path:
    """VQA v2 test-server json: ``[{"question_id": int, "answer": str}]``."""
    rows = [{"question_id": _int_id(q), "answer": _answer(a, q)} for q, a in _items(predictions)]
    if len({r["question_id"] for r in rows}) != len(rows):
        raise ValueError("duplicate question ids after conversion to int")
    return _dump_json(path, rows)


def write_gqa_submission(path: PathLike, predictions: Pairs) -> Path:
    """GQA test-server json: ``[{"questionId": str, "prediction": str}]``."""
    rows = [{"questionId": str(q), "prediction": _answer(a, q)} for q, a in _items(predictions)]
    if len({r["questionId"] for r in rows}) != len(rows):
        raise ValueError("duplicate question ids after conversion to str")
    return _dump_json(path, rows)


def write_nlvr2_predictions(path: PathLike, predictions: Pairs) -> Path:
    """NLVR2 leaderboard csv: ``identifier,True|False`` per line, no header."""
    lines = []
    for ident, label in _items(predictions):
        if not isinstance(ident, str) or "," in ident or "\n" in ident or not ident:
            raise ValueError(f"NLVR2 identifier must be a non-empty string without commas, "
                             f"got {ident!r}")
        value = to_bool(label, f"prediction for {ident!r}")
        lines.append(f"{ident},{'True' if value else 'False'}\n")
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        f.writelines(lines)
    return Path(path)


def write_aokvqa_submission(
    path: PathLike,
    multiple_choice: Mapping[Any, str] | None = None,
    direct_answer: Mapping[Any, str] | None = None,
) -> Path:
    """A-OKVQA leaderboard json: ``{question_id: {"multiple_choice": str,
    "direct_answer": str}}`` (a key is omitted for questions without that prediction)."""
    if not multiple_choice and not direct_answer:
        raise ValueError("write_aokvqa_submission: no predictions")
    out: dict[str, dict[str, str]] = {}
    for key, preds in (("multiple_choice", multiple_choice), ("direct_answer", direct_answer)):
        for q, a in _items(preds or {}):
            out.setdefault(str(q), {})[key] = _answer(a, q)
    return _dump_json(path, out)


def write_vizwiz_submission(
    path: PathLike,
    predictions: Pairs,
    answerable: Mapping[str, float] | None = None,
) -> Path:
    """VizWiz json: ``[{"image": str, "answer": str}]``; with ``answerable`` each row also
    carries ``"answerable": p`` (the answerability track)."""
    rows = []
    for img, a in _items(predictions):
        row: dict[str, Any] = {"image": str(img), "answer": _answer(a, img)}
        if answerable is not None:
            if img not in answerable:
                raise KeyError(f"no answerable score for image {img!r}")
            p = float(answerable[img])
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"answerable score for {img!r} must be in [0, 1], got {p}")
            row["answerable"] = p
        rows.append(row)
    return _dump_json(path, rows)


def write_classification_predictions(
    path: PathLike,
    ids: Sequence[Any],
    labels: Sequence[Any],
    scores: Sequence[Any] | None = None,
    *,
    label_names: Sequence[str] | None = None,
) -> Path:
    """Classifier outputs as JSONL (``.jsonl``) or CSV (``.csv``).

    ``labels``: predicted label per id (an int/str, or a list for multi-label);
    ``scores``: optional per-id probability (float) or per-class probabilities (list).
    """
    if len(ids) != len(labels) or (scores is not None and len(scores) != len(ids)):
        raise ValueError(f"{len(ids)} ids, {len(labels)} labels"
                         + ("" if scores is None else f", {len(scores)} scores"))
    if len(set(map(str, ids))) != len(ids):
        raise ValueError("duplicate ids")
    ext = Path(path).suffix.lower()

    def as_list(x: Any) -> list[float] | float:
        if hasattr(x, "tolist"):
            x = x.tolist()
        if isinstance(x, (list, tuple)):
            return [float(v) for v in x]
        return float(x)

    def plain(x: Any) -> Any:
        return x.tolist() if hasattr(x, "tolist") else x

    if ext == ".jsonl":
        with atomic_open(path, "w", encoding="utf-8") as f:
            for i, ident in enumerate(ids):
                rec: dict[str, Any] = {"id": plain(ident), "label": plain(labels[i])}
                if scores is not None:
                    rec["scores"] = as_list(scores[i])
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    elif ext == ".csv":
        width = None
        if scores is not None:
            first = as_list(scores[0]) if len(scores) else 0.0
            width = len(first) if isinstance(first, list) else 1
        names = list(label_names) if label_names is not None else (
            [str(j) for j in range(width)] if width and width > 1 else ["1"])
        if width is not None and len(names) != width:
            raise ValueError(f"{len(names)} label names for {width} score columns")
        with atomic_open(path, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "label"] + ([f"score_{n}" for n in names] if width else []))
            for i, ident in enumerate(ids):
                lab = plain(labels[i])
                if isinstance(lab, list):
                    lab = " ".join(map(str, lab))
                row = [plain(ident), lab]
                if scores is not None:
                    s = as_list(scores[i])
                    s = s if isinstance(s, list) else [s]
                    if len(s) != width:
                        raise ValueError(f"id {ident!r}: {len(s)} scores, expected {width}")
                    row += [repr(v) for v in s]
                w.writerow(row)
    else:
        raise ValueError(f"classification predictions go to .jsonl or .csv, not {path!s}")
    return Path(path)


def write_predictions(task: str, path: PathLike, predictions: Any, **kwargs: Any) -> Path:
    """Dispatch to the writer of ``task`` (one of :data:`TASKS` except classification,
    whose writer takes separate arrays). A-OKVQA takes the leaderboard's nested dict."""
    writers = {
        "vqa": write_vqa_submission,
        "gqa": write_gqa_submission,
        "nlvr2": write_nlvr2_predictions,
        "vizwiz": write_vizwiz_submission,
    }
    if task == "aokvqa":
        if not isinstance(predictions, Mapping) or not all(
                isinstance(v, Mapping) for v in predictions.values()):
            raise TypeError("A-OKVQA predictions must be {question_id: {'multiple_choice': str, "
                            "'direct_answer': str}}")
        return write_aokvqa_submission(
            path,
            {q: v["multiple_choice"] for q, v in predictions.items() if "multiple_choice" in v},
            {q: v["direct_answer"] for q, v in predictions.items() if "direct_answer" in v},
        )
    if task not in writers:
        known = sorted([*writers, "aokvqa"])
        raise ValueError(f"no submission writer for task {task!r}; choose from {known}")
    return writers[task](path, predictions, **kwargs)


# ----------------------------------------------------------------------------- readers


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}): "
                         f"{err.msg}") from None


def _rows_to_map(path: Path, rows: Any, id_key: str, value_key: str) -> dict[Any, Any]:
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON list of {{{id_key!r}, {value_key!r}}} objects")
    out: dict[Any, Any] = {}
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping) or id_key not in r or value_key not in r:
            raise KeyError(f"{path}: entry #{i} lacks {id_key!r} or {value_key!r}: {r!r}")
        if r[id_key] in out:
            raise ValueError(f"{path}: entry #{i} repeats {id_key} {r[id_key]!r}")
        out[r[id_key]] = r[value_key]
    return out


def read_nlvr2_predictions(path: PathLike, *, strict: bool = True) -> dict[str, Any]:
    """NLVR2 predictions csv -> ``{identifier: prediction}``, read as lil-lab/nlvr
    ``metrics.py`` reads it: per line, ``line.strip().split(",")``, field 0 the identifier,
    field 1 the prediction (later fields ignored), compared ``.lower()`` with the label.

    What the official script cannot read is always an error naming the line: a blank
    line or a line without a comma (it stops with an IndexError), a repeated identifier
    (it silently keeps the last). With ``strict`` (default) so is what it would read but
    never score right: a prediction other than true/false in any case (``1``, ``0``,
    `` True``, ``yes``) and an identifier with surrounding spaces or a byte-order mark
    (it would not find the example). ``strict=False`` keeps those as the raw text, which
    :func:`~lxmert.evaluation.nlvr2.evaluate_nlvr2` scores wrong as the official script
    does, and warns once naming the first offending line.

    Valid predictions come back as bools; kept invalid ones as the text read.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"prediction file not found: {p}")
    out: dict[str, Any] = {}
    first_bad: str | None = None
    n_bad = 0
    # Text mode with universal newlines and iteration by line: exactly the official
    # ``open(...).readlines()`` (str.splitlines would also split on \x0b, \x1c, \u2028 ...).
    with open(p, encoding="utf-8") as f:
        lines = list(f)
    for lineno, line in enumerate(lines, 1):
        splits = line.strip().split(",")
        if len(splits) < 2:
            what = "blank line" if not line.strip() else f"no comma in {line!r}"
            raise ValueError(f"{p}:{lineno}: {what}: expected 'identifier,True|False' "
                             "(the official metrics.py stops here)")
        ident, value = splits[0], splits[1]
        problem = None
        if ident != ident.strip() or ident.startswith("\ufeff"):
            problem = (f"identifier {ident!r} has surrounding spaces or a byte-order mark: the "
                       "official script would not find the example")
        elif value.lower() not in ("true", "false"):
            problem = (f"prediction {value!r} is neither True nor False: the official script "
                       "scores it wrong whatever the label")
        if problem is not None:
            if strict:
                raise ValueError(f"{p}:{lineno}: {problem}")
            n_bad += 1
            first_bad = first_bad or f"{p}:{lineno}: {problem}"
        if ident in out:
            raise ValueError(f"{p}:{lineno}: identifier {ident!r} repeated")
        out[ident] = (value.lower() == "true") if value.lower() in ("true", "false") else value
    if first_bad is not None:
        warnings.warn(f"{n_bad} line(s) the official script scores wrong or cannot match; "
                      f"first: {first_bad}", stacklevel=2)
    return out


def _read_classification(path: Path) -> dict[Any, dict[str, Any]]:
    out: dict[Any, dict[str, Any]] = {}
    if path.suffix.lower() == ".jsonl":
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{lineno}: not valid JSON: {err.msg}") from None
                if not isinstance(rec, dict) or "id" not in rec or "label" not in rec:
                    raise KeyError(f"{path}:{lineno}: needs 'id' and 'label'")
                if rec["id"] in out:
                    raise ValueError(f"{path}:{lineno}: id {rec['id']!r} repeated")
                out[rec["id"]] = {k: v for k, v in rec.items() if k != "id"}
        return out
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or header[:2] != ["id", "label"]:
            raise ValueError(f"{path}:1: classification csv needs the header 'id,label[,score_*]'")
        score_cols = header[2:]
        for lineno, row in enumerate(reader, 2):
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}:{lineno}: {len(row)} fields, header has {len(header)}")
            if row[0] in out:
                raise ValueError(f"{path}:{lineno}: id {row[0]!r} repeated")
            rec: dict[str, Any] = {"label": row[1]}
            if score_cols:
                try:
                    vals = [float(v) for v in row[2:]]
                except ValueError:
                    raise ValueError(f"{path}:{lineno}: scores must be numbers") from None
                rec["scores"] = vals[0] if len(vals) == 1 else vals
            out[row[0]] = rec
    return out


def _detect_task(path: Path, data: Any) -> str:
    if isinstance(data, dict):
        return "aokvqa"
    if isinstance(data, list) and data and isinstance(data[0], Mapping):
        keys = set(data[0])
        if {"question_id", "answer"} <= keys:
            return "vqa"
        if {"questionId", "prediction"} <= keys:
            return "gqa"
        if {"image", "answer"} <= keys or {"image", "answerable"} <= keys:
            return "vizwiz"
    raise ValueError(f"{path}: cannot tell which task this prediction file is for; pass task=")


def read_predictions(path: PathLike, task: str | None = None, *, strict: bool = True) -> dict[Any, Any]:
    """Read a prediction file into ``{id: prediction}``.

    vqa -> ``{int: str}``; gqa -> ``{str: str}``; nlvr2 (csv) -> ``{identifier: bool}``
    (:func:`read_nlvr2_predictions`; ``strict`` is its option);
    aokvqa -> ``{qid: {"multiple_choice"?, "direct_answer"?}}``; vizwiz -> ``{image: str}``
    (see :func:`read_vizwiz_predictions` for answerability); classification (.jsonl/.csv)
    -> ``{id: {"label": ..., "scores"?: ...}}``. ``task=None`` guesses from the file.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"prediction file not found: {p}")
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {TASKS}")
    suffix = p.suffix.lower()
    if task == "classification" or (task is None and suffix == ".jsonl"):
        return _read_classification(p)
    if task == "nlvr2" or (task is None and suffix == ".csv"):
        if task is None:
            with open(p, encoding="utf-8") as f:
                first = f.readline()
            if first.startswith("id,label"):
                return _read_classification(p)
        return read_nlvr2_predictions(p, strict=strict)
    data = _load_json(p)
    task = task or _detect_task(p, data)
    if task == "vqa":
        raw = _rows_to_map(p, data, "question_id", "answer")
        for q in raw:  # the official evaluator matches ids as given: "3" is not question 3
            if isinstance(q, bool) or not isinstance(q, int):
                raise ValueError(f"{p}: VQA question ids must be integers, got {q!r}")
        return raw
    if task == "gqa":
        return {str(q): a for q, a in _rows_to_map(p, data, "questionId", "prediction").items()}
    if task == "vizwiz":
        return read_vizwiz_predictions(p)[0]
    if task == "aokvqa":
        if not isinstance(data, dict):
            raise ValueError(f"{p}: A-OKVQA predictions are a JSON object keyed by question_id")
        for q, v in data.items():
            if not isinstance(v, Mapping) or not ({"multiple_choice", "direct_answer"} & set(v)):
                raise KeyError(f"{p}: entry {q!r} needs 'multiple_choice' and/or 'direct_answer'")
        return data
    raise ValueError(f"{p}: task {task!r} has no JSON prediction format")


def read_gqa_attentions(path: PathLike) -> dict[str, Any]:
    """GQA attention maps for the grounding score: the official ``eval.py`` file, a JSON
    list ``[{"questionId": str, "attention": ...}]`` (the attention is a list of
    ``[x0, y0, x1, y1, weight]`` boxes or an S x S grid, see
    :func:`lxmert.evaluation.gqa.evaluate_gqa`) -> ``{questionId: attention}``."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"attention file not found: {p}")
    data = _load_json(p)
    out = _rows_to_map(p, data, "questionId", "attention")
    for q, a in out.items():
        if not isinstance(a, list):
            raise ValueError(f"{p}: attention of questionId {q!r} must be a list, "
                             f"got {type(a).__name__}")
    return {str(q): a for q, a in out.items()}


def read_vizwiz_predictions(path: PathLike) -> tuple[dict[str, str], dict[str, float] | None]:
    """VizWiz predictions: ``({image: answer}, {image: p(answerable)} or None)``."""
    p = Path(path)
    data = _load_json(p)
    if not isinstance(data, list):
        raise ValueError(f"{p}: expected a JSON list of {{'image', 'answer'}} objects")
    answers: dict[str, str] = {}
    answerable: dict[str, float] = {}
    for i, r in enumerate(data):
        if not isinstance(r, Mapping) or "image" not in r:
            raise KeyError(f"{p}: entry #{i} has no 'image'")
        img = r["image"]
        if img in answers or img in answerable:
            raise ValueError(f"{p}: entry #{i} repeats image {img!r}")
        if "answer" in r:
            answers[img] = r["answer"]
        if "answerable" in r:
            v = float(r["answerable"])
            if math.isnan(v):
                raise ValueError(f"{p}: entry #{i}: answerable is NaN")
            answerable[img] = v
    if answerable and len(answerable) != len(data):
        raise ValueError(f"{p}: only {len(answerable)} of {len(data)} entries have 'answerable'")
    return answers, (answerable or None)
