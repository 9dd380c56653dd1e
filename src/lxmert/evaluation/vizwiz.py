"""VizWiz-VQA evaluation: answer accuracy and answerability.

Follows ``vqaEval.py`` of the VizWiz API (Qing Li; the evaluation code linked from
vizwiz.org/tasks-and-datasets/vqa), which is a copy of an early VQA script and keeps that
script's rules:

* accuracy: the prediction is cleaned (newlines/tabs, strip) and fully normalised
  (punctuation, number words, articles, contractions) with the VizWiz contractions table,
  :data:`VIZWIZ_CONTRACTIONS`; the ten ground-truth answers are compared exactly as they
  are in the annotation file (no cleaning, no normalisation, whatever they contain);
  accuracy = mean over the annotators of ``min(1, #matching others / 3)``, the annotators
  told apart by position. "unanswerable" is an ordinary answer string. Reported overall
  and per ``answer_type`` (``round(100*sum/n, 2)`` in the printout).
  ``normalize_gt=True`` also normalises the ground truth - NOT the official setting.
* the contractions table: VizWiz's restores the typographic apostrophe (U+2019, ``’``) in
  almost every entry where the VQA table (:data:`lxmert.evaluation.vqa.CONTRACTIONS`) has a
  straight one: ``dont`` -> ``don’t``, so a prediction ``dont`` does not match a
  ground-truth ``don't``. Eight values keep the straight apostrophe (``ain't``, ``aren't``,
  ``can't``, ``could've``, ``couldn't``, ``we've``, ``where's``, ``who've``) and two keys
  keep it (``couldn'tve``, ``hadn'tve``), exactly as in the VizWiz file.
* answerability (``evaluate_unanswerability``): from the ``answerable`` probability of each
  prediction, the average precision and the F1 (at ``1 - p > 0.5``) of *unanswerability*
  (positives ``answerable == 0``, scores ``1 - p``), computed like scikit-learn's
  ``average_precision_score`` and ``f1_score`` that the official code calls:
  ``unanswerable_ap``, ``unanswerable_f1``. The AP of answerability itself
  (``answerable_ap``) is reported too (not an official figure). Without a separate
  probability, ``answerable_scores="from_answers"`` derives a hard 0/1 answerability from
  the predicted answer (answerable unless it normalises to "unanswerable"), as the later
  VizWiz code for generative models does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np

from .aggregate import mean, rounded_percent
from .answer_normalization import AnswerNormalizer
from .classification import average_precision, f1_scores
from .ids import Missing, index_annotations, match_ids
from .vqa import CONTRACTIONS, leave_one_out_accuracy

__all__ = [
    "ANSWER_TYPES",
    "VIZWIZ_CONTRACTIONS",
    "VIZWIZ_NORMALIZER",
    "evaluate_vizwiz",
    "normalize_vizwiz_answer",
    "vizwiz_accuracy",
]

ANSWER_TYPES = ("yes/no", "number", "other", "unanswerable")

_CURLY = "\u2019"
# Where the VizWiz file kept the straight apostrophe of the original table.
_STRAIGHT_VALUES = frozenset({"aint", "arent", "cant", "couldve", "couldnt", "weve", "wheres", "whove"})
_STRAIGHT_KEYS = frozenset({"couldn'tve", "hadn'tve"})

#: The VizWiz API's contractions table (see the module docstring for how it differs).
VIZWIZ_CONTRACTIONS: dict[str, str] = {
    (k if k in _STRAIGHT_KEYS else k.replace("'", _CURLY)):
        (v if k in _STRAIGHT_VALUES else v.replace("'", _CURLY))
    for k, v in CONTRACTIONS.items()
}

VIZWIZ_NORMALIZER = AnswerNormalizer("vizwiz", VIZWIZ_CONTRACTIONS)


def normalize_vizwiz_answer(answer: str) -> str:
    """The VizWiz script's normalisation of a prediction (VizWiz contractions table)."""
    return VIZWIZ_NORMALIZER.normalize(answer)


def _answers(entry: Mapping[str, Any], where: str) -> list[str]:
    if "answers" not in entry:
        raise KeyError(f"{where}: no 'answers'")
    out = []
    for j, a in enumerate(entry["answers"]):
        if isinstance(a, Mapping):
            if "answer" not in a:
                raise KeyError(f"{where}: answers[{j}] has no 'answer'")
            a = a["answer"]
        if not isinstance(a, str):
            raise TypeError(f"{where}: answers[{j}] must be a string")
        out.append(a)
    if not out:
        raise ValueError(f"{where}: empty 'answers'")
    return out


def vizwiz_accuracy(prediction: str, answers: list[str], *, normalize_gt: bool = False) -> float:
    """Official per-question VizWiz accuracy (leave-one-out over the given answers)."""
    if not isinstance(prediction, str):
        raise TypeError(f"prediction must be a string, got {type(prediction).__name__}")
    gts = [normalize_vizwiz_answer(a) for a in answers] if normalize_gt else answers
    return leave_one_out_accuracy(normalize_vizwiz_answer(prediction), gts)


def evaluate_vizwiz(
    predictions: Mapping[str, str],
    annotations: Mapping[str, Mapping[str, Any]] | Iterable[Mapping[str, Any]],
    answerable_scores: Mapping[str, float] | Literal["from_answers"] | None = None,
    *,
    normalize_gt: bool = False,
    missing: Missing = "error",
    ndigits: int = 2,
) -> dict[str, Any]:
    """VizWiz accuracy of ``predictions`` (``{image: answer}``) and, when
    ``answerable_scores`` (``{image: p(answerable)}``) is given, answerability AP/F1.

    ``annotations``: the VizWiz json list (entries with ``image``, ``answers``,
    ``answer_type``, ``answerable``) or ``{image: entry}``. Fractions at the top level
    (and ``per_question``); the official printout (percent) under ``"official"``.
    """
    gts = index_annotations(annotations, "image", container_key=None)
    out: dict[str, Any] = {}
    official: dict[str, Any] = {}
    if predictions:
        ids = match_ids(predictions, gts, missing, "VizWiz image")
        accs: list[float] = []
        per_q: dict[str, float] = {}
        per_type: dict[str, list[float]] = defaultdict(list)
        for img in ids:
            e = gts[img]
            acc = (vizwiz_accuracy(predictions[img], _answers(e, f"image {img!r}"),
                                   normalize_gt=normalize_gt)
                   if img in predictions else 0.0)
            accs.append(acc)
            per_q[img] = acc
            if "answer_type" in e:
                per_type[e["answer_type"]].append(acc)
        if not accs:
            raise ValueError("evaluate_vizwiz: nothing to evaluate")
        out["accuracy"] = mean(accs)
        out["per_answer_type"] = {k: mean(v) for k, v in per_type.items()}
        out["per_question"] = per_q
        out["num_questions"] = len(accs)
        official["overall"] = rounded_percent(accs, ndigits)
        official["perAnswerType"] = {k: rounded_percent(v, ndigits) for k, v in per_type.items()}
    if isinstance(answerable_scores, str):
        if answerable_scores != "from_answers":
            raise ValueError(f"answerable_scores must be a mapping, 'from_answers' or None, "
                             f"got {answerable_scores!r}")
        answerable_scores = {
            img: float(normalize_vizwiz_answer(a) != "unanswerable") for img, a in predictions.items()
        }
    if answerable_scores is not None:
        ids = match_ids(answerable_scores, gts, missing, "VizWiz image")
        ids = [i for i in ids if i in answerable_scores]
        for i in ids:
            if "answerable" not in gts[i]:
                raise KeyError(f"image {i!r} has no 'answerable' label")
        y = np.array([int(gts[i]["answerable"]) for i in ids], dtype=np.int64)
        p = np.array([float(answerable_scores[i]) for i in ids], dtype=np.float64)
        if len(y) == 0:
            raise ValueError("evaluate_vizwiz: no answerability score to evaluate")
        if ((p < 0) | (p > 1)).any():
            raise ValueError("answerable scores must be probabilities in [0, 1]")
        y_un, p_un = 1 - y, 1.0 - p
        out["unanswerable_ap"] = average_precision(y_un, p_un)
        out["unanswerable_f1"] = f1_scores(y_un, (p_un > 0.5).astype(np.int64),
                                           num_labels=2)["per_label"][1]
        out["answerable_ap"] = average_precision(y, p)
        official["unanswerability"] = {
            "average_precision": round(100 * out["unanswerable_ap"], ndigits),
            "f1_score": round(100 * out["unanswerable_f1"], ndigits),
        }
    if not out:
        raise ValueError("evaluate_vizwiz: give predictions and/or answerable_scores")
    out["official"] = official
    return out
