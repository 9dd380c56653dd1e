"""Multimodal classification from JSONL (`DATA/classify/<split>.jsonl`, one
`{id, img_id, text, labels}` per line): hateful memes and the like, on
`LxmertForClassification`.

The mode follows the training data: a list of labels anywhere -> multi-label (sigmoid per
label, main metric `micro_f1`); exactly the labels {0, 1} -> binary, ONE sigmoid logit for
label 1 (main metric `auroc`, the hateful-memes figure); otherwise single-label softmax
(main metric `accuracy`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from lxmert.data.classification import ClassificationDataset, collect_labels, read_classification_jsonl
from lxmert.evaluation import evaluate_classification, write_classification_predictions
from lxmert.modeling import LxmertForClassification
from lxmert.tasks import register_task
from lxmert.training.recipe import Recipe
from lxmert.training.task import LossMeter, Predictions, Task

__all__ = ["ClassifyTask"]


@register_task("classify")
class ClassifyTask(Task):
    """Classification of (image, text) pairs, labels from the training split."""

    folder = "classify"
    split_suffix = ".jsonl"
    model_class = LxmertForClassification
    default_recipe = "classify"
    id_key = "id"
    prediction_suffix = ".jsonl"

    def __init__(self, recipe: Recipe, data_dir: str | os.PathLike) -> None:
        super().__init__(recipe, data_dir)
        entries = [e for f in self.split_files(recipe.data.train) for e in read_classification_jsonl(f)]
        self.multi_label = any(e.multi for e in entries)
        self.label_names = collect_labels(entries)
        self.binary = not self.multi_label and self.label_names == [0, 1]
        self.main_metric = "micro_f1" if self.multi_label else "auroc" if self.binary else "accuracy"

    def make_dataset(self, splits: list[str] | str, train: bool) -> Dataset:
        return ClassificationDataset(self.split_files(splits), self.images, self.tokenizer, self.label_names,
                                     multi_label=self.multi_label, binary=self.binary,
                                     max_length=self.recipe.data.max_seq_length)

    @property
    def head_labels(self) -> list[str]:
        return [str(self.label_names[1])] if self.binary else [str(v) for v in self.label_names]

    def model_options(self) -> dict[str, Any]:
        return {"labels": self.head_labels, "multi_label": self.multi_label or self.binary}

    @torch.no_grad()
    def predict(self, model: nn.Module, dataset: Dataset, device: torch.device) -> Predictions:
        """{id: {"label": predicted label(s), "scores": probabilities}} and the mean loss."""
        inner = getattr(model, "module", model)
        names = dataset.label_names  # type: ignore[attr-defined]
        by_id: dict[str, dict[str, Any]] = {}
        loss = LossMeter()
        for batch, out in self.outputs(model, dataset, device, loss):
            probs = inner.probabilities(out.logits).cpu().numpy()
            for ident, p in zip(batch.meta["id"], probs):
                if dataset.binary:  # type: ignore[attr-defined]
                    by_id[ident] = {"label": names[int(p[0] >= 0.5)], "scores": float(p[0])}
                elif dataset.multi_label:  # type: ignore[attr-defined]
                    by_id[ident] = {"label": [names[j] for j in np.flatnonzero(p >= 0.5)], "scores": p.tolist()}
                else:
                    by_id[ident] = {"label": names[int(p.argmax())], "scores": p.tolist()}
        return Predictions(by_id, loss.mean)

    def score(self, predictions: dict[Any, Any], dataset: Dataset) -> dict[str, float]:
        entries = dataset.entries[: len(dataset)]  # type: ignore[attr-defined]
        order = [i for i, e in enumerate(entries) if e.id in predictions]
        gold = dataset.gold()[order]  # type: ignore[attr-defined]
        scores = np.asarray([predictions[entries[i].id]["scores"] for i in order], dtype=np.float64)
        names = None if dataset.binary else [str(v) for v in dataset.label_names]  # type: ignore[attr-defined]
        res = evaluate_classification(gold, scores, multi_label=dataset.multi_label,  # type: ignore[attr-defined]
                                      label_names=names)
        return {k: float(v) for k, v in res.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}

    def write_predictions(self, path: str | os.PathLike, predictions: dict[Any, Any]) -> Path:
        ids = list(predictions)
        return write_classification_predictions(path, ids, [predictions[i]["label"] for i in ids],
                                                [predictions[i]["scores"] for i in ids])
