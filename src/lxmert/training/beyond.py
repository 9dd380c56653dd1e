"""Task adapters for A-OKVQA, VizWiz and multimodal classification.

They plug into the one training loop exactly as VQA does (`make_task` dispatches
"aokvqa", "vizwiz" and "classify" here), so `lxmert finetune aokvqa|vizwiz|classify`,
resume, DDP, `--adv` and the metrics files work unchanged.

Data root layout (what `lxmert.data.beyond_synth.derive_beyond_tasks` writes too)::

    DATA/aokvqa/<split>.json     official A-OKVQA json (aokvqa_v1p0_train.json, ... or train.json)
    DATA/vizwiz/<split>.json     official VizWiz annotations (train.json, val.json, test.json)
    DATA/classify/<split>.jsonl  {id, img_id, text, labels} per line
    DATA/features/store          feature store(s)

Answer tables: `model.answers` in the recipe (a path or packaged name), else
`DATA/<task>/answers.json` when present, else built from the TRAINING split(s) (A-OKVQA:
every direct answer and choice; VizWiz: normalised answers given at least twice,
"unanswerable" and the answerability row). The table is saved with every checkpoint
(answers.json), so evaluation and prediction use the head's own table.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lxmert.training.recipe import Recipe
from lxmert.training.tasks import _TaskBase, _under

__all__ = ["AOKVQATask", "VizWizTask", "ClassifyTask", "BEYOND_TASKS", "make_beyond_task", "beyond_files"]

BEYOND_FOLDERS = {"aokvqa": "aokvqa", "vizwiz": "vizwiz", "classify": "classify"}
BEYOND_TASKS = tuple(BEYOND_FOLDERS)


def beyond_files(data_dir: Path, task: str, splits: list[str] | str) -> list[Path]:
    """DATA/<task>/<split>.json(l) for each split (a path with a suffix is taken as is)."""
    names = [splits] if isinstance(splits, str) else list(splits)
    if not names:
        raise ValueError(f"no {task} split given")
    suffix = ".jsonl" if task == "classify" else ".json"
    out = []
    for name in names:
        path = _under(data_dir, name) if Path(name).suffix in (".json", ".jsonl") else \
            data_dir / BEYOND_FOLDERS[task] / f"{name}{suffix}"
        if not path.is_file():
            raise FileNotFoundError(f"{task} split {name!r}: {path} does not exist")
        out.append(path)
    return out


class _AnswerTask(_TaskBase):
    """Shared by A-OKVQA and VizWiz: an answer head over a table of this task."""

    task: str

    def __init__(self, recipe: Recipe, data_dir: str | os.PathLike) -> None:
        super().__init__(recipe, data_dir)
        self.answers = self._answer_table()

    def _answer_table(self):
        from lxmert.text import AnswerTable

        spec = self.recipe.model.answers
        if spec in ("vqa", "gqa", "pretrain"):
            return AnswerTable.from_name(spec)
        if spec:
            return AnswerTable.from_file(_under(self.data_dir, spec))
        own = self.data_dir / BEYOND_FOLDERS[self.task] / "answers.json"
        if own.is_file():
            return AnswerTable.from_file(own)
        if self.recipe.model.init:  # a fine-tuned checkpoint of this task names its rows
            saved = Path(self.recipe.model.init) / "answers.json"
            if saved.is_file():
                return AnswerTable.from_file(saved)
        return self.build_table(beyond_files(self.data_dir, self.task, self.recipe.data.train))

    def build_table(self, files: list[Path]):
        raise NotImplementedError

    def build_model(self) -> nn.Module:
        from lxmert import LxmertForQuestionAnswering

        if self.recipe.model.init:
            return LxmertForQuestionAnswering.from_pretrained(
                self.recipe.model.init, answers=self.answers.answers, **self.runtime_overrides())
        return LxmertForQuestionAnswering(self.scratch_config(num_qa_labels=len(self.answers)),
                                          answers=self.answers.answers)

    def load_checkpoint(self, checkpoint: str | os.PathLike) -> nn.Module:
        """The fine-tuned model with its own head and answers (for evaluate / predict)."""
        from lxmert import LxmertForQuestionAnswering

        model = LxmertForQuestionAnswering.from_pretrained(checkpoint)
        if getattr(model, "answers", None) is None:
            model.answers = list(self.answers.answers)
        return model

    def loss(self, model, batch, epoch):
        out = model(**batch)
        return out.loss, {}

    @torch.no_grad()
    def scores(self, model, dataset, device) -> tuple[list[Any], np.ndarray, float | None]:
        """(question ids, answer-head logits [N, A], mean loss or None) over `dataset`."""
        ids: list[Any] = []
        chunks: list[np.ndarray] = []
        loss_sum, n = 0.0, 0
        for batch in self.eval_batches(dataset, device):
            out = model(**batch)
            ids.extend(batch["question_id"])
            chunks.append(out.question_answering_score.float().cpu().numpy())
            if out.loss is not None:
                b = len(batch["question_id"])
                loss_sum, n = loss_sum + float(out.loss) * b, n + b
        return ids, np.concatenate(chunks), (loss_sum / n if n else None)


class AOKVQATask(_AnswerTask):
    """A-OKVQA: direct answers from the head; multiple choice by scoring the choices
    (`mc_accuracy`, the main metric) and by mapping the best answer (`mc_accuracy_map`)."""

    task = "aokvqa"
    main_metric = "mc_accuracy"

    def build_table(self, files):
        from lxmert.data.aokvqa import build_aokvqa_answer_table

        return build_aokvqa_answer_table(files)

    def make_dataset(self, splits, train):
        from lxmert.data.aokvqa import AOKVQADataset

        return AOKVQADataset(beyond_files(self.data_dir, "aokvqa", splits), self.images, self.tokenizer,
                             self.answers, max_length=self.recipe.data.max_seq_length, target="soft")

    def predict(self, model, dataset, device) -> tuple[dict[str, dict[str, str]], float | None]:
        """Leaderboard dict {question_id: {multiple_choice (scored), direct_answer,
        multiple_choice_map}} and the mean loss."""
        from lxmert.data.aokvqa import aokvqa_predictions

        answers = getattr(model, "answers", None) or self.answers.answers
        ids, scores, loss = self.scores(model, dataset, device)
        raw = dataset.raw[: len(ids)]
        preds = aokvqa_predictions(ids, scores, raw, answers, mc_mode="score")
        mapped = aokvqa_predictions(ids, scores, raw, answers, mc_mode="map")
        for qid, row in mapped.items():
            if "multiple_choice" in row:
                preds[qid]["multiple_choice_map"] = row["multiple_choice"]
        return preds, loss

    def score(self, preds, dataset) -> dict[str, float]:
        from lxmert.evaluation import evaluate_aokvqa

        raw = dataset.raw[: len(dataset)]
        main = {q: {k: v for k, v in p.items() if k != "multiple_choice_map"} for q, p in preds.items()}
        res = evaluate_aokvqa(main, raw, missing="ignore")
        out = {k: float(v) for k, v in res.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        mapped = {q: {"multiple_choice": p["multiple_choice_map"]} for q, p in preds.items()
                  if "multiple_choice_map" in p}
        if mapped:
            out["mc_accuracy_map"] = float(evaluate_aokvqa(mapped, raw, missing="ignore")["mc_accuracy"])
        return out

    def write_predictions(self, path: str | os.PathLike, preds) -> Path:
        from lxmert.evaluation import write_aokvqa_submission

        return write_aokvqa_submission(
            path, {q: p["multiple_choice"] for q, p in preds.items() if "multiple_choice" in p},
            {q: p["direct_answer"] for q, p in preds.items()})


class VizWizTask(_AnswerTask):
    """VizWiz: VQA accuracy with "unanswerable" as an answer (main metric), and
    answerability from the extra `<answerable>` logit (`unanswerable_ap`, `answerable_ap`)."""

    task = "vizwiz"
    main_metric = "accuracy"

    def build_table(self, files):
        from lxmert.data.vizwiz import build_vizwiz_answer_table

        return build_vizwiz_answer_table(files)

    def _answer_table(self):
        from lxmert.data.vizwiz import ANSWERABLE
        from lxmert.text import AnswerTable

        table = super()._answer_table()
        if ANSWERABLE not in table:  # the answerability logit is one more row of the head
            table = AnswerTable([*table.answers, ANSWERABLE])
        return table

    def make_dataset(self, splits, train):
        from lxmert.data.vizwiz import VizWizDataset

        return VizWizDataset(beyond_files(self.data_dir, "vizwiz", splits), self.images, self.tokenizer,
                             self.answers, max_length=self.recipe.data.max_seq_length, target="soft")

    def predict(self, model, dataset, device) -> tuple[dict[str, dict[str, Any]], float | None]:
        """{image: {"answer": str, "answerable": p}} and the mean loss."""
        from lxmert.data.vizwiz import ANSWERABLE, vizwiz_predictions

        answers = getattr(model, "answers", None) or self.answers.answers
        ids, scores, loss = self.scores(model, dataset, device)
        mode = "logit" if ANSWERABLE in answers else "unanswerable"
        best, p = vizwiz_predictions(scores, answers, answerability=mode)
        return {q: {"answer": a, "answerable": float(pa)} for q, a, pa in zip(ids, best, p)}, loss

    def score(self, preds, dataset) -> dict[str, float]:
        from lxmert.evaluation import get_metric

        return get_metric("vizwiz")(preds, dataset.raw[: len(dataset)])

    def write_predictions(self, path: str | os.PathLike, preds) -> Path:
        from lxmert.evaluation import write_vizwiz_submission

        return write_vizwiz_submission(path, {q: p["answer"] for q, p in preds.items()},
                                       {q: p["answerable"] for q, p in preds.items()})


class ClassifyTask(_TaskBase):
    """Multimodal classification from JSONL (`LxmertForClassification`).

    Mode from the training data: a list of labels anywhere -> multi-label (sigmoid per
    label, main metric `micro_f1`); exactly the labels {0, 1} -> binary, ONE sigmoid logit
    for label 1 (main metric `auroc`, the hateful-memes figure); otherwise single-label
    softmax (main metric `accuracy`).
    """

    task = "classify"

    def __init__(self, recipe: Recipe, data_dir: str | os.PathLike) -> None:
        super().__init__(recipe, data_dir)
        from lxmert.data.classification import collect_labels, read_classification_jsonl

        entries = [e for f in beyond_files(self.data_dir, "classify", recipe.data.train)
                   for e in read_classification_jsonl(f)]
        self.multi_label = any(e.multi for e in entries)
        self.label_names = collect_labels(entries)
        self.binary = not self.multi_label and self.label_names == [0, 1]
        self.main_metric = "micro_f1" if self.multi_label else "auroc" if self.binary else "accuracy"

    def make_dataset(self, splits, train):
        from lxmert.data.classification import ClassificationDataset

        return ClassificationDataset(beyond_files(self.data_dir, "classify", splits), self.images, self.tokenizer,
                                     self.label_names, multi_label=self.multi_label, binary=self.binary,
                                     max_length=self.recipe.data.max_seq_length)

    @property
    def head_labels(self) -> list[str]:
        return [str(self.label_names[1])] if self.binary else [str(v) for v in self.label_names]

    def build_model(self) -> nn.Module:
        from lxmert.tasks.classification import LxmertForClassification

        multi = self.multi_label or self.binary
        if self.recipe.model.init:
            return LxmertForClassification.from_pretrained(self.recipe.model.init, labels=self.head_labels,
                                                           multi_label=multi, **self.runtime_overrides())
        return LxmertForClassification(self.scratch_config(), labels=self.head_labels, multi_label=multi)

    def load_checkpoint(self, checkpoint: str | os.PathLike) -> nn.Module:
        from lxmert.tasks.classification import LxmertForClassification

        return LxmertForClassification.from_pretrained(checkpoint)

    def collate(self, items):
        return self.train_dataset().collate(items)  # type: ignore[attr-defined]

    def loss(self, model, batch, epoch):
        out = model(**batch)
        return out.loss, {}

    @torch.no_grad()
    def predict(self, model, dataset, device) -> tuple[dict[str, dict[str, Any]], float | None]:
        """{id: {"label": predicted label(s), "scores": probabilities}} and the mean loss."""
        inner = getattr(model, "module", model)
        names = dataset.label_names
        preds: dict[str, dict[str, Any]] = {}
        loss_sum, n = 0.0, 0
        for batch in self.eval_batches(dataset, device):
            out = model(**batch)
            probs = inner.probabilities(out.logits).cpu().numpy()
            for ident, p in zip(batch["id"], probs):
                if dataset.binary:
                    preds[ident] = {"label": names[int(p[0] >= 0.5)], "scores": float(p[0])}
                elif dataset.multi_label:
                    preds[ident] = {"label": [names[j] for j in np.flatnonzero(p >= 0.5)], "scores": p.tolist()}
                else:
                    preds[ident] = {"label": names[int(p.argmax())], "scores": p.tolist()}
            if out.loss is not None:
                b = len(batch["id"])
                loss_sum, n = loss_sum + float(out.loss) * b, n + b
        return preds, (loss_sum / n if n else None)

    def score(self, preds, dataset) -> dict[str, float]:
        from lxmert.evaluation import evaluate_classification

        order = [i for i, e in enumerate(dataset.entries[: len(dataset)]) if e.id in preds]
        gold = dataset.gold()[order]
        scores = np.asarray([preds[dataset.entries[i].id]["scores"] for i in order], dtype=np.float64)
        res = evaluate_classification(gold, scores, multi_label=dataset.multi_label,
                                      label_names=[str(v) for v in dataset.label_names] if not dataset.binary else None)
        return {k: float(v) for k, v in res.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}

    def write_predictions(self, path: str | os.PathLike, preds) -> Path:
        from lxmert.evaluation import write_classification_predictions

        ids = list(preds)
        return write_classification_predictions(path, ids, [preds[i]["label"] for i in ids],
                                                [preds[i]["scores"] for i in ids])


def make_beyond_task(recipe: Recipe, data_dir: str | os.PathLike):
    """The adapter for recipe.task in {aokvqa, vizwiz, classify}."""
    cls = {"aokvqa": AOKVQATask, "vizwiz": VizWizTask, "classify": ClassifyTask}.get(recipe.task)
    if cls is None:
        raise ValueError(f"not a task of lxmert.training.beyond: {recipe.task!r}")
    return cls(recipe, data_dir)
