"""VizWiz-VQA (Gurari et al. 2018) as question-answering data, with answerability.

Reads the official annotation json (a list of `{image, question, answers: [{answer,
answer_confidence}] x10, answerable, answer_type}`; test entries have only image and
question). One question per image, so the image file name is the question id.

- image: the feature id is the file name without its extension
  (`VizWiz_val_00000001.jpg` -> `VizWiz_val_00000001`); `image_format` changes that (a
  format string over `{image}` and `{stem}`, or a callable).
- target: VQA soft scores of the ten answers after the VQA answer normalisation
  (VizWiz answers are raw crowd text), "unanswerable" being an ordinary answer of the
  table.
- answerability, from a SEPARATE head output: with `answerability="logit"` (default) the
  answer table gets one extra row, :data:`ANSWERABLE`, whose target is the `answerable`
  flag (0/1). It is one more logit of the answer head, trained by the same
  BCE-with-logits as the answers (soft targets only), and `p(answerable) =
  sigmoid(that logit)`. It is never predicted as an answer. With
  `answerability="unanswerable"` no row is added and `p(answerable) = 1 - sigmoid(logit of
  "unanswerable")` (or 1 - its softmax probability for cross-entropy heads).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from lxmert.data.qa import QADataset, QAEntry
from lxmert.data.sources import DataFormatError
from lxmert.text import AnswerTable, normalize_answer

__all__ = ["VizWizDataset", "ANSWERABLE", "UNANSWERABLE", "vizwiz_predictions", "build_vizwiz_answer_table"]

#: the pseudo-answer naming the answerability logit in the answer table
ANSWERABLE = "<answerable>"
UNANSWERABLE = "unanswerable"


def build_vizwiz_answer_table(paths: str | os.PathLike | Sequence[str | os.PathLike], *, min_count: int = 2,
                              answerability: str = "logit") -> AnswerTable:
    """Normalised answers given at least `min_count` times in the files (most frequent
    first; "unanswerable" always included), plus :data:`ANSWERABLE` for the "logit" mode."""
    from collections import Counter

    from lxmert.data.qa import load_json_list

    files = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    counts: Counter[str] = Counter()
    for path in files:
        for index, raw in enumerate(load_json_list(path)):
            for a in (raw.get("answers") or []) if isinstance(raw, dict) else []:
                text = a.get("answer") if isinstance(a, dict) else a
                if isinstance(text, str):
                    counts[normalize_answer(text)] += 1
    answers = [a for a, n in counts.most_common() if n >= min_count and a != ANSWERABLE]
    if UNANSWERABLE not in answers:
        answers.append(UNANSWERABLE)
    if answerability == "logit":
        answers.append(ANSWERABLE)
    return AnswerTable(answers)


class VizWizDataset(QADataset):
    """VizWiz questions (see the module docstring)."""

    question_id_type = str

    def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike], stores: Any, tokenizer: Any = None,
                 answer_table: AnswerTable | str | os.PathLike | None = None, *,
                 image_format: str | Callable[[str], str] = "{stem}", answerability: str = "logit",
                 **kwargs: Any) -> None:
        if answer_table is None:
            raise ValueError("VizWizDataset needs an answer_table (e.g. build_vizwiz_answer_table(train_files))")
        if answerability not in ("logit", "unanswerable"):
            raise ValueError(f"answerability must be 'logit' or 'unanswerable', got {answerability!r}")
        if not isinstance(answer_table, AnswerTable):
            answer_table = AnswerTable.from_file(answer_table)
        if answerability == "logit" and ANSWERABLE not in answer_table:
            answer_table = AnswerTable([*answer_table.answers, ANSWERABLE])
        self.answerability = answerability
        self.image_format = image_format
        self.answerable: list[int | None] = []
        super().__init__(paths, stores, tokenizer, answer_table, **kwargs)
        if answerability == "logit" and self.target != "soft":
            raise ValueError("answerability='logit' trains an extra sigmoid output and needs target='soft'; "
                             "use answerability='unanswerable' with target='index'")
        if UNANSWERABLE not in self.answer_table:
            raise ValueError(f"the answer table has no {UNANSWERABLE!r} answer")

    @property
    def answerable_index(self) -> int | None:
        return self.answer_table.get(ANSWERABLE) if self.answerability == "logit" else None

    def image_key(self, image: str) -> str:
        if callable(self.image_format):
            return str(self.image_format(image))
        return self.image_format.format(image=image, stem=Path(image).stem)

    def parse_entry(self, raw: dict, where: str) -> QAEntry:
        if not isinstance(raw, dict):
            raise DataFormatError(f"{where}: expected an object, got {type(raw).__name__}")
        for key in ("image", "question"):
            if key not in raw:
                raise DataFormatError(f"{where}: missing key {key!r}")
        image = raw["image"]
        where = f"{where} (image {image!r})"
        if not isinstance(image, str) or not isinstance(raw["question"], str):
            raise DataFormatError(f"{where}: 'image' and 'question' must be strings")
        label = None
        answerable = None
        if "answers" in raw:
            answers = raw["answers"]
            if not isinstance(answers, list) or not answers:
                raise DataFormatError(f"{where}: 'answers' must be a non-empty list")
            texts = []
            for j, a in enumerate(answers):
                text = a.get("answer") if isinstance(a, dict) else a
                if not isinstance(text, str):
                    raise DataFormatError(f"{where}: answers[{j}] has no string 'answer'")
                texts.append(text)
            from lxmert.evaluation.vqa import soft_scores

            label = soft_scores(texts, normalize=True)
            if "answerable" in raw:
                if raw["answerable"] not in (0, 1, True, False):
                    raise DataFormatError(f"{where}: 'answerable' must be 0 or 1, got {raw['answerable']!r}")
                answerable = int(raw["answerable"])
            elif self.answerability == "logit":
                raise DataFormatError(f"{where}: no 'answerable' flag (needed by the answerability logit)")
            if self.answerability == "logit" and answerable:
                label[ANSWERABLE] = 1.0
        self.answerable.append(answerable)
        return QAEntry(image, self.image_key(image), raw["question"], label)


def vizwiz_predictions(scores: Any, answers: Sequence[str], *, answerability: str = "logit",
                       softmax: bool = False) -> tuple[list[str], np.ndarray]:
    """(answer per question, p(answerable) per question) from answer-head `scores` [N, A].

    The :data:`ANSWERABLE` row is never an answer. `softmax=True` for heads trained with
    cross-entropy (then p(unanswerable) is a softmax probability).
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != len(answers):
        raise ValueError(f"scores {s.shape} do not fit {len(answers)} answers")
    index = {a: i for i, a in enumerate(answers)}
    masked = s.copy()
    if ANSWERABLE in index:
        masked[:, index[ANSWERABLE]] = -np.inf
    best = [answers[int(k)] for k in masked.argmax(1)]
    if answerability == "logit":
        if ANSWERABLE not in index:
            raise ValueError(f"answerability='logit' but the answers have no {ANSWERABLE!r} row")
        p = 1.0 / (1.0 + np.exp(-s[:, index[ANSWERABLE]]))
    elif answerability == "unanswerable":
        if UNANSWERABLE not in index:
            raise ValueError(f"the answers have no {UNANSWERABLE!r}")
        u = index[UNANSWERABLE]
        if softmax:
            z = masked - masked.max(1, keepdims=True)
            probs = np.exp(z) / np.exp(z).sum(1, keepdims=True)
            p = 1.0 - probs[:, u]
        else:
            p = 1.0 - 1.0 / (1.0 + np.exp(-s[:, u]))
    else:
        raise ValueError(f"answerability must be 'logit' or 'unanswerable', got {answerability!r}")
    return best, p
