"""A-OKVQA (Schwenk et al. 2022) as question-answering data for the answer head.

Reads the official json (a list of
`{question_id, image_id, question, choices[4], correct_choice_idx, direct_answers[10],
difficult_direct_answer, split, rationales}`; test entries lack the answers) into the
`QADataset` machinery, so batches, targets and the training loop are those of VQA:

- image: the COCO `image_id` (an int) becomes the feature files' `img_id` through
  `image_format`: a format string (`"COCO_val2014_{image_id:012d}"`), a callable, or
  `"auto"` (default) - the first of `COCO_train2014_%012d`, `COCO_val2014_%012d`,
  `COCO_test2015_%012d`, `%012d`, `str(image_id)` that is in the feature store(s). A-OKVQA
  uses COCO 2017 images, whose ids are the 2014 ones, and LXMERT's feature files are
  named by the 2014 split the image came from - hence the look-up.
- target: soft scores from the ten direct answers, `min(1, count / 3)` per answer: the
  credit the official direct-answer metric gives that answer, so the BCE target and the
  metric agree. (VQA's 0.3/0.6/0.9/1.0 count table is `soft="vqa"`.)
- choices, correct index and the difficult flag stay in `dataset.raw` for the metrics.

Multiple-choice prediction from an answer-head score vector, two ways
(:func:`mc_predictions`):

- `"map"`: the head's best answer mapped to the nearest of the four choices
  (`lxmert.evaluation.aokvqa.map_to_choice`: exact, normalised, word overlap, trigrams);
- `"score"`: each choice scored by the head's logit of that choice string when it is in
  the answer table; the best-scoring in-table choice wins; when no choice is in the table
  the `"map"` rule decides.

Direct answer = the head's best answer.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from lxmert.data.qa import QADataset, QAEntry, load_json_list
from lxmert.data.sources import DataFormatError
from lxmert.text import AnswerTable

__all__ = [
    "AOKVQADataset",
    "aokvqa_soft_label",
    "build_aokvqa_answer_table",
    "mc_predictions",
    "aokvqa_predictions",
    "COCO_ID_FORMATS",
]

COCO_ID_FORMATS = ("COCO_train2014_{image_id:012d}", "COCO_val2014_{image_id:012d}",
                   "COCO_test2015_{image_id:012d}", "{image_id:012d}", "{image_id}")


def aokvqa_soft_label(direct_answers: Sequence[str], soft: str = "da") -> dict[str, float]:
    """{answer: score} of ten direct answers: `min(1, n/3)` ("da") or VQA's count table ("vqa")."""
    counts = Counter(direct_answers)
    if soft == "da":
        return {a: min(1.0, n / 3.0) for a, n in counts.items()}
    if soft == "vqa":
        from lxmert.evaluation.vqa import vqa_soft_score

        return {a: vqa_soft_score(n) for a, n in counts.items()}
    raise ValueError(f"soft must be 'da' or 'vqa', got {soft!r}")


def build_aokvqa_answer_table(paths: str | os.PathLike | Sequence[str | os.PathLike], *, min_count: int = 1,
                              include_choices: bool = True) -> AnswerTable:
    """An answer table from training files: every direct answer given at least `min_count`
    times over the files (and, with `include_choices`, every choice string, so that the
    "score each choice" rule can score them), most frequent first."""
    files = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    counts: Counter[str] = Counter()
    choices: Counter[str] = Counter()
    for path in files:
        for index, raw in enumerate(load_json_list(path)):
            if not isinstance(raw, dict):
                raise DataFormatError(f"{path}: entry {index}: expected an object")
            counts.update(str(a) for a in raw.get("direct_answers") or [])
            choices.update(str(c) for c in raw.get("choices") or [])
    answers = [a for a, n in counts.most_common() if n >= min_count]
    if include_choices:
        seen = set(answers)
        answers += [c for c, _ in choices.most_common() if c not in seen]
    if not answers:
        raise ValueError(f"no answers in {[str(p) for p in files]}")
    return AnswerTable(answers)


class AOKVQADataset(QADataset):
    """A-OKVQA questions (see the module docstring); `answer_table` is required."""

    question_id_type = str

    def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike], stores: Any, tokenizer: Any = None,
                 answer_table: AnswerTable | str | os.PathLike | None = None, *,
                 image_format: str | Callable[[int], str] = "auto", soft: str = "da", **kwargs: Any) -> None:
        if answer_table is None:
            raise ValueError("AOKVQADataset needs an answer_table (e.g. build_aokvqa_answer_table(train_files))")
        if soft not in ("da", "vqa"):
            raise ValueError(f"soft must be 'da' or 'vqa', got {soft!r}")
        self.image_format = image_format
        self.soft = soft
        self._image_cache: dict[Any, str] = {}
        super().__init__(paths, stores, tokenizer, answer_table, **kwargs)

    def image_key(self, image_id: Any, where: str) -> str:
        """The feature-store id of a COCO `image_id` (see `image_format`)."""
        cached = self._image_cache.get(image_id)
        if cached is not None:
            return cached
        fmt = self.image_format
        if callable(fmt):
            key = str(fmt(image_id))
        elif fmt == "auto":
            candidates = []
            for pattern in COCO_ID_FORMATS:
                try:
                    candidates.append(pattern.format(image_id=image_id))
                except (ValueError, TypeError):  # :012d of a string id
                    continue
            key = next((c for c in candidates if c in self.images), None)  # type: ignore[assignment]
            if key is None:
                raise KeyError(f"{where}: image_id {image_id!r} matches no feature-store id "
                               f"(tried {', '.join(candidates)}) in {self.images.describe()}; "
                               f"pass image_format=")
        else:
            try:
                key = fmt.format(image_id=image_id)
            except (ValueError, TypeError, KeyError) as err:
                raise DataFormatError(f"{where}: image_format {fmt!r} does not apply to image_id "
                                      f"{image_id!r} ({err})") from None
        self._image_cache[image_id] = key
        return key

    def parse_entry(self, raw: dict, where: str) -> QAEntry:
        if not isinstance(raw, dict):
            raise DataFormatError(f"{where}: expected an object, got {type(raw).__name__}")
        for key in ("question_id", "image_id", "question"):
            if key not in raw:
                raise DataFormatError(f"{where}: missing key {key!r}")
        qid = str(raw["question_id"])
        where = f"{where} (question_id {qid!r})"
        if not isinstance(raw["question"], str):
            raise DataFormatError(f"{where}: 'question' must be a string")
        choices = raw.get("choices")
        if choices is not None:
            if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
                raise DataFormatError(f"{where}: 'choices' must be a non-empty list of strings")
            idx = raw.get("correct_choice_idx")
            if idx is not None and (not isinstance(idx, int) or not 0 <= idx < len(choices)):
                raise DataFormatError(f"{where}: correct_choice_idx {idx!r} is not an index into "
                                      f"{len(choices)} choices")
        label = None
        answers = raw.get("direct_answers")
        if answers is not None:
            if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
                raise DataFormatError(f"{where}: 'direct_answers' must be a list of strings")
            label = aokvqa_soft_label(answers, self.soft)
        return QAEntry(qid, self.image_key(raw["image_id"], where), raw["question"], label)


def _softmaxless_best(scores: np.ndarray, answers: Sequence[str]) -> list[str]:
    return [answers[int(k)] for k in np.asarray(scores).argmax(-1)]


def mc_predictions(scores: Any, choices: Sequence[Sequence[str]], answers: Sequence[str], *,
                   mode: str = "score", ans2label: Mapping[str, int] | None = None) -> list[str]:
    """The chosen choice per question from answer-head `scores` [N, A] (see module doc)."""
    from lxmert.evaluation.aokvqa import choice_scores_from_answer_scores, map_to_choice, select_choice

    if mode not in ("map", "score"):
        raise ValueError(f"mode must be 'map' or 'score', got {mode!r}")
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != len(choices) or s.shape[1] != len(answers):
        raise ValueError(f"scores {s.shape} do not fit {len(choices)} questions x {len(answers)} answers")
    table = ans2label if ans2label is not None else {a: i for i, a in enumerate(answers)}
    best = _softmaxless_best(s, answers)
    out = []
    for i, cs in enumerate(choices):
        if mode == "score":
            cscores = choice_scores_from_answer_scores(cs, s[i], table)
            if any(np.isfinite(cscores)):
                out.append(select_choice(cs, cscores))
                continue
        out.append(map_to_choice(best[i], cs))
    return out


def aokvqa_predictions(question_ids: Sequence[Any], scores: Any, entries: Iterable[Mapping[str, Any]],
                       answers: Sequence[str], *, mc_mode: str = "score") -> dict[str, dict[str, str]]:
    """Leaderboard dict `{question_id: {"multiple_choice": c, "direct_answer": a}}`.

    `entries` are the dataset's raw json entries aligned with `question_ids` (for the choices).
    """
    entries = list(entries)
    if len(entries) != len(question_ids):
        raise ValueError(f"{len(question_ids)} question ids but {len(entries)} entries")
    s = np.asarray(scores)
    best = _softmaxless_best(s, answers)
    with_choices = [i for i, e in enumerate(entries) if e.get("choices")]
    mc = dict(zip(with_choices, mc_predictions(s[with_choices], [entries[i]["choices"] for i in with_choices],
                                               answers, mode=mc_mode))) if with_choices else {}
    out: dict[str, dict[str, str]] = {}
    for i, qid in enumerate(question_ids):
        row = {"direct_answer": best[i]}
        if i in mc:
            row["multiple_choice"] = mc[i]
        out[str(qid)] = row
    return out
