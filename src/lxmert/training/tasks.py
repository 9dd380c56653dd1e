"""Task adapters: what pre-training, VQA, GQA and NLVR2 each tell the one training loop.

An adapter knows where its files are under the data root, how to build its model (from a
checkpoint, with the QA head remapped by answer text, or from scratch), the loss of a
batch, and its validation: all five pre-training losses plus MLM / matching / QA /
object-label accuracies, or the official task metric through `lxmert.evaluation`.

Data root layout (the release's, which `lxmert synth` also writes):

    DATA/lxmert/<split>.json   pre-training (mscoco_train, mscoco_minival, vgnococo, ...)
    DATA/vqa/<split>.json      DATA/gqa/<split>.json      DATA/nlvr2/<split>.json
    DATA/features/store        feature store(s) (`lxmert features import`), see recipe data.features
    DATA/vocab.txt             optional; the packaged BERT vocab otherwise
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lxmert.config import LxmertConfig
from lxmert.training.recipe import Recipe
from lxmert.training.trainer import move_batch

__all__ = [
    "PretrainTask",
    "QATask",
    "NLVR2Task",
    "make_task",
    "split_files",
    "resolve_answers",
    "TASK_FOLDERS",
]

TASK_FOLDERS = {"pretrain": "lxmert", "vqa": "vqa", "gqa": "gqa", "nlvr2": "nlvr2"}
IGNORE = -100
# Config fields a fine-tuning run may change on a pre-trained checkpoint (the rest is its
# architecture, which the checkpoint fixes).
_RUNTIME_FIELDS = {"hidden_dropout_prob", "attention_probs_dropout_prob", "visual_loss_normalizer",
                   "task_matched", "task_mask_lm", "task_obj_predict", "task_qa", "visual_obj_loss",
                   "visual_attr_loss", "visual_feat_loss"}


def _under(data_dir: Path, rel: str) -> Path:
    path = Path(rel).expanduser()
    return path if path.is_absolute() else data_dir / path


def split_files(data_dir: str | os.PathLike, task: str, splits: list[str] | str) -> list[Path]:
    """DATA/<folder>/<split>.json for each split (a path with a suffix is taken as is)."""
    data_dir = Path(data_dir)
    names = [splits] if isinstance(splits, str) else list(splits)
    if not names:
        raise ValueError(f"no {task} split given")
    out = []
    for name in names:
        path = _under(data_dir, name) if Path(name).suffix in (".json", ".jsonl") else \
            data_dir / TASK_FOLDERS[task] / f"{name}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{task} split {name!r}: {path} does not exist")
        out.append(path)
    return out


def resolve_answers(spec: str, data_dir: Path, task: str):
    """The answer table: a packaged name, a path, or (empty) the data root's own table."""
    from lxmert.text import AnswerTable

    if spec in ("vqa", "gqa", "pretrain"):
        return AnswerTable.from_name(spec)
    if spec:
        return AnswerTable.from_file(_under(data_dir, spec))
    own = {"pretrain": "lxmert/all_ans.json", "vqa": "vqa/trainval_label2ans.json",
           "gqa": "gqa/trainval_label2ans.json"}[task]
    if (data_dir / own).is_file():
        return AnswerTable.from_file(data_dir / own)
    return AnswerTable.from_name(task)


class Limited(Dataset):
    """The first `n` examples of a dataset (keeps `set_epoch` and `collate` working)."""

    def __init__(self, dataset: Dataset, n: int) -> None:
        self.dataset = dataset
        self.n = min(n, len(dataset)) if n > 0 else len(dataset)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} examples")
        return self.dataset[index]

    def __getattr__(self, name: str) -> Any:  # set_epoch, collate, raw, ... of the full set
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


class _TaskBase:
    task: str
    main_metric: str | None = "accuracy"

    def __init__(self, recipe: Recipe, data_dir: str | os.PathLike) -> None:
        from lxmert.data import ImageFeatures
        from lxmert.text import LxmertTokenizer

        self.recipe = recipe
        self.data_dir = Path(data_dir)
        if not self.data_dir.is_dir():
            raise FileNotFoundError(f"data directory {self.data_dir} does not exist")
        vocab = self.data_dir / "vocab.txt"
        self.tokenizer = LxmertTokenizer.from_vocab(vocab if vocab.is_file() else None)
        stores = [_under(self.data_dir, s) for s in recipe.data.features]
        for store in stores:
            if not store.exists():
                raise FileNotFoundError(
                    f"feature store {store} does not exist (recipe data.features); build it with "
                    f"`lxmert features import` or `lxmert synth --store`"
                )
        # Box slots = the store's capacity (36 for the release's features; fewer for small worlds).
        self.images = ImageFeatures(stores, max_boxes=None)
        self._train: Dataset | None = None
        self._valid: Dataset | None = None

    # datasets ------------------------------------------------------------------------
    def make_dataset(self, splits: list[str] | str, train: bool) -> Dataset:
        raise NotImplementedError

    def train_dataset(self) -> Dataset:
        if self._train is None:
            self._train = Limited(self.make_dataset(self.recipe.data.train, True), self.recipe.data.train_limit)
        return self._train

    def valid_dataset(self) -> Dataset | None:
        if self._valid is None and self.recipe.data.valid:
            self._valid = Limited(self.make_dataset(self.recipe.data.valid, False), self.recipe.data.valid_limit)
        return self._valid

    def collate(self, items: list[Any]) -> dict[str, Any]:
        return self.train_dataset().collate(items)  # type: ignore[attr-defined]

    # model ---------------------------------------------------------------------------
    def scratch_config(self, **extra: Any) -> LxmertConfig:
        """LxmertConfig from the recipe's [model] fields, sized to this data."""
        values = dict(vocab_size=self.tokenizer.vocab_size, visual_feat_dim=self.images.feat_dim)
        values.update(self.recipe.model.config)
        values.update(extra)
        return LxmertConfig(**values)

    def runtime_overrides(self) -> dict[str, Any]:
        return {k: v for k, v in self.recipe.model.config.items() if k in _RUNTIME_FIELDS}

    def checkpoint_files(self) -> dict[str, str]:
        return {"vocab.txt": (self.data_dir / "vocab.txt").read_text(encoding="utf-8")} \
            if (self.data_dir / "vocab.txt").is_file() else {}

    def eval_batches(self, dataset: Dataset, device: torch.device) -> Iterator[dict[str, Any]]:
        size = self.recipe.data.eval_batch_size or self.recipe.train.batch_size
        loader = DataLoader(dataset, batch_size=size, shuffle=False, collate_fn=dataset.collate,  # type: ignore[attr-defined]
                            num_workers=self.recipe.data.num_workers)
        for batch in loader:
            yield move_batch(batch, device)

    # evaluation (the labelled tasks: predict, then the official metric) ----------------
    def evaluate(self, model, device) -> dict[str, float]:
        """Validation metrics: the task's official metric on its predictions, plus the loss."""
        valid = self.valid_dataset()
        if valid is None:
            return {}
        preds, loss = self.predict(model, valid, device)  # type: ignore[attr-defined]
        out = self.score(preds, valid)  # type: ignore[attr-defined]
        if loss is not None:
            out["loss"] = loss
        return out


class PretrainTask(_TaskBase):
    """The five objectives; QA joins at `pretrain.qa_from_epoch`."""

    task = "pretrain"
    main_metric = None

    def __init__(self, recipe: Recipe, data_dir: str | os.PathLike) -> None:
        super().__init__(recipe, data_dir)
        self.answers = resolve_answers(recipe.model.answers, self.data_dir, "pretrain")

    def make_dataset(self, splits, train):
        from lxmert.data import PretrainingDataset

        p = self.recipe.pretrain
        return PretrainingDataset(
            split_files(self.data_dir, "pretrain", splits), self.images, self.tokenizer, self.answers,
            sources=set(self.recipe.data.sources) or None, max_length=self.recipe.data.max_seq_length,
            seed=self.recipe.train.seed, word_mask_prob=p.word_mask_rate if p.mask_lm else 0.0,
            obj_mask_prob=p.obj_mask_rate if p.obj_predict else 0.0, match_prob=0.5 if p.matched else 0.0,
            match_sources=set(p.match_sources) if p.matched and p.match_sources else None,
            qa=p.qa,
        )

    def build_model(self) -> nn.Module:
        from lxmert import LxmertForPreTraining

        p = self.recipe.pretrain
        flags = dict(task_mask_lm=p.mask_lm, task_obj_predict=p.obj_predict, task_matched=p.matched,
                     task_qa=p.qa, visual_obj_loss=p.visual_obj_loss, visual_attr_loss=p.visual_attr_loss,
                     visual_feat_loss=p.visual_feat_loss)
        if self.recipe.model.init:
            model = LxmertForPreTraining.from_pretrained(self.recipe.model.init, strict=False,
                                                         **{**self.runtime_overrides(), **flags})
            if p.qa and model.config.num_qa_labels != len(self.answers):
                raise ValueError(f"{self.recipe.model.init}: QA head has {model.config.num_qa_labels} answers, "
                                 f"the pre-training answer table {len(self.answers)}")
        else:
            model = LxmertForPreTraining(self.scratch_config(num_qa_labels=len(self.answers), **flags))
        model.answers = list(self.answers.answers)  # saved as answers.json: heads remap by text
        return model

    def _targets(self, batch: dict[str, Any], epoch: int | None) -> dict[str, Any]:
        p = self.recipe.pretrain
        batch = dict(batch)
        wanted = {"obj": p.visual_obj_loss, "attr": p.visual_attr_loss, "feat": p.visual_feat_loss}
        batch["obj_labels"] = {k: v for k, v in batch["obj_labels"].items() if wanted.get(k)}
        if not p.obj_predict:
            batch.pop("obj_labels")
        if not p.matched:
            batch.pop("matched_label")
        if not p.qa or (epoch is not None and epoch < p.qa_from_epoch):
            batch.pop("ans")
        return batch

    def loss(self, model, batch, epoch):
        weights = self.recipe.pretrain.loss_weights or None
        out = model(**self._targets(batch, epoch), sparse_mlm=True, loss_weights=weights)
        return out.loss, out.losses

    @torch.no_grad()
    def evaluate(self, model, device) -> dict[str, float]:
        valid = self.valid_dataset()
        if valid is None:
            return {}
        if hasattr(valid, "set_epoch"):
            valid.set_epoch(0)  # the same masks and mismatches at every evaluation
        sums: dict[str, float] = {}
        counts: dict[str, float] = {}

        def add(key: str, value: float, n: float) -> None:
            sums[key] = sums.get(key, 0.0) + value
            counts[key] = counts.get(key, 0.0) + n

        batches = 0
        for batch in self.eval_batches(valid, device):
            batches += 1
            out = model(**self._targets(batch, None), sparse_mlm=True)
            b = batch["input_ids"].shape[0]
            add("loss", float(out.loss) * b, b)
            for k, v in (out.losses or {}).items():
                add(f"{k}_loss", float(v) * b, b)
            labels = batch["labels"]
            chosen = labels != IGNORE
            if self.recipe.pretrain.mask_lm and chosen.any():
                add("mlm_accuracy", float((out.prediction_logits.argmax(-1) == labels[chosen]).sum()), float(chosen.sum()))
            if self.recipe.pretrain.matched:
                pred = out.cross_relationship_score.argmax(-1)
                target = batch["matched_label"]
                keep = target != IGNORE  # examples outside pretrain.match_sources
                if keep.any():
                    add("matched_accuracy", float((pred[keep] == target[keep]).sum()), float(keep.sum()))
            ans = batch["ans"]
            if self.recipe.pretrain.qa and out.question_answering_score is not None and (ans != IGNORE).any():
                keep = ans != IGNORE
                add("qa_accuracy", float((out.question_answering_score.argmax(-1)[keep] == ans[keep]).sum()), float(keep.sum()))
            if out.obj_logits:
                real = batch.get("visual_attention_mask")
                for key in ("obj", "attr"):
                    if key in out.obj_logits:
                        target = batch["obj_labels"][key][0]
                        hit = out.obj_logits[key].argmax(-1) == target
                        mask = real.bool() if real is not None else torch.ones_like(hit)
                        add(f"{key}_accuracy", float(hit[mask].sum()), float(mask.sum()))
        if not batches:
            return {}
        return {k: sums[k] / counts[k] for k in sums if counts[k] > 0}


class QATask(_TaskBase):
    """VQA (soft-score BCE x answers) and GQA (the release's BCE on {answer: 1.0})."""

    def __init__(self, recipe: Recipe, data_dir: str | os.PathLike, task: str | None = None) -> None:
        super().__init__(recipe, data_dir)
        self.task = task or recipe.task
        if self.task not in ("vqa", "gqa"):
            raise ValueError(f"QATask is for vqa or gqa, not {self.task!r}")
        self.answers = resolve_answers(recipe.model.answers, self.data_dir, self.task)

    def make_dataset(self, splits, train):
        from lxmert.data import GQADataset, VQADataset

        cls = VQADataset if self.task == "vqa" else GQADataset
        return cls(split_files(self.data_dir, self.task, splits), self.images, self.tokenizer, self.answers,
                   max_length=self.recipe.data.max_seq_length, target=self.recipe.data.qa_target)

    def build_model(self) -> nn.Module:
        from lxmert import LxmertForQuestionAnswering

        if self.recipe.model.init:
            return LxmertForQuestionAnswering.from_pretrained(
                self.recipe.model.init, answers=self.answers.answers, **self.runtime_overrides())
        return LxmertForQuestionAnswering(self.scratch_config(num_qa_labels=len(self.answers)),
                                          answers=self.answers.answers)

    def loss(self, model, batch, epoch):
        out = model(**batch)
        return out.loss, {}

    @torch.no_grad()
    def predict(self, model, dataset, device) -> tuple[dict[Any, str], float | None]:
        """{question_id: answer} (argmax of the head) and the mean loss when labelled."""
        answers = getattr(model, "answers", None) or self.answers.answers
        preds: dict[Any, str] = {}
        loss_sum, n = 0.0, 0
        for batch in self.eval_batches(dataset, device):
            out = model(**batch)
            for qid, k in zip(batch["question_id"], out.question_answering_score.argmax(-1).tolist()):
                preds[qid] = answers[k]
            if out.loss is not None:
                b = len(batch["question_id"])
                loss_sum, n = loss_sum + float(out.loss) * b, n + b
        return preds, (loss_sum / n if n else None)

    def score(self, preds: dict[Any, str], dataset) -> dict[str, float]:
        from lxmert.evaluation import get_metric

        return get_metric(self.task)(preds, dataset.raw[: len(dataset)])


class NLVR2Task(_TaskBase):
    """Two images per sentence; the head classifies the concatenated pooled vectors."""

    task = "nlvr2"

    def make_dataset(self, splits, train):
        from lxmert.data import NLVR2Dataset

        return NLVR2Dataset(split_files(self.data_dir, "nlvr2", splits), self.images, self.tokenizer,
                            max_length=self.recipe.data.max_seq_length)

    def build_model(self) -> nn.Module:
        from lxmert import LxmertForNLVR2

        if self.recipe.model.init:
            return LxmertForNLVR2.from_pretrained(self.recipe.model.init, **self.runtime_overrides())
        return LxmertForNLVR2(self.scratch_config())

    def loss(self, model, batch, epoch):
        out = model(**batch)
        return out.loss, {}

    @torch.no_grad()
    def predict(self, model, dataset, device) -> tuple[dict[str, int], float | None]:
        preds: dict[str, int] = {}
        loss_sum, n = 0.0, 0
        for batch in self.eval_batches(dataset, device):
            out = model(**batch)
            for ident, k in zip(batch["identifier"], out.logits.argmax(-1).tolist()):
                preds[ident] = int(k)
            if out.loss is not None:
                b = len(batch["identifier"])
                loss_sum, n = loss_sum + float(out.loss) * b, n + b
        return preds, (loss_sum / n if n else None)

    def score(self, preds: dict[str, int], dataset) -> dict[str, float]:
        from lxmert.evaluation import get_metric

        return get_metric("nlvr2")(preds, dataset.raw[: len(dataset)])


def make_task(recipe: Recipe, data_dir: str | os.PathLike):
    """The adapter for `recipe.task`."""
    if recipe.task == "pretrain":
        return PretrainTask(recipe, data_dir)
    if recipe.task in ("vqa", "gqa"):
        return QATask(recipe, data_dir)
    if recipe.task == "nlvr2":
        return NLVR2Task(recipe, data_dir)
    if recipe.task in ("aokvqa", "vizwiz", "classify"):
        from lxmert.training.beyond import make_beyond_task

        return make_beyond_task(recipe, data_dir)
    raise ValueError(f"unknown task {recipe.task!r}")
