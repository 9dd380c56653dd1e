"""GQA evaluation: every metric of the official ``eval.py``.

Follows the evaluation script distributed with the GQA v1.2 questions (Hudson & Manning,
gqadataset.org, "eval.py"; Python 3). Only questions with ``isBalanced`` true count, and a
prediction is right when it equals the gold ``answer`` string exactly (no normalisation).

* ``accuracy``; ``binary`` / ``open`` (structural type ``query`` is open, any other is
  binary); accuracy per structural type, per semantic type, per number of reasoning steps
  (the operations of ``semantic`` whose ``"operation: argument"`` contains none of exist /
  "query: name" / "choose name") and per question length in words;
* ``validity`` / ``plausibility`` (``choices=``, the ``{tier}_choices.json`` file
  ``{questionId: {"valid": [...], "plausible": [...]}}``): share of predictions in the
  question's valid / plausible answers - with the script's rule that for a question whose
  detailed type contains "Common" the group is replaced by ``["color", "material",
  "shape"]``;
* ``consistency``: for each correctly answered question with ``entailed`` questions, the
  accuracy on those (other) entailed questions, averaged. Like ``eval.py --consistency``
  this needs every entailed question with its answer and a prediction (the
  ``{tier}_all_questions.json`` file and predictions for it);
* ``grounding`` (``attentions=`` and ``scene_graphs=``): per question, the attention mass
  on the gold regions - the scene-graph objects its ``annotations["question"]`` and
  ``annotations["fullAnswer"]`` point to - as ``sum over regions r, cells c of
  weight_c * area(c & r) / area(c)``, averaged over the questions. Two forms of
  attention (``attention_kind``):

  - ``"boxes"`` (object features, e.g. LXMERT's 36 boxes): ``[[x0, y0, x1, y1, weight],
    ...]`` with coordinates divided by the image width / height (so in [0, 1]). The
    script's object-based branch cannot run as published (it reads ``cells`` before
    assigning it); this implements what it means: each box is a cell;
  - ``"grid"`` (spatial features): an S x S nested list where ``attention[i][j]`` is the
    weight of the cell ``x in [i/S, (i+1)/S], y in [j/S, (j+1)/S]`` - the first index is x,
    as the script's ``getCell(i, j)`` has it (transpose a row-major [y][x] map first).

  The script also means to add the whole image as a region for questions about the
  scene, but tests ``"scene" in c`` on the operation dicts (their keys), which is never
  true; that is kept, so the whole image is never a region.
* ``distribution``: the chi-square distance between gold and predicted answer
  histograms per ``groups.global`` group (weighted by group size), divided by 100 (lower
  is better).

A metric whose input is not given is listed under ``"absent"`` with the reason - never
reported as 0 (the script prints 0.00% for validity and plausibility without a choices
file). Fractions at the top level; the printout's numbers (``sum / n * 100`` rounded to
two decimals, distribution unscaled) under ``"official"``.

The LXMERT release's GQA files (``{question_id, label: {answer: 1.0}, ...}``) carry no types;
for them the gold answer is the label's best-scoring answer, every question counts, and
accuracy equals the release's ``GQAEvaluator`` (each label holds one answer with score 1).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from .aggregate import mean, percent_of_mean
from .ids import Missing, index_annotations, match_ids

__all__ = [
    "COMMON_GROUP",
    "evaluate_gqa",
    "gold_answer",
    "gqa_steps",
    "grounding_score",
    "is_valid_answer",
]

AttentionKind = Literal["boxes", "grid"]

_STEP_EXCLUDED = ("exist", "query: name", "choose name")
#: The group ``eval.py`` checks instead of the choices for "...Common" questions.
COMMON_GROUP = ("color", "material", "shape")


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


def is_valid_answer(prediction: Any, group: Sequence[str], question: Mapping[str, Any]) -> bool:
    """``belongs`` of ``eval.py``: ``prediction in group``, the group replaced by
    :data:`COMMON_GROUP` when the question's detailed type contains "Common"."""
    types = question.get("types")
    detailed = types.get("detailed") if isinstance(types, Mapping) else None
    if isinstance(detailed, str) and "Common" in detailed:
        group = COMMON_GROUP
    return prediction in group


def _length(r: tuple[float, float] | None) -> float:
    return 0 if r is None else float(r[1] - r[0])


def _intersection(r1: tuple[float, float], r2: tuple[float, float]) -> tuple[float, float] | None:
    ir = (max(r1[0], r2[0]), min(r1[1], r2[1]))
    return ir if ir[1] > ir[0] else None


def _intersection_rate(cell: Sequence[float], region: Sequence[float]) -> float:
    # The area of the cell covered by the region over the cell's area, in eval.py's order.
    inter = (_length(_intersection((cell[0], cell[2]), (region[0], region[2])))
             * _length(_intersection((cell[1], cell[3]), (region[1], region[3]))))
    size = _length((cell[0], cell[2])) * _length((cell[1], cell[3]))
    return float(inter) / size


def _regions(question: Mapping[str, Any], scene: Mapping[str, Any], where: str) -> list[tuple]:
    ann = question.get("annotations")
    if not isinstance(ann, Mapping):
        raise KeyError(f"{where}: no 'annotations' (the pointers to the gold regions)")
    objects = scene.get("objects", {})
    out = []
    for part in ("question", "fullAnswer"):
        for pointer in (ann.get(part) or {}).values():
            if pointer not in objects:
                raise KeyError(f"{where}: object {pointer!r} is not in the scene graph of image "
                               f"{question.get('imageId')!r}")
            obj = objects[pointer]
            w, h = scene["width"], scene["height"]
            out.append((float(obj["x"]) / w, float(obj["y"]) / h,
                        float(obj["x"] + obj["w"]) / w, float(obj["y"] + obj["h"]) / h))
    return out


def _cells(attention: Any, kind: str, where: str) -> list[tuple[tuple[float, ...], float]]:
    if kind == "boxes":
        cells = []
        for k, box in enumerate(attention):
            if len(box) != 5:
                raise ValueError(f"{where}: attention box #{k} must be [x0, y0, x1, y1, weight], "
                                 f"got {box!r}")
            x0, y0, x1, y1, weight = (float(v) for v in box)
            if not (x1 > x0 and y1 > y0):
                raise ValueError(f"{where}: attention box #{k} has no area: {box!r}")
            cells.append(((x0, y0, x1, y1), weight))
        return cells
    if kind == "grid":
        size = len(attention)
        if size == 0 or any(len(row) != size for row in attention):
            raise ValueError(f"{where}: a grid attention must be a square S x S list")
        edge = float(1) / size
        return [((edge * i, edge * j, edge * (i + 1), edge * (j + 1)), float(attention[i][j]))
                for i in range(size) for j in range(size)]
    raise ValueError(f"attention_kind must be 'boxes' or 'grid', got {kind!r}")


def grounding_score(question: Mapping[str, Any], scene: Mapping[str, Any], attention: Any,
                    attention_kind: AttentionKind = "boxes", where: str = "question") -> float:
    """``computeGroundingScore`` of ``eval.py`` (see the module docstring for the forms of
    ``attention``): the attention mass on the question's gold regions."""
    regions = _regions(question, scene, where)
    cells = _cells(attention, attention_kind, where)
    scores = []
    for region in regions:
        for cell, weight in cells:
            scores.append(weight * _intersection_rate(cell, region))
    return sum(scores)


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
    return float(sum_score) / sum_overall


def _by_id(data: Any, key: str, what: str) -> Mapping[Any, Any]:
    """A choices / scene-graphs / attentions input as ``{id: value}``: the official dict,
    or (attentions) the official list ``[{"questionId", "attention"}]``."""
    if isinstance(data, Mapping):
        return data
    out: dict[Any, Any] = {}
    for i, row in enumerate(data):
        if not isinstance(row, Mapping) or "questionId" not in row or key not in row:
            raise KeyError(f"{what} entry #{i} needs 'questionId' and {key!r}")
        if row["questionId"] in out:
            raise ValueError(f"{what} entry #{i} repeats questionId {row['questionId']!r}")
        out[row["questionId"]] = row[key]
    return out


def evaluate_gqa(
    predictions: Mapping[Any, str],
    questions: Mapping[Any, Mapping[str, Any]] | Iterable[Mapping[str, Any]],
    *,
    choices: Mapping[Any, Mapping[str, Sequence[str]]] | None = None,
    scene_graphs: Mapping[Any, Mapping[str, Any]] | None = None,
    attentions: Mapping[Any, Any] | Iterable[Mapping[str, Any]] | None = None,
    attention_kind: AttentionKind = "boxes",
    balanced_only: bool = True,
    missing: Missing = "error",
    ndigits: int = 2,
) -> dict[str, Any]:
    """GQA metrics of ``predictions`` (``{question_id: answer}``; ids are strings in GQA).

    ``questions``: the official questions dict ``{qid: question}`` or a list of
    release-format entries with ``question_id``. ``choices``: the ``*_choices.json`` dict
    (validity, plausibility). ``attentions`` (``{qid: attention}`` or the official list
    ``[{"questionId", "attention"}]``) with ``scene_graphs`` (the ``*_sceneGraphs.json``
    dict): grounding, see the module docstring for ``attention_kind``. ``balanced_only``:
    count only ``isBalanced`` questions (official; entries without the field always count).
    ``missing="error"`` requires a prediction for every counted question (as the script).
    """
    gts = index_annotations(questions, "question_id", container_key=None)

    def counted(q: Mapping[str, Any]) -> bool:
        return not balanced_only or bool(q.get("isBalanced", True))

    qids = match_ids(predictions, gts, missing, "question",
                     required=[q for q, e in gts.items() if counted(e)])
    if attentions is not None:
        if scene_graphs is None:
            raise ValueError("evaluate_gqa: grounding needs scene_graphs (the *_sceneGraphs.json "
                             "file) for the gold regions of the attentions")
        attentions = _by_id(attentions, "attention", "attentions")
    scores: list[float] = []
    binary: list[float] = []
    open_: list[float] = []
    validity: list[float] = []
    plausibility: list[float] = []
    grounding: list[float] = []
    per_struct: dict[str, list[float]] = defaultdict(list)
    per_sem: dict[str, list[float]] = defaultdict(list)
    per_steps: dict[int, list[float]] = defaultdict(list)
    per_len: dict[int, list[float]] = defaultdict(list)
    per_q: dict[Any, float] = {}
    consistency: list[float] = []
    consistency_gap: str | None = None
    dist_gold: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    dist_pred: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    for qid in qids:
        q = gts[qid]
        if not counted(q):
            continue
        where = f"question {qid!r}"
        gold = gold_answer(q, where)
        predicted = predictions.get(qid)
        correct = predicted is not None and predicted == gold
        score = float(1 if correct else 0)
        scores.append(score)
        per_q[qid] = score
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
        if choices is not None:
            if qid not in choices:
                raise KeyError(f"{where} is not in the choices file")
            validity.append(float(is_valid_answer(predicted, choices[qid]["valid"], q)))
            plausibility.append(float(is_valid_answer(predicted, choices[qid]["plausible"], q)))
        if attentions is not None:
            if qid not in attentions:
                raise KeyError(f"{where} has no attention map")
            image = q.get("imageId")
            if image not in scene_graphs:
                raise KeyError(f"{where}: image {image!r} is not in the scene graphs")
            grounding.append(grounding_score(q, scene_graphs[image], attentions[qid],
                                             attention_kind, where))
        groups = q.get("groups")
        if isinstance(groups, Mapping) and groups.get("global") is not None:
            g = groups["global"]
            dist_gold[g][gold] += 1
            dist_pred[g][predicted] += 1
        if correct and consistency_gap is None:
            entailed = [e for e in q.get("entailed", []) or [] if e != qid]
            if entailed:
                lacking = [e for e in entailed if e not in gts or e not in predictions]
                if lacking:
                    consistency_gap = (f"entailed question {lacking[0]!r} of {qid!r} is not in the "
                                       "questions or has no prediction (use the all_questions "
                                       "file and predict all of it)")
                else:
                    consistency.append(mean([float(1 if predictions[e] == gold_answer(gts[e]) else 0)
                                             for e in entailed]))

    if not scores:
        raise ValueError("evaluate_gqa: no question to evaluate (all unbalanced or none "
                         "predicted)")

    def pct(xs: Sequence[float]) -> float:
        return round(percent_of_mean(xs), ndigits)

    out: dict[str, Any] = {"accuracy": mean(scores), "num_questions": len(scores),
                           "per_question": per_q}
    official: dict[str, Any] = {"accuracy": pct(scores)}
    absent: dict[str, str] = {}
    named = (("binary", binary, "no structural types in the questions"),
             ("open", open_, "no structural types in the questions"),
             ("validity", validity, "no choices file given (*_choices.json)"),
             ("plausibility", plausibility, "no choices file given (*_choices.json)"),
             ("grounding", grounding, "no attention maps given (with the *_sceneGraphs.json file)"))
    for name, xs, reason in named:
        if xs:
            out[name] = mean(xs)
            official[name] = pct(xs)
        else:
            absent[name] = reason
    if consistency_gap is not None:
        absent["consistency"] = consistency_gap
    elif consistency:
        out["consistency"] = mean(consistency)
        official["consistency"] = pct(consistency)
    else:
        absent["consistency"] = "no correctly answered question has entailed questions"
    if dist_gold:
        out["distribution"] = _chi_square(dist_gold, dist_pred) / 100
        official["distribution"] = round(out["distribution"], ndigits)
    else:
        absent["distribution"] = "no question has a global group"
    for name, table in (("per_structural_type", per_struct), ("per_semantic_type", per_sem),
                        ("per_steps", per_steps), ("per_length", per_len)):
        if table:
            out[name] = {k: mean(v) for k, v in sorted(table.items())}
            official[name] = {k: (pct(v), len(v)) for k, v in sorted(table.items())}
    out["absent"] = absent
    out["official"] = official
    return out
