"""A-OKVQA evaluation: multiple choice (MC) and direct answer (DA).

Follows ``evaluation/eval_predictions.py`` of allenai/aokvqa (its latest version):

* MC accuracy: a question scores 1 when the predicted string equals
  ``choices[correct_choice_idx]``; all questions count. A prediction that is not one of
  the choices simply scores 0 (the leaderboard script runs with ``strict=False``).
* DA accuracy: ``min(1, #direct_answers equal to the prediction / 3)``, compared as exact
  strings (the dataset's ``direct_answers`` are already processed); the official DA figure
  counts only questions with ``difficult_direct_answer`` false. We report that number as
  ``da_accuracy`` and also the DA accuracy on all questions and on the difficult subset.
  ``normalize=True`` applies the VQA answer normalisation to both sides, for free-form
  (generated) answers - not the official setting.
* Questions without a prediction score 0 (official, ``strict=False``).

Mapping a classifier's free-form answer to a choice (:func:`map_to_choice`): the official
repository maps with the cosine similarity of averaged GloVe word vectors
(sentence-transformers ``average_word_embeddings_glove.6B.300d``). This package ships no
weights, so the default mapping is, in order: (1) exact string match; (2) match after VQA
normalisation (case, punctuation, articles, number words); (3) the highest token-overlap
F1 between normalised word bags - for averaged word vectors, shared words dominate the
cosine, so word overlap is the closest weight-free proxy; (4) ties and zero overlap broken
by character-trigram cosine similarity (catches "bike" vs "bikes", "t-shirt" vs "tshirt"),
then by choice order. Pass ``embed`` (texts -> [n, d] array) to use real embeddings and
reproduce the official mapping. :func:`select_choice` picks the choice with the best
model score when choices are scored directly (e.g. the answer head's logits of the four
choice strings).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ._common import Missing, index_annotations, match_ids, mean, official_pct
from .vqa import normalize_answer

__all__ = [
    "choice_scores_from_answer_scores",
    "da_accuracy",
    "evaluate_aokvqa",
    "map_to_choice",
    "select_choice",
]


def da_accuracy(
    prediction: str, direct_answers: Sequence[str], *, normalize: bool = False
) -> float:
    """``min(1, #matches / 3)`` over the ten direct answers (no leave-one-out: this is the
    A-OKVQA definition, not the VQA one)."""
    if normalize:
        prediction = normalize_answer(prediction)
        direct_answers = [normalize_answer(a) for a in direct_answers]
    return min(1.0, sum(1 for a in direct_answers if a == prediction) / 3.0)


def _trigrams(text: str) -> Counter[str]:
    padded = f"  {text} "
    return Counter(padded[i:i + 3] for i in range(len(padded) - 2))


def _cosine(a: Counter[str], b: Counter[str]) -> float:
    dot = sum(v * b.get(k, 0) for k, v in a.items())
    na = math.sqrt(sum(v * v for v in a.values()))
    nb = math.sqrt(sum(v * v for v in b.values()))
    return dot / (na * nb) if na and nb else 0.0


def _token_f1(a: Sequence[str], b: Sequence[str]) -> float:
    common = sum((Counter(a) & Counter(b)).values())
    if common == 0:
        return 0.0
    p, r = common / len(a), common / len(b)
    return 2 * p * r / (p + r)


def map_to_choice(
    answer: str,
    choices: Sequence[str],
    *,
    embed: Callable[[list[str]], Any] | None = None,
) -> str:
    """The choice nearest to a free-form ``answer`` (see the module docstring)."""
    if not choices:
        raise ValueError("map_to_choice: no choices")
    if answer in choices:
        return answer
    norm = normalize_answer(answer)
    norm_choices = [normalize_answer(c) for c in choices]
    for c, nc in zip(choices, norm_choices):
        if nc == norm:
            return c
    if embed is not None:
        vecs = np.asarray(embed([answer, *choices]), dtype=np.float64)
        if vecs.shape[0] != len(choices) + 1:
            raise ValueError(f"embed returned {vecs.shape[0]} vectors for "
                             f"{len(choices) + 1} texts")
        q, cs = vecs[0], vecs[1:]
        denom = np.linalg.norm(cs, axis=1) * np.linalg.norm(q)
        sims = np.where(denom > 0, cs @ q / np.where(denom > 0, denom, 1.0), -1.0)
        return choices[int(np.argmax(sims))]
    words = norm.split()
    tri = _trigrams(norm)
    best = max(
        range(len(choices)),
        key=lambda i: (_token_f1(words, norm_choices[i].split()),
                       _cosine(tri, _trigrams(norm_choices[i])), -i),
    )
    return choices[best]


def select_choice(choices: Sequence[str], scores: Sequence[float]) -> str:
    """The choice with the highest score (first on ties)."""
    if len(choices) != len(scores) or not choices:
        raise ValueError(f"{len(choices)} choices but {len(scores)} scores")
    return choices[int(np.argmax(np.asarray(scores, dtype=np.float64)))]


def choice_scores_from_answer_scores(
    choices: Sequence[str],
    answer_scores: Any,
    ans2label: Mapping[str, int],
    *,
    fill: float = float("-inf"),
) -> list[float]:
    """Score each choice with an answer head: the score of the choice's (normalised)
    answer in ``ans2label``; choices outside the vocabulary get ``fill``."""
    s = np.asarray(answer_scores, dtype=np.float64).reshape(-1)
    out = []
    for c in choices:
        idx = ans2label.get(c)
        if idx is None:
            idx = ans2label.get(normalize_answer(c))
        out.append(float(s[idx]) if idx is not None else fill)
    return out


def _split_predictions(predictions: Mapping[Any, Any]) -> tuple[dict[Any, str], dict[Any, str]]:
    mc: dict[Any, str] = {}
    da: dict[Any, str] = {}
    for qid, p in predictions.items():
        if isinstance(p, Mapping):
            unknown = set(p) - {"multiple_choice", "direct_answer"}
            if unknown:
                raise KeyError(f"prediction for {qid!r} has unknown keys {sorted(unknown)}")
            if "multiple_choice" in p:
                mc[qid] = p["multiple_choice"]
            if "direct_answer" in p:
                da[qid] = p["direct_answer"]
        elif isinstance(p, str):
            mc[qid] = p
            da[qid] = p
        else:
            raise TypeError(f"prediction for {qid!r} must be a dict or a string, "
                            f"got {type(p).__name__}")
    return mc, da


def evaluate_aokvqa(
    predictions: Mapping[Any, Any],
    dataset: Mapping[Any, Mapping[str, Any]] | Iterable[Mapping[str, Any]],
    *,
    normalize: bool = False,
    map_choices: bool = False,
    missing: Missing = "zero",
    ndigits: int = 2,
) -> dict[str, Any]:
    """MC and DA accuracy of ``predictions``.

    ``predictions``: ``{question_id: {"multiple_choice": str, "direct_answer": str}}``
    (the leaderboard format; either key may be absent) or ``{question_id: str}`` (the same
    answer for both). ``dataset``: the A-OKVQA json list or ``{question_id: entry}``.
    ``map_choices=True`` maps MC answers that are not among the choices with
    :func:`map_to_choice` first. Fractions at the top level; the official percentages
    under ``"official"`` (``mc``, ``da``). A metric is absent when no prediction has it.
    """
    gts = index_annotations(dataset, "question_id", container_key=None)
    mc, da = _split_predictions(predictions)
    for name, preds in (("multiple_choice", mc), ("direct_answer", da)):
        unknown = [q for q in preds if q not in gts]
        if unknown:
            raise KeyError(f"{len(unknown)} {name} predictions for question ids not in the "
                           f"dataset, e.g. {unknown[:3]!r}")
    out: dict[str, Any] = {}
    official: dict[str, float] = {}
    if mc:
        ids = match_ids(mc, gts, missing, "A-OKVQA question")
        scores = []
        for q in ids:
            e = gts[q]
            for k in ("choices", "correct_choice_idx"):
                if k not in e:
                    raise KeyError(f"question {q!r} has no {k!r} (needed for MC)")
            pred = mc.get(q)
            if pred is not None and map_choices:
                pred = map_to_choice(pred, e["choices"])
            scores.append(float(pred is not None and pred == e["choices"][e["correct_choice_idx"]]))
        out["mc_accuracy"] = mean(scores)
        out["mc_num_questions"] = len(scores)
        official["mc"] = official_pct(scores, ndigits)
    if da:
        ids = match_ids(da, gts, missing, "A-OKVQA question")
        easy, hard = [], []
        for q in ids:
            e = gts[q]
            if "direct_answers" not in e:
                raise KeyError(f"question {q!r} has no 'direct_answers' (needed for DA)")
            acc = da_accuracy(da[q], e["direct_answers"], normalize=normalize) if q in da else 0.0
            (hard if e.get("difficult_direct_answer", False) else easy).append(acc)
        if easy:
            out["da_accuracy"] = mean(easy)
            official["da"] = official_pct(easy, ndigits)
        out["da_accuracy_all"] = mean(easy + hard)
        if hard:
            out["da_accuracy_difficult"] = mean(hard)
        out["da_num_questions"] = len(easy)
        out["da_num_difficult"] = len(hard)
    if not out:
        raise ValueError("evaluate_aokvqa: no prediction to evaluate")
    out["official"] = official
    return out
