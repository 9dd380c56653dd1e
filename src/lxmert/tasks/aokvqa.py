"""A-OKVQA (Schwenk et al. 2022): questions needing outside knowledge, with four choices and
ten direct answers, from the official json (`DATA/aokvqa/<split>.json`: the official
`aokvqa_v1p0_<split>.json` files renamed, or any split name).

The answer head is trained on soft scores from the direct answers; multiple choice is
predicted by scoring the choices with the head (`mc_accuracy`, the main metric) and by
mapping the best answer to a choice (`mc_accuracy_map`); direct answer = the best answer.
The answer table: `model.answers`, else `DATA/aokvqa/answers.json`, else a fine-tuned
checkpoint's, else built from the training split (every direct answer and choice).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from lxmert.data.aokvqa import AOKVQADataset, aokvqa_predictions, build_aokvqa_answer_table
from lxmert.evaluation import get_metric, write_aokvqa_submission
from lxmert.tasks import register_task
from lxmert.text import AnswerTable
from lxmert.training.task import AnswerHeadTask, Predictions

__all__ = ["AOKVQATask"]


@register_task("aokvqa")
class AOKVQATask(AnswerHeadTask):
    """A-OKVQA multiple choice and direct answer over the QA head."""

    folder = "aokvqa"
    default_recipe = "aokvqa"
    main_metric = "mc_accuracy"
    answer_files = ("aokvqa/answers.json",)

    def build_answer_table(self, files: list[Path]) -> AnswerTable:
        return build_aokvqa_answer_table(files)

    def make_dataset(self, splits: list[str] | str, train: bool) -> Dataset:
        return AOKVQADataset(self.split_files(splits), self.images, self.tokenizer, self.answers,
                             max_length=self.recipe.data.max_seq_length, target="soft",
                             token_cache=self.token_cache())

    @torch.no_grad()
    def predict(self, model: nn.Module, dataset: Dataset, device: torch.device) -> Predictions:
        """Leaderboard dict {question_id: {multiple_choice (scored), direct_answer,
        multiple_choice_map}} and the mean loss."""
        answers = getattr(model, "answers", None) or self.answers.answers
        ids, scores, loss = self.answer_scores(model, dataset, device)
        raw = dataset.raw[: len(ids)]  # type: ignore[attr-defined]
        by_id = aokvqa_predictions(ids, scores.numpy(), raw, answers, mc_mode="score")
        mapped = aokvqa_predictions(ids, scores.numpy(), raw, answers, mc_mode="map")
        for qid, row in mapped.items():
            if "multiple_choice" in row:
                by_id[qid]["multiple_choice_map"] = row["multiple_choice"]
        return Predictions(by_id, loss)

    def score(self, predictions: dict[Any, Any], dataset: Dataset) -> dict[str, float]:
        """The official A-OKVQA scores (`lxmert.evaluation.evaluate_aokvqa`, the one path the
        standalone scorer uses too): `mc_accuracy` of the scored choices, `mc_accuracy_map`
        of the mapped ones, `da_accuracy`, ... over every question of the split."""
        return get_metric("aokvqa")(predictions, dataset.raw[: len(dataset)])  # type: ignore[attr-defined]

    def write_predictions(self, path: str | os.PathLike, predictions: dict[Any, Any]) -> Path:
        return write_aokvqa_submission(
            path, {q: p["multiple_choice"] for q, p in predictions.items() if "multiple_choice" in p},
            {q: p["direct_answer"] for q, p in predictions.items()})
