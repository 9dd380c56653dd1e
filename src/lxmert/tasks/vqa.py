"""VQA v2 (Goyal et al. 2017) as the release ships it: `DATA/vqa/<split>.json` entries
`{question_id: int, img_id, sent, label: {answer: soft score}, answer_type, question_type}`.

Trained with the release's loss (BCE on the soft scores, times the number of answers) over
the 3129-answer table; scored with the official VQA accuracy when the split carries the
ten annotator answers (`lxmert.evaluation.vqa`), else with the release's soft-label score;
test-server file `[{"question_id": int, "answer": str}]`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from lxmert.data import VQADataset
from lxmert.evaluation import get_metric, write_predictions
from lxmert.tasks import register_task
from lxmert.training.task import AnswerHeadTask

__all__ = ["VQATask"]


@register_task("vqa")
class VQATask(AnswerHeadTask):
    """VQA: soft-score BCE over the answer table; official VQA accuracy."""

    folder = "vqa"
    default_recipe = "vqa"
    answer_files = ("vqa/trainval_label2ans.json",)
    packaged_answers = "vqa"
    dataset_class: type = VQADataset

    def make_dataset(self, splits: list[str] | str, train: bool) -> Dataset:
        return self.dataset_class(self.split_files(splits), self.images, self.tokenizer, self.answers,
                                  max_length=self.recipe.data.max_seq_length, target=self.recipe.data.qa_target,
                                  token_cache=self.token_cache())

    def score(self, predictions: dict[Any, Any], dataset: Dataset) -> dict[str, float]:
        return get_metric(self.name, **self.metric_options)(predictions, dataset.raw[: len(dataset)])  # type: ignore[attr-defined]

    def write_predictions(self, path: str | os.PathLike, predictions: dict[Any, Any]) -> Path:
        return write_predictions(self.name, path, predictions)
