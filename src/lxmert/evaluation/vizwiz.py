"""VizWiz-VQA evaluation: answer accuracy and answerability.

Follows the VizWiz challenge's evaluation code (``VQAEval`` of the VizWiz API, Qing Li,
linked from vizwiz.org/tasks-and-datasets/vqa):

* accuracy: the predicted answer is normalised as in the VQA script (punctuation,
  digits, articles, contractions - :func:`lxmert.evaluation.vqa.normalize_answer`); the ten
  ground-truth answers are compared as given (``normalize_gt=True`` also normalises them,
  useful for raw crowd answers); accuracy = mean over the ten leave-one-out subsets of
  ``min(1, #matches / 3)``. "unanswerable" is an ordinary answer string. Reported overall
  and per ``answer_type`` ("yes/no", "number", "other", "unanswerable").
* answerability (``evaluate_unanswerability`` in the official code): the model gives
  ``p(answerable)``; the official figures are the average precision and the F1 (at 0.5)
  of *unanswerability*, i.e. with positives ``answerable == 0`` and scores
  ``1 - p(answerable)``. We report those (``unanswerable_ap``, ``unanswerable_f1``) and also
  the AP of answerability itself (``answerable_ap``). AP is computed by
  :func:`lxmert.evaluation.classification.average_precision` (scikit-learn's definition,
  which the official code calls). Without a separate probability,
  ``answerable_scores="from_answers"`` derives a hard 0/1 answerability from the predicted
  answer (answerable unless it normalises to "unanswerable"), as later versions of the
  official code do for generative models.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Literal, Mapping

import numpy as np

from ._common import Missing, index_annotations, match_ids, mean, official_pct
from .classification import average_precision, f1_scores
from .vqa import leave_one_out_accuracy, normalize_answer

__all__ = ["ANSWER_TYPES", "evaluate_vizwiz", "vizwiz_accuracy"]

ANSWER_TYPES = ("yes/no", "number", "other", "unanswerable")


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
    gts = [normalize_answer(a) for a in answers] if normalize_gt else answers
    return leave_one_out_accuracy(normalize_answer(prediction), gts)


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
    ``answer_type``, ``answerable``) or ``{image: entry}``.
    """
    gts = index_annotations(annotations, "image", container_key=None)
    out: dict[str, Any] = {}
    official: dict[str, Any] = {}
    if predictions:
        ids = match_ids(predictions, gts, missing, "VizWiz image")
        accs: list[float] = []
        per_type: dict[str, list[float]] = defaultdict(list)
        for img in ids:
            e = gts[img]
            acc = (vizwiz_accuracy(predictions[img], _answers(e, f"image {img!r}"),
                                   normalize_gt=normalize_gt)
                   if img in predictions else 0.0)
            accs.append(acc)
            if "answer_type" in e:
                per_type[e["answer_type"]].append(acc)
        if not accs:
            raise ValueError("evaluate_vizwiz: nothing to evaluate")
        out["accuracy"] = mean(accs)
        out["per_answer_type"] = {k: mean(v) for k, v in per_type.items()}
        out["num_questions"] = len(accs)
        official["overall"] = official_pct(accs, ndigits)
        official["perAnswerType"] = {k: official_pct(v, ndigits) for k, v in per_type.items()}
    if isinstance(answerable_scores, str):
        if answerable_scores != "from_answers":
            raise ValueError(f"answerable_scores must be a mapping, 'from_answers' or None, "
                             f"got {answerable_scores!r}")
        answerable_scores = {
            img: float(normalize_answer(a) != "unanswerable") for img, a in predictions.items()
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
