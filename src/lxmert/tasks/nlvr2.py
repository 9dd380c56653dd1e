"""NLVR2 (Suhr et al. 2019): is a sentence true of a pair of images?

`DATA/nlvr2/<split>.json` entries `{identifier, img0, img1, label: 0|1, sent, uid}`; the
model encodes (sentence, image) twice and classifies the concatenated pooled vectors.
Accuracy and consistency (`lxmert.evaluation.nlvr2`); test-server file: CSV
`identifier,True|False`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from lxmert.data import NLVR2Dataset
from lxmert.evaluation import get_metric, write_predictions
from lxmert.modeling import LxmertForNLVR2
from lxmert.tasks import register_task
from lxmert.training.task import LossMeter, Predictions, Task

__all__ = ["NLVR2Task"]


@register_task("nlvr2")
class NLVR2Task(Task):
    """Two images per sentence; the head classifies the concatenated pooled vectors."""

    folder = "nlvr2"
    model_class = LxmertForNLVR2
    default_recipe = "nlvr2"
    id_key = "identifier"
    prediction_suffix = ".csv"

    def make_dataset(self, splits: list[str] | str, train: bool) -> Dataset:
        return NLVR2Dataset(self.split_files(splits), self.images, self.tokenizer,
                            max_length=self.recipe.data.max_seq_length)

    @torch.no_grad()
    def predict(self, model: nn.Module, dataset: Dataset, device: torch.device) -> Predictions:
        """{identifier: 0 | 1} and the mean loss when labelled."""
        by_id: dict[str, int] = {}
        loss = LossMeter()
        for batch, out in self.outputs(model, dataset, device, loss):
            for ident, k in zip(batch.meta["identifier"], out.logits.argmax(-1).tolist()):
                by_id[ident] = int(k)
        return Predictions(by_id, loss.mean)

    def score(self, predictions: dict[Any, Any], dataset: Dataset) -> dict[str, float]:
        return get_metric("nlvr2", **self.metric_options)(predictions, dataset.raw[: len(dataset)])  # type: ignore[attr-defined]

    def write_predictions(self, path: str | os.PathLike, predictions: dict[Any, Any]) -> Path:
        return write_predictions("nlvr2", path, {k: bool(v) for k, v in predictions.items()})
