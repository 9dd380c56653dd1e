"""VizWiz-VQA (Gurari et al. 2018): questions from blind people about their photos, many
unanswerable, from the official annotation json (`DATA/vizwiz/<split>.json`).

VQA accuracy with "unanswerable" as an answer (main metric) and answerability average
precision from one extra answer-head row (`<answerable>`, a sigmoid on the answerable
flag). The answer table: `model.answers`, else `DATA/vizwiz/answers.json`, else a
fine-tuned checkpoint's, else built from the training split (answers given at least
twice, "unanswerable" and the answerability row).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from lxmert.data.vizwiz import ANSWERABLE, VizWizDataset, build_vizwiz_answer_table, vizwiz_predictions
from lxmert.evaluation import get_metric, write_vizwiz_submission
from lxmert.tasks import register_task
from lxmert.text import AnswerTable
from lxmert.training.task import AnswerHeadTask, Predictions

__all__ = ["VizWizTask"]


@register_task("vizwiz")
class VizWizTask(AnswerHeadTask):
    """VizWiz answers and answerability over the QA head."""

    folder = "vizwiz"
    default_recipe = "vizwiz"
    id_key = "question_id"
    answer_files = ("vizwiz/answers.json",)

    def build_answer_table(self, files: list[Path]) -> AnswerTable:
        return build_vizwiz_answer_table(files)

    def answer_table(self) -> AnswerTable:
        table = super().answer_table()
        if ANSWERABLE not in table:  # the answerability logit is one more row of the head
            table = AnswerTable([*table.answers, ANSWERABLE])
        return table

    def make_dataset(self, splits: list[str] | str, train: bool) -> Dataset:
        return VizWizDataset(self.split_files(splits), self.images, self.tokenizer, self.answers,
                             max_length=self.recipe.data.max_seq_length, target="soft",
                             token_cache=self.token_cache())

    @torch.no_grad()
    def predict(self, model: nn.Module, dataset: Dataset, device: torch.device) -> Predictions:
        """{image: {"answer": str, "answerable": p}} and the mean loss."""
        answers = getattr(model, "answers", None) or self.answers.answers
        ids, scores, loss = self.answer_scores(model, dataset, device)
        mode = "logit" if ANSWERABLE in answers else "unanswerable"
        best, p = vizwiz_predictions(scores.numpy(), answers, answerability=mode)
        return Predictions({q: {"answer": a, "answerable": float(pa)} for q, a, pa in zip(ids, best, p)}, loss)

    def score(self, predictions: dict[Any, Any], dataset: Dataset) -> dict[str, float]:
        return get_metric("vizwiz", **self.metric_options)(predictions, dataset.raw[: len(dataset)])  # type: ignore[attr-defined]

    def write_predictions(self, path: str | os.PathLike, predictions: dict[Any, Any]) -> Path:
        return write_vizwiz_submission(path, {q: p["answer"] for q, p in predictions.items()},
                                       {q: p["answerable"] for q, p in predictions.items()})
