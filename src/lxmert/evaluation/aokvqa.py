"""A-OKVQA evaluation: multiple choice (MC) and direct answer (DA), one scoring path.

:func:`evaluate_aokvqa` is THE A-OKVQA score: the training loop's validation metric
(``get_metric("aokvqa")``), ``lxmert evaluate`` and the standalone scorer all call it, so
validation curves, ``best/`` selection and reported figures are one number. It follows
``evaluation/eval_predictions.py`` of allenai/aokvqa (latest version, 42e8c44) as the
leaderboard runs it (``strict=False``):

* MC: over EVERY question of the dataset, 1 when the prediction equals
  ``choices[correct_choice_idx]``, else 0 - a prediction that is not one of the choices
  simply scores 0 (no mapping; ``mc_off_choice`` counts them), a question without a
  prediction scores 0;
* DA: over the questions whose ``difficult_direct_answer`` is ``False`` (the script's
  ``is False``; a missing field is taken as False), ``min(1, #direct_answers equal to the
  prediction / 3)`` - exact strings, no leave-one-out, no normalisation; a question
  without a prediction scores 0. ``da_accuracy_all`` / ``da_accuracy_difficult`` (all
  questions / the difficult ones) are reported too, as extras;
* the printout is ``sum / n * 100``, unrounded (``"official"``: ``mc``, ``da``).

A metric is absent when no prediction carries it (the script skips it too). Besides the
leaderboard keys, a prediction may carry other ``multiple_choice_<name>`` answers (the
fine-tuning task adds ``multiple_choice_map``); each is scored by the same MC rule as
``mc_accuracy_<name>``.

Producing MC answers is a prediction step, not part of scoring: :func:`select_choice`
picks the choice with the best model score, and :func:`map_to_choice` maps a free-form
answer to a choice. The official repository maps with the cosine similarity of averaged
GloVe word vectors (sentence-transformers ``average_word_embeddings_glove.6B.300d``); this
package ships no weights, so the default mapping is, in order: (1) exact string match; (2)
match after VQA normalisation (case, punctuation, articles, number words); (3) the highest
token-overlap F1 between normalised word bags - for averaged word vectors, shared words
dominate the cosine, so word overlap is the closest weight-free proxy; (4) ties and zero
overlap broken by character-trigram cosine similarity (catches "bike" vs "bikes",
"t-shirt" vs "tshirt"), then by choice order. Pass ``embed`` (texts -> [n, d] array) to use
real embeddings and reproduce the official mapping.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .aggregate import mean, percent_of_mean
from .ids import MISSING_CHOICES, Missing, index_annotations, unknown_ids_error
from .vqa import normalize_vqa_answer

__all__ = [
    "choice_scores_from_answer_scores",
    "da_accuracy",
    "evaluate_aokvqa",
    "map_to_choice",
    "select_choice",
]


def da_accuracy(prediction: str, direct_answers: Sequence[str]) -> float:
    """``min(1, #matches / 3)`` over the ten direct answers, exact strings (no leave-one-out:
    this is the A-OKVQA definition, not the VQA one)."""
    return min(1.0, sum([prediction == da for da in direct_answers]) / 3.0)


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
    norm = normalize_vqa_answer(answer)
    norm_choices = [normalize_vqa_answer(c) for c in choices]
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
            idx = ans2label.get(normalize_vqa_answer(c))
        out.append(float(s[idx]) if idx is not None else fill)
    return out


MC_PREFIX = "multiple_choice"


def _split_predictions(predictions: Mapping[Any, Any]) -> tuple[dict[str, dict[Any, str]], dict[Any, str]]:
    """``({mc_key: {qid: answer}}, {qid: direct answer})``; a plain string is the answer
    for both MC and DA."""
    mc: dict[str, dict[Any, str]] = {}
    da: dict[Any, str] = {}
    for qid, p in predictions.items():
        if isinstance(p, Mapping):
            for key, value in p.items():
                if key != "direct_answer" and not (key == MC_PREFIX or key.startswith(MC_PREFIX + "_")):
                    raise KeyError(f"prediction for {qid!r} has an unknown key {key!r} (expected "
                                   "'multiple_choice', 'direct_answer' or 'multiple_choice_<name>')")
                if not isinstance(value, str):
                    raise TypeError(f"prediction {key!r} for {qid!r} must be a string, "
                                    f"got {type(value).__name__}")
                if key == "direct_answer":
                    da[qid] = value
                else:
                    mc.setdefault(key, {})[qid] = value
        elif isinstance(p, str):
            mc.setdefault(MC_PREFIX, {})[qid] = p
            da[qid] = p
        else:
            raise TypeError(f"prediction for {qid!r} must be a dict or a string, "
                            f"got {type(p).__name__}")
    return mc, da


def _difficult(entry: Mapping[str, Any]) -> bool:
    # The script keeps a question for DA when ``difficult_direct_answer is False``.
    return entry.get("difficult_direct_answer", False) is not False


def evaluate_aokvqa(
    predictions: Mapping[Any, Any],
    dataset: Mapping[Any, Mapping[str, Any]] | Iterable[Mapping[str, Any]],
    *,
    missing: Missing = "zero",
) -> dict[str, Any]:
    """MC and DA accuracy of ``predictions`` - the one A-OKVQA score (module docstring).

    ``predictions``: ``{question_id: {"multiple_choice": str, "direct_answer": str}}``
    (the leaderboard format; either key may be absent; extra ``multiple_choice_<name>``
    keys are scored too) or ``{question_id: str}`` (the same answer for both).
    ``dataset``: the A-OKVQA json list or ``{question_id: entry}``; every question in it
    counts. ``missing``: ``"zero"`` (official: unpredicted questions score 0), ``"error"``
    or ``"ignore"`` (score the predicted questions only - not an official figure).
    Returns fractions (``mc_accuracy``, ``da_accuracy``, ...), ``per_question`` MC / DA
    scores, and ``"official"`` percentages.
    """
    gts = index_annotations(dataset, "question_id", container_key=None)
    mc, da = _split_predictions(predictions)
    unknown = [q for q in predictions if q not in gts]
    if unknown:
        raise unknown_ids_error(unknown, gts, "A-OKVQA question", "dataset")
    if missing not in MISSING_CHOICES:
        raise ValueError(f"missing must be one of {MISSING_CHOICES}, got {missing!r}")
    out: dict[str, Any] = {}
    official: dict[str, float] = {}
    per_question: dict[str, dict[Any, float]] = {}

    def questions(preds: Mapping[Any, str], what: str, keep: Any) -> list[Any]:
        ids = [q for q in gts if keep(gts[q])]
        absent = [q for q in ids if q not in preds]
        if absent and missing == "error":
            raise ValueError(f"{len(absent)} A-OKVQA questions have no {what} prediction, e.g. "
                             f"{absent[:3]!r} (pass missing='zero' or missing='ignore')")
        return [q for q in ids if q in preds] if missing == "ignore" else ids

    for key in sorted(mc, key=lambda k: (k != MC_PREFIX, k)):
        preds = mc[key]
        suffix = key[len(MC_PREFIX):]
        scores: list[float] = []
        off_choice = 0
        per_q: dict[Any, float] = {}
        for q in questions(preds, key, lambda e: True):
            e = gts[q]
            for k in ("choices", "correct_choice_idx"):
                if k not in e:
                    raise KeyError(f"question {q!r} has no {k!r} (needed for MC)")
            if q not in preds:
                acc = 0.0
            else:
                off_choice += preds[q] not in e["choices"]
                acc = float(preds[q] == e["choices"][e["correct_choice_idx"]])
            scores.append(acc)
            per_q[q] = acc
        if not scores:
            continue
        out[f"mc_accuracy{suffix}"] = mean(scores)
        if not suffix:
            out["mc_num_questions"] = len(scores)
            out["mc_off_choice"] = off_choice
            official["mc"] = percent_of_mean(scores)
            per_question["mc"] = per_q
    if da:
        for q in gts:
            if "direct_answers" not in gts[q]:
                raise KeyError(f"question {q!r} has no 'direct_answers' (needed for DA)")
        easy = questions(da, "direct_answer", lambda e: not _difficult(e))
        hard = questions(da, "direct_answer", _difficult)
        score = {q: (da_accuracy(da[q], gts[q]["direct_answers"]) if q in da else 0.0)
                 for q in easy + hard}
        if easy:
            out["da_accuracy"] = mean([score[q] for q in easy])
            official["da"] = percent_of_mean([score[q] for q in easy])
        everything = [score[q] for q in gts if q in score]
        if everything:
            out["da_accuracy_all"] = mean(everything)
        if hard:
            out["da_accuracy_difficult"] = mean([score[q] for q in hard])
        out["da_num_questions"] = len(easy)
        out["da_num_difficult"] = len(hard)
        per_question["da"] = {q: score[q] for q in easy}
    if not out:
        raise ValueError("evaluate_aokvqa: no prediction to evaluate")
    out["per_question"] = per_question
    out["official"] = official
    return out
