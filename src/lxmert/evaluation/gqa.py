"""GQA evaluation: exact-match accuracy and the official per-type breakdowns.

Follows the official GQA ``eval.py`` (Hudson & Manning, distributed with the GQA v1.2
questions): a question scores 1 when the predicted string equals the gold ``answer``
exactly (no normalisation), and only questions with ``isBalanced`` true count. Reported:

* ``accuracy``; ``binary`` and ``open`` (structural type ``query`` is open, every other
  structural type is binary);
* accuracy per structural type (verify, query, choose, logical, compare), per semantic
  type (rel, attr, obj, cat, global), per number of reasoning steps (the operations of
  ``semantic`` other than exist / "query: name" / "choose name") and per question length
  in words - each present only when the annotations carry the fields it needs;
* ``consistency``: for each correctly answered question with ``entailed`` questions, the
  accuracy on those entailed questions, averaged (when ``entailed`` is present);
* ``distribution``: the chi-square distance between gold and predicted answer histograms
  per ``groups.global`` group, divided by 100 (lower is better), when groups are present.

Validity, plausibility and grounding need the choices file, scene graphs and attention
maps and are not computed here.

The LXMERT release's GQA files (``{question_id, label: {answer: 1.0}, ...}``) carry no types;
for them the gold answer is the label's best-scoring answer, every question counts, and
the result equals the release's ``GQAEvaluator`` (sum of label scores of the predictions /
number of predictions) because each label holds one answer with score 1.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Mapping

from ._common import Missing, index_annotations, match_ids, mean, official_pct

__all__ = ["evaluate_gqa", "gqa_steps", "gold_answer"]

_STEP_EXCLUDED = ("exist", "query: name", "choose name")


def gqa_steps(question: Mapping[str, Any]) -> int:
    """Number of reasoning steps as the official script counts them."""
    return len([
        c for c in question["semantic"]
        if not any(o in f"{c['operation']}: {c['argument']}" for o in _STEP_EXCLUDED)
    ])


def gold_answer(entry: Mapping[str, Any], where: str = "question") -> str:
    """The gold answer of a raw GQA question (``answer``) or of a release-format entry
    (the highest-scoring answer of ``label``)."""
    if "answer" in entry:
        return entry["answer"]
    label = entry.get("label")
    if isinstance(label, Mapping) and label:
        return max(label.items(), key=lambda kv: kv[1])[0]
    raise KeyError(f"{where}: neither 'answer' nor a non-empty 'label'")


def _chi_square(gold: Mapping[str, Mapping[str, int]],
                predicted: Mapping[str, Mapping[str, int]]) -> float:
    sum_score, sum_overall = 0.0, 0.0
    for group, hist in gold.items():
        score, overall = 0.0, 0.0
        for ans, e in hist.items():
            o = predicted.get(group, {}).get(ans, 0)
            score += float(o - e) ** 2 / e
            overall += e
        sum_score += score * overall
        sum_overall += overall
    return sum_score / sum_overall if sum_overall else float("nan")


def evaluate_gqa(
    predictions: Mapping[Any, str],
    questions: Mapping[Any, Mapping[str, Any]] | Iterable[Mapping[str, Any]],
    *,
    balanced_only: bool = True,
    missing: Missing = "error",
    ndigits: int = 2,
) -> dict[str, Any]:
    """GQA accuracy of ``predictions`` (``{question_id: answer}``; ids are strings in GQA).

    ``questions``: the official questions dict ``{qid: question}`` or a list of
    release-format entries with ``question_id``. ``balanced_only``: count only
    ``isBalanced`` questions (official; entries without the field always count).
    Fractions at the top level, the official percentages under ``"official"``.
    """
    gts = index_annotations(questions, "question_id", container_key=None)
    qids = match_ids(predictions, gts, missing, "question")
    scores: list[float] = []
    binary: list[float] = []
    open_: list[float] = []
    per_struct: dict[str, list[float]] = defaultdict(list)
    per_sem: dict[str, list[float]] = defaultdict(list)
    per_steps: dict[int, list[float]] = defaultdict(list)
    per_len: dict[int, list[float]] = defaultdict(list)
    consistency: list[float] = []
    dist_gold: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    dist_pred: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def correct(qid: Any) -> float:
        pred = predictions.get(qid)
        return float(pred is not None and pred == gold_answer(gts[qid], f"question {qid!r}"))

    for qid in qids:
        q = gts[qid]
        if balanced_only and not q.get("isBalanced", True):
            continue
        score = correct(qid)
        scores.append(score)
        types = q.get("types")
        if isinstance(types, Mapping) and types.get("structural") is not None:
            per_struct[types["structural"]].append(score)
            (open_ if types["structural"] == "query" else binary).append(score)
        if isinstance(types, Mapping) and types.get("semantic") is not None:
            per_sem[types["semantic"]].append(score)
        if "semantic" in q:
            per_steps[gqa_steps(q)].append(score)
        if isinstance(q.get("question"), str):
            per_len[len(q["question"].split())].append(score)
        entailed = [e for e in q.get("entailed", []) or [] if e != qid]
        if score and entailed:
            usable = [e for e in entailed if e in gts and e in predictions]
            if usable:
                consistency.append(mean([correct(e) for e in usable]))
        groups = q.get("groups")
        if isinstance(groups, Mapping) and groups.get("global") is not None:
            g = groups["global"]
            dist_gold[g][gold_answer(q)] += 1
            dist_pred[g][str(predictions.get(qid))] += 1

    if not scores:
        raise ValueError("evaluate_gqa: no question to evaluate (all unbalanced or none "
                         "predicted)")
    out: dict[str, Any] = {
        "accuracy": mean(scores),
        "num_questions": len(scores),
    }
    official: dict[str, Any] = {"accuracy": official_pct(scores, ndigits)}
    for name, xs in (("binary", binary), ("open", open_), ("consistency", consistency)):
        if xs:
            out[name] = mean(xs)
            official[name] = official_pct(xs, ndigits)
    if dist_gold:
        out["distribution"] = _chi_square(dist_gold, dist_pred) / 100
        official["distribution"] = round(out["distribution"], ndigits)
    for name, table in (("per_structural_type", per_struct), ("per_semantic_type", per_sem),
                        ("per_steps", per_steps), ("per_length", per_len)):
        if table:
            out[name] = {k: mean(v) for k, v in sorted(table.items())}
            official[name] = {k: (official_pct(v, ndigits), len(v))
                              for k, v in sorted(table.items())}
    out["official"] = official
    return out
