"""The task metric registry the training loop and ``lxmert evaluate`` use.

:func:`get_metric` returns the :class:`Metric` of a task: ``metric(predictions,
annotations) -> {name: float}`` (flat, nested breakdowns as ``"accuracy/yes/no"``-style
keys), with ``metric.primary`` the entry that picks the best checkpoint. Registry metrics
take ``predictions`` as ``{id: answer}`` (or the list-of-dicts form of the submission files)
and the dataset's annotation entries. VQA, GQA, NLVR2 and VizWiz evaluate the predicted ids
only (a validation pass over a subset is fine); A-OKVQA scores every annotated question,
as its official script does (:func:`~lxmert.evaluation.aokvqa.evaluate_aokvqa` is its one
scoring path). :func:`score` is the full evaluator from file paths or objects (what ``lxmert score``
runs).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .aokvqa import evaluate_aokvqa
from .classification import evaluate_classification
from .gqa import evaluate_gqa
from .ids import require_unique_ids
from .nlvr2 import evaluate_nlvr2
from .submissions import read_gqa_attentions, read_predictions, read_vizwiz_predictions
from .vizwiz import evaluate_vizwiz
from .vqa import evaluate_vqa, label_score

__all__ = ["METRICS", "Metric", "score", "get_metric", "load_annotations"]

# Per-item tables and reasons are not metrics: left out of the flat dict.
_SKIP = {"official", "per_question", "per_example", "absent", "rules"}


def _flatten(result: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a nested result as flat keys: ``per_answer_type: {"yes/no": x}`` ->
    ``"accuracy/yes/no"``, ``per_semantic_type: {"rel": x}`` -> ``"accuracy/semantic_type/rel"``."""
    out: dict[str, float] = {}
    for k, v in result.items():
        if k in _SKIP:
            continue
        if isinstance(v, Mapping):
            if k == "per_answer_type":
                prefix = "accuracy/"
            elif k.startswith("per_"):
                prefix = f"accuracy/{k[4:]}/"
            else:
                prefix = f"{k}/"
            for kk, vv in v.items():
                if isinstance(vv, (int, float)) and not isinstance(vv, bool):
                    out[f"{prefix}{kk}"] = float(vv)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = float(v)
    return out


_LIST_KEYS = (("question_id", "answer"), ("questionId", "prediction"), ("image", "answer"),
              ("identifier", "label"), ("identifier", "prediction"), ("id", "label"))


def _as_map(predictions: Any) -> dict[Any, Any]:
    """``{id: prediction}`` from a mapping, a list of row dicts (the submission files'
    form) or ``(id, prediction)`` pairs; a repeated id is an error, not a silent overwrite."""
    if isinstance(predictions, Mapping):
        return dict(predictions)
    rows = list(predictions)
    if not rows:
        return {}
    if isinstance(rows[0], Mapping):
        for id_key, val_key in _LIST_KEYS:
            if id_key in rows[0] and val_key in rows[0]:
                for i, r in enumerate(rows):
                    if not isinstance(r, Mapping) or id_key not in r or val_key not in r:
                        raise ValueError(f"predictions: entry #{i} lacks {id_key!r} or {val_key!r}")
                require_unique_ids((r[id_key] for r in rows), id_key, "predictions")
                return {r[id_key]: r[val_key] for r in rows}
        raise KeyError(f"cannot read predictions with keys {sorted(rows[0])}")
    pairs = [tuple(r) for r in rows]
    require_unique_ids((r[0] for r in pairs), "id", "predictions")
    return dict(pairs)  # type: ignore[arg-type]


def _by_id(entries: list[Mapping[str, Any]], key: str, source: str = "annotations") -> dict[Any, Mapping[str, Any]]:
    """``{id: entry}``; an entry without ``key`` or a repeated id is an error naming it."""
    for i, e in enumerate(entries):
        if key not in e:
            raise ValueError(f"{source}: entry #{i} has no {key!r}")
    require_unique_ids((e[key] for e in entries), key, source)
    return {e[key]: e for e in entries}


def _entry_dict(entry: Any, i: int) -> Mapping[str, Any]:
    """A dataset entry as a dict: dicts pass, dataclasses (e.g. ``lxmert.data.qa.QAEntry``)
    and plain objects are read field by field."""
    if isinstance(entry, Mapping):
        return entry
    if dataclasses.is_dataclass(entry) and not isinstance(entry, type):
        return {f.name: getattr(entry, f.name) for f in dataclasses.fields(entry)}
    if hasattr(entry, "__dict__"):
        return vars(entry)
    raise TypeError(f"annotation #{i} must be a dict or a dataclass, got {type(entry).__name__}")


def _entries(annotations: Any, key: str) -> list[Mapping[str, Any]]:
    """The annotation entries as a list of dicts, from a list, ``{id: entry}`` (the id is
    put under ``key`` when the entry lacks it, as in GQA's questions file), an official file
    dict (``{"annotations": [...]}``) or a dataset object exposing ``entries``."""
    if hasattr(annotations, "entries") and not isinstance(annotations, Mapping):
        annotations = annotations.entries
    if isinstance(annotations, Mapping):
        inner = annotations.get("annotations")
        if isinstance(inner, list):
            annotations = inner
        else:
            out = []
            for i, (ident, e) in enumerate(annotations.items()):
                d = _entry_dict(e, i)
                out.append(d if key in d else {**d, key: ident})
            return out
    return [_entry_dict(e, i) for i, e in enumerate(annotations)]


def _vqa(predictions: Any, annotations: Any, rules: str = "master") -> dict[str, float]:
    preds = _as_map(predictions)
    entries = _entries(annotations, "question_id")
    by_id = _by_id(entries, "question_id")
    unknown = [q for q in preds if q not in by_id]
    if unknown:
        raise KeyError(f"{len(unknown)} predicted question ids are not in the annotations, "
                       f"e.g. {unknown[:3]!r}")
    out: dict[str, float] = {}
    labelled = all(by_id[q].get("label") is not None for q in preds)
    if labelled:
        out["label_score"] = label_score(preds, {q: by_id[q]["label"] for q in preds})
    if all(by_id[q].get("answers") is not None for q in preds):
        res = evaluate_vqa(preds, by_id, rules=rules, missing="ignore")
        out.update(_flatten(res))
    elif labelled:
        # Soft labels equal the official leave-one-out accuracy of each answer (see
        # vqa.soft_scores), so the release's score stands in for it.
        out["accuracy"] = out["label_score"]
        # the official breakdowns' keys: per answer type, then per question type
        for field, prefix in (("answer_type", "accuracy/"), ("question_type", "accuracy/question_type/")):
            per: dict[Any, dict[Any, str]] = {}
            for q, a in preds.items():
                t = by_id[q].get(field)
                if t is not None:
                    per.setdefault(t, {})[q] = a
            out.update({f"{prefix}{t}": label_score(group, {q: by_id[q]["label"] for q in group})
                        for t, group in per.items()})
    else:
        raise KeyError("VQA annotations need 'answers' (official accuracy) or 'label' (soft "
                       "scores) for every predicted question")
    out["num_questions"] = float(len(preds))
    return out


def _gqa(predictions: Any, annotations: Any) -> dict[str, float]:
    entries = _entries(annotations, "question_id")
    return _flatten(evaluate_gqa(_as_map(predictions), entries, missing="ignore"))


def _nlvr2(predictions: Any, annotations: Any) -> dict[str, float]:
    entries = _entries(annotations, "identifier")
    return _flatten(evaluate_nlvr2(_as_map(predictions), entries, missing="ignore"))


def _aokvqa(predictions: Any, annotations: Any) -> dict[str, float]:
    entries = _entries(annotations, "question_id")
    return _flatten(evaluate_aokvqa(_as_map(predictions), entries))


def _vizwiz(predictions: Any, annotations: Any) -> dict[str, float]:
    preds = _as_map(predictions)
    answers: dict[Any, str] = {}
    answerable: dict[Any, float] = {}
    for k, v in preds.items():
        if isinstance(v, Mapping):
            if "answer" in v:
                answers[k] = v["answer"]
            if "answerable" in v:
                answerable[k] = float(v["answerable"])
        else:
            answers[k] = v
    entries = _entries(annotations, "image")
    res = evaluate_vizwiz(answers, entries, answerable or None, missing="ignore")
    return _flatten(res)


def _classification(predictions: Any, annotations: Any) -> dict[str, float]:
    preds = _as_map(predictions)
    by_id = _by_id(_entries(annotations, "id"), "id")
    ids = list(preds)
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise KeyError(f"{len(missing)} predicted ids not in the annotations, e.g. {missing[:3]!r}")
    labels = np.asarray([by_id[i]["label"] for i in ids])
    scores = []
    for i in ids:
        p = preds[i]
        s = p.get("scores", p.get("label")) if isinstance(p, Mapping) else p
        scores.append(s)
    res = evaluate_classification(labels, np.asarray(scores, dtype=np.float64))
    return {k: float(v) for k, v in res.items() if isinstance(v, (int, float))}


@dataclass(frozen=True)
class Metric:
    """A task metric for the training loop: ``metric(predictions, annotations) -> dict``.

    ``primary`` names the entry used to pick the best checkpoint (higher is better);
    ``options`` are the keyword options ``fn`` accepts (VQA: ``rules``), bound with
    :meth:`with_options` or :func:`get_metric`.
    """

    task: str
    primary: str
    fn: Callable[..., dict[str, float]]
    description: str
    options: tuple[str, ...] = ()

    def __call__(self, predictions: Any, annotations: Any) -> dict[str, float]:
        out = self.fn(predictions, annotations)
        if self.primary not in out or math.isnan(out[self.primary]):
            raise ValueError(f"{self.task} metric produced no {self.primary!r}")
        return out

    def with_options(self, **options: Any) -> "Metric":
        """This metric with keyword options bound (``get_metric("vqa").with_options(
        rules="legacy")``); an option the metric does not take is an error naming it."""
        bad = sorted(set(options) - set(self.options))
        if bad:
            raise TypeError(f"the {self.task} metric takes no option {bad[0]!r}; "
                            f"options: {list(self.options) or 'none'}")
        if not options:
            return self
        return dataclasses.replace(self, fn=functools.partial(self.fn, **options))


METRICS: dict[str, Metric] = {
    "vqa": Metric("vqa", "accuracy", _vqa,
                  "official VQA accuracy (or the release's soft-label score without raw answers)",
                  options=("rules",)),
    "gqa": Metric("gqa", "accuracy", _gqa, "GQA exact-match accuracy"),
    "nlvr2": Metric("nlvr2", "accuracy", _nlvr2, "NLVR2 accuracy and consistency"),
    "aokvqa": Metric("aokvqa", "mc_accuracy", _aokvqa,
                     "A-OKVQA multiple-choice / direct-answer (the official scoring path)"),
    "vizwiz": Metric("vizwiz", "accuracy", _vizwiz, "VizWiz accuracy and answerability AP"),
    "classification": Metric("classification", "accuracy", _classification,
                             "accuracy, macro/micro F1, AUROC"),
}


def load_annotations(path: str | os.PathLike) -> Any:
    """Read an annotation file: JSON (a list, ``{id: entry}`` or an official file dict) or
    JSON lines (the raw NLVR2 files). Errors name the file and line."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"annotation file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{p}: not UTF-8 text ({err})") from None

    def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # an id-keyed file ({question_id: entry}) with a repeated id would keep only the
        # last entry, silently; a repeated key anywhere is a damaged file
        out = dict(pairs)
        if len(out) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise ValueError(f"{p}: key {key!r} repeated in one JSON object")
                seen.add(key)
        return out

    try:
        return json.loads(text, object_pairs_hook=unique_keys)
    except json.JSONDecodeError as whole_err:
        rows = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line, object_pairs_hook=unique_keys))
            except json.JSONDecodeError as err:
                where = whole_err if lineno == 1 else err
                raise ValueError(f"{p}:{lineno if lineno > 1 else where.lineno}: neither JSON nor "
                                 f"JSON lines ({where.msg})") from None
        return rows


#: the key that identifies an annotation entry, per task
_ID_KEYS = {"vqa": "question_id", "gqa": "question_id", "nlvr2": "identifier", "aokvqa": "question_id",
            "vizwiz": "image", "classification": "id"}


def _maybe_load(value: Any) -> Any:
    return load_annotations(value) if isinstance(value, (str, os.PathLike)) else value


def score(task: str, predictions: Any, annotations: Any, *, strict: bool = True,
             **kwargs: Any) -> dict[str, Any]:
    """The full evaluator of ``task`` (nested breakdowns and the ``"official"`` printout).

    ``predictions`` / ``annotations`` may be paths (read with :func:`read_predictions`,
    ``strict`` being the NLVR2 csv reader's option, and :func:`load_annotations`) or
    in-memory objects. ``kwargs`` go to the evaluator (``rules=`` for VQA, ``missing=``,
    ``group_by=`` / ``categories=`` for NLVR2, ``balanced_only=`` / ``choices=`` /
    ``scene_graphs=`` / ``attentions=`` for GQA - those three may be paths too).
    """
    answerable = None
    if isinstance(predictions, (str, os.PathLike)):
        if task == "vizwiz":
            predictions, answerable = read_vizwiz_predictions(predictions)
        else:
            predictions = read_predictions(predictions, task, strict=strict)
    if isinstance(annotations, (str, os.PathLike)):
        source = str(annotations)
        annotations = load_annotations(annotations)
        if task in _ID_KEYS:  # a repeated id is refused naming the file, before any scoring
            _by_id(_entries(annotations, _ID_KEYS[task]), _ID_KEYS[task], source)
    if task == "vqa":
        return evaluate_vqa(_as_map(predictions), annotations, **kwargs)
    if task == "gqa":
        for key in ("choices", "scene_graphs"):
            if key in kwargs:
                kwargs[key] = _maybe_load(kwargs[key])
        if isinstance(kwargs.get("attentions"), (str, os.PathLike)):
            kwargs["attentions"] = read_gqa_attentions(kwargs["attentions"])
        return evaluate_gqa(_as_map(predictions), _entries(annotations, "question_id"), **kwargs)
    if task == "nlvr2":
        return evaluate_nlvr2(_as_map(predictions), _entries(annotations, "identifier"), **kwargs)
    if task == "aokvqa":
        return evaluate_aokvqa(_as_map(predictions), _entries(annotations, "question_id"), **kwargs)
    if task == "vizwiz":
        if answerable is not None:
            kwargs.setdefault("answerable_scores", answerable)
        return evaluate_vizwiz(_as_map(predictions), _entries(annotations, "image"), **kwargs)
    if task == "classification":
        return get_metric("classification")(predictions, annotations)
    raise KeyError(f"no evaluator for task {task!r}; known: {sorted(METRICS)}")


def get_metric(task: str, **options: Any) -> Metric:
    """The registry metric of ``task`` (vqa, gqa, nlvr2, aokvqa, vizwiz, classification),
    with ``options`` bound (``get_metric("vqa", rules="legacy")``)."""
    try:
        metric = METRICS[task]
    except KeyError:
        raise KeyError(f"no metric for task {task!r}; known: {sorted(METRICS)}") from None
    return metric.with_options(**options)
