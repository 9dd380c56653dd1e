"""What a task gives the training loop, evaluation and prediction: the `Task` base classes.

A task (one module `lxmert/tasks/<name>.py`, registered with `@register_task`) says where
its files are under the data root, which dataset reads them, which model class it trains
and how to build it (from a checkpoint, with the answer head remapped by answer text, or
from scratch), the loss of a batch, how to predict, score (the benchmark's official
metric, `lxmert.evaluation`) and write a test-server file. Everything else - batching over
DDP ranks, accumulation, precision, the schedule, checkpoints, resume - is the loop's.

Data root layout (the release's, which `lxmert synth` also writes):

    DATA/lxmert/<split>.json   pre-training (mscoco_train, mscoco_minival, vgnococo, ...)
    DATA/vqa/<split>.json      DATA/gqa/<split>.json      DATA/nlvr2/<split>.json
    DATA/aokvqa/<split>.json   DATA/vizwiz/<split>.json   DATA/classify/<split>.jsonl
    DATA/features/store        feature store(s) (`lxmert features import`), see recipe data.features
    DATA/vocab.txt             optional; the packaged BERT vocab otherwise
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lxmert.checkpoint.files import has_config
from lxmert.config import LxmertConfig
from lxmert.data import ImageFeatures
from lxmert.data.collate import Batch, move_to
from lxmert.data.splits import split_paths
from lxmert.errors import DataFormatError
from lxmert.modeling import LxmertForQuestionAnswering, LxmertPreTrainedModel
from lxmert.text import AnswerTable, LxmertTokenizer
from lxmert.training.recipe import Recipe
from lxmert.training.sampler import EVAL_WINDOW_BATCHES, dataset_lengths, eval_batch_order

__all__ = ["Task", "AnswerHeadTask", "Limited", "LossMeter", "Predictions", "find_answer_table", "under_root",
           "RUNTIME_FIELDS"]

#: Config fields a fine-tuning run may change on a pre-trained checkpoint (the rest is its
#: architecture, which the checkpoint fixes).
RUNTIME_FIELDS = frozenset({"hidden_dropout_prob", "attention_probs_dropout_prob", "visual_loss_normalizer",
                            "task_matched", "task_mask_lm", "task_obj_predict", "task_qa", "visual_obj_loss",
                            "visual_attr_loss", "visual_feat_loss"})
_PACKAGED_ANSWERS = ("vqa", "gqa", "pretrain")


def under_root(data_dir: Path, rel: str) -> Path:
    """A recipe path: absolute, or relative to the data root."""
    path = Path(rel).expanduser()
    return path if path.is_absolute() else data_dir / path


def find_answer_table(recipe: Recipe, data_dir: Path, answer_files: tuple[str, ...],
                      packaged: str | None) -> AnswerTable | None:
    """A task's answer table: `model.answers` (a packaged name or a path), else the data
    root's own table (`answer_files`), else the `packaged` table, else a fine-tuned
    checkpoint's (`model.init`'s answers.json). None: the task must build one (from its
    training split)."""
    spec = recipe.model.answers
    if spec in _PACKAGED_ANSWERS:
        return AnswerTable.from_name(spec)
    if spec:
        return AnswerTable.from_file(under_root(data_dir, spec))
    for rel in answer_files:
        if (data_dir / rel).is_file():
            return AnswerTable.from_file(data_dir / rel)
    if packaged is not None:
        return AnswerTable.from_name(packaged)
    if recipe.model.init:
        saved = Path(recipe.model.init) / "answers.json"
        if saved.is_file():
            return AnswerTable.from_file(saved)
    return None


class Limited(Dataset):
    """The first `n` examples of a dataset (keeps `set_epoch`, `collate`, `raw` working)."""

    def __init__(self, dataset: Dataset, n: int) -> None:
        self.dataset = dataset
        self.n = min(n, len(dataset)) if n > 0 else len(dataset)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: Any) -> Any:
        position = index[1] if isinstance(index, tuple) else index
        if not 0 <= position < self.n:
            raise IndexError(f"index {position} out of range for {self.n} examples")
        return self.dataset[index]

    @property
    def lengths(self) -> np.ndarray:
        """The kept examples' token counts (AttributeError when the full set has none)."""
        return np.asarray(self.dataset.lengths)[: self.n]

    def __getattr__(self, name: str) -> Any:  # set_epoch, collate, raw ... of the full set
        if name == "dataset":
            raise AttributeError(name)
        value = getattr(self.dataset, name)
        if name == "epoch_lengths":  # the kept examples' lengths in an epoch
            return lambda epoch: np.asarray(value(epoch))[: self.n]
        return value


@dataclass
class Predictions:
    """What `Task.predict` returns: predictions keyed by example id, and the mean loss on
    a labelled split (None otherwise)."""

    by_id: dict[Any, Any]
    loss: float | None


class Task:
    """Base of every task (see the module docstring). Subclasses set the class attributes
    and implement `make_dataset`, `loss`, `predict`, `score` and `write_predictions`."""

    #: registry name, set by `register_task`
    name: ClassVar[str] = ""
    #: folder of the task's split files under the data root
    folder: ClassVar[str] = ""
    #: file suffix of a split
    split_suffix: ClassVar[str] = ".json"
    #: the model class fine-tuned for this task
    model_class: ClassVar[type[LxmertPreTrainedModel]]
    #: packaged recipe used when none is given (`lxmert recipes` lists them)
    default_recipe: ClassVar[str] = ""
    #: key of `validate()` that selects the best checkpoint (higher is better); None = no best/
    main_metric: ClassVar[str | None] = "accuracy"
    #: the key of `Batch.meta` that identifies an example
    id_key: ClassVar[str] = "question_id"
    #: file suffix of a prediction file
    prediction_suffix: ClassVar[str] = ".json"

    def __init__(self, recipe: Recipe, data_dir: str | os.PathLike) -> None:
        self.recipe = recipe
        self.data_dir = Path(data_dir)
        if not self.data_dir.is_dir():
            raise FileNotFoundError(f"data directory {self.data_dir} does not exist")
        vocab = self.data_dir / "vocab.txt"
        self.tokenizer = LxmertTokenizer.from_vocab(vocab if vocab.is_file() else None)
        stores = [under_root(self.data_dir, s) for s in recipe.data.features]
        for store in stores:
            if not store.exists():
                raise FileNotFoundError(
                    f"feature store {store} does not exist (recipe data.features); build it with "
                    f"`lxmert features import` or `lxmert synth --store`")
        # Box slots = the store's capacity (36 for the release's features; fewer for small worlds).
        self.images = ImageFeatures(stores, max_boxes=None)
        #: options of the task's registry metric (`lxmert.evaluation.get_metric`), e.g.
        #: {"rules": "legacy"} for the pre-2021 VQA evaluator
        self.metric_options: dict[str, Any] = {}
        self._train: Dataset | None = None
        self._valid: Dataset | None = None

    # data ----------------------------------------------------------------------------
    def split_files(self, splits: list[str] | str) -> list[Path]:
        """The files of named splits of this task (`lxmert.data.splits`)."""
        return split_paths(self.data_dir / self.folder, splits, suffix=self.split_suffix, data_root=self.data_dir,
                           what=f"{self.name} split")

    def make_dataset(self, splits: list[str] | str, train: bool) -> Dataset:
        raise NotImplementedError

    def token_cache(self) -> Path | None:
        """The directory of the tokenised-split cache (`data.token_cache`), None when off.
        Re-tokenising a large split is a visible part of every command's start-up."""
        spec = self.recipe.data.token_cache
        if not spec:
            return None
        if spec != "auto":
            return under_root(self.data_dir, spec)
        root = os.environ.get("LXMERT_CACHE_DIR") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "lxmert")
        return Path(root) / "tokens"

    def train_dataset(self) -> Dataset:
        """The training split(s) (data.train); refused when they carry no labels (a test
        file named by mistake would otherwise fail on its first batch, naming no file)."""
        if self._train is None:
            dataset = self.make_dataset(self.recipe.data.train, True)
            self.require_labels(dataset, self.recipe.data.train, "data.train")
            self._train = Limited(dataset, self.recipe.data.train_limit)
        return self._train

    def valid_dataset(self) -> Dataset | None:
        """The validation split (data.valid), None when it is empty. Scored with labels, so
        an unlabelled one is refused here, at set-up, not after the training it ends."""
        if self._valid is None and self.recipe.data.valid:
            dataset = self.make_dataset(self.recipe.data.valid, False)
            if self.main_metric is not None:
                self.require_labels(dataset, self.recipe.data.valid, "data.valid")
            self._valid = Limited(dataset, self.recipe.data.valid_limit)
        return self._valid

    def require_labels(self, dataset: Dataset, splits: list[str] | str, key: str) -> None:
        """DataFormatError naming the files when `dataset` (with `has_labels`) has none."""
        if not getattr(dataset, "has_labels", True):
            files = ", ".join(str(p) for p in self.split_files(splits))
            raise DataFormatError(f"{self.name} split {splits!r} ({key}) has no labels: {files}; training, "
                                  f"validation and evaluation need labelled splits (unlabelled ones are for "
                                  f"`lxmert predict`)")

    def collate(self, items: list[Any]) -> Batch:
        return self.train_dataset().collate(items)  # type: ignore[attr-defined]

    def eval_lengths(self, dataset: Dataset) -> np.ndarray | None:
        """The lengths evaluation sorts `dataset` by: its `.lengths` when `data.batching =
        "length"`, else (or when it has none) None, i.e. file order."""
        return dataset_lengths(dataset) if self.recipe.data.batching == "length" else None

    @property
    def eval_batch_size(self) -> int:
        """`data.eval_batch_size`, by default the training batch."""
        return self.recipe.data.eval_batch_size or self.recipe.train.batch_size

    def eval_batch_order(self, dataset: Dataset, lengths: np.ndarray | None = None) -> list[np.ndarray]:
        """The batches (dataset positions) evaluation runs, in the order it runs them:
        batches of `eval_batch_size`, sorted by length inside windows of consecutive
        examples (`lxmert.training.sampler.eval_batch_order`) or, without lengths, in file
        order. `lengths`: `eval_lengths(dataset)` when the caller has it already."""
        if lengths is None:
            lengths = self.eval_lengths(dataset)
        return eval_batch_order(len(dataset), self.eval_batch_size, lengths)  # type: ignore[arg-type]

    def eval_batches(self, dataset: Dataset, device: torch.device,
                     order: list[np.ndarray] | None = None) -> Iterator[Batch]:
        """Every example of `dataset` once, in the batches of `order` (default:
        `eval_batch_order(dataset)`), on `device`.

        Length-sorted batches pad little; the order of examples is then NOT the file's (use
        `outputs` for results in file order), which sums and counts do not mind."""
        if order is None:
            order = self.eval_batch_order(dataset)
        loader = DataLoader(dataset, batch_sampler=[b.tolist() for b in order],
                            collate_fn=dataset.collate,  # type: ignore[attr-defined]
                            num_workers=self.recipe.data.num_workers)
        for batch in loader:
            yield move_to(batch, device, non_blocking=True)

    # model ---------------------------------------------------------------------------
    def scratch_config(self, **extra: Any) -> LxmertConfig:
        """LxmertConfig from the recipe's [model] fields, sized to this data."""
        values = dict(vocab_size=self.tokenizer.vocab_size, visual_feat_dim=self.images.feat_dim)
        values.update(self.recipe.model.config)
        values.update(extra)
        return LxmertConfig(**values)

    def runtime_overrides(self) -> dict[str, Any]:
        """The recipe's [model] fields that may change a checkpoint's config (dropouts, ...)."""
        return {k: v for k, v in self.recipe.model.config.items() if k in RUNTIME_FIELDS}

    def init_overrides(self) -> dict[str, Any]:
        """Config fields for loading `model.init`: the runtime ones, and for a checkpoint
        without config.json (an authors' `.pth`, whose sizes are read off its weights) the
        recipe's `num_attention_heads`, the one size weights cannot give."""
        out = self.runtime_overrides()
        heads = self.recipe.model.config.get("num_attention_heads")
        if heads is not None and not has_config(self.recipe.model.init):
            out["num_attention_heads"] = heads
        return out

    def model_options(self) -> dict[str, Any]:
        """Keyword arguments of `model_class.from_pretrained` / the constructor that this
        task's data decides (e.g. `answers=` for QA heads)."""
        return {}

    def build_model(self) -> nn.Module:
        """The model to train: from `model.init` (its encoder; a head of another task or
        answer table is adapted or started fresh), else from scratch."""
        options = self.model_options()
        if self.recipe.model.init:
            return self.model_class.from_pretrained(self.recipe.model.init, strict=False,
                                                    **self.init_overrides(), **options)
        return self.model_class(self.scratch_config(**self.scratch_extra()), **options)

    def scratch_extra(self) -> dict[str, Any]:
        """Config fields a from-scratch model takes from this task (e.g. num_qa_labels)."""
        return {}

    def load_model(self, checkpoint: str | os.PathLike) -> nn.Module:
        """A trained model of this task for evaluation / prediction: its own head, loaded
        strictly (a checkpoint of another task is an error, not a random head)."""
        return self.model_class.from_pretrained(checkpoint)

    def checkpoint_files(self) -> dict[str, str]:
        """Extra files saved with every checkpoint (a data root's own vocab.txt)."""
        vocab = self.data_dir / "vocab.txt"
        return {"vocab.txt": vocab.read_text(encoding="utf-8")} if vocab.is_file() else {}

    def ddp_find_unused_parameters(self) -> bool:
        """Whether some parameters get no gradient (DDP must then look for them each step).

        True for heads that read only the pooled language vector (QA, NLVR2, classification):
        the object branch of the last cross-modality layer then feeds no loss."""
        return True

    # training and evaluation ------------------------------------------------------------
    def loss(self, model: nn.Module, inputs: dict[str, Any], epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one batch (and named parts to log)."""
        out = model(**inputs)
        return out.loss, {}

    def predict(self, model: nn.Module, dataset: Dataset, device: torch.device) -> Predictions:
        raise NotImplementedError

    def score(self, predictions: dict[Any, Any], dataset: Dataset) -> dict[str, float]:
        raise NotImplementedError

    def write_predictions(self, path: str | os.PathLike, predictions: dict[Any, Any]) -> Path:
        raise NotImplementedError

    @torch.no_grad()
    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """Validation metrics: the task's official metric on its predictions, plus the loss."""
        valid = self.valid_dataset()
        if valid is None:
            return {}
        predictions = self.predict(model, valid, device)
        out = self.score(predictions.by_id, valid)
        if predictions.loss is not None:
            out["loss"] = predictions.loss
        return out

    def outputs(self, model: nn.Module, dataset: Dataset, device: torch.device,
                loss: "LossMeter | None" = None) -> Iterator[tuple[Batch, Any]]:
        """(batch, model output) over `dataset` in file order; `loss` accumulates the mean loss.

        Without length sorting (`eval_lengths` None) these are the batches the model ran.
        With it, the model runs on the batches of `eval_batch_order` (sorted by length
        inside windows of `EVAL_WINDOW_BATCHES` batches); once a window is done its outputs
        are put back in file order and handed out in slices of the evaluation batch size,
        so predictions (and the files written from them) come out in the split's order.
        Each `batch` then carries only `meta` (its `inputs` are empty: the model ran on
        other groupings), and each output holds the per-example fields (one row per
        example: `question_answering_score`, `logits`, ...) of these examples, padded with
        zeros along later dimensions where the window's batches differ (sequence outputs,
        when the model returns them); batch-level values (`loss`) are None there: the
        split's mean loss is what `loss` accumulates.
        """
        lengths = self.eval_lengths(dataset)
        order = self.eval_batch_order(dataset, lengths)
        batches = self.eval_batches(dataset, device, order)
        if lengths is None:
            for batch in batches:
                out = model(**batch.inputs)
                if loss is not None:
                    loss.add(out, batch.size)
                yield batch, out
            return
        size = self.eval_batch_size
        for start in range(0, len(order), EVAL_WINDOW_BATCHES):
            window = order[start:start + EVAL_WINDOW_BATCHES]
            metas, outs = [], []
            for _ in window:
                batch = next(batches)
                out = model(**batch.inputs)
                if loss is not None:
                    loss.add(out, batch.size)
                metas.append(batch.meta)
                outs.append(out)
            sizes = [len(p) for p in window]
            ran = np.concatenate(window)
            where = np.argsort(ran, kind="stable")  # the row of the window's outputs holding each example
            meta, out = _concat_rows(metas, sizes), _concat_rows(outs, sizes)
            for lo in range(0, len(ran), size):
                rows = torch.from_numpy(where[lo:lo + size])
                yield Batch({}, _take_rows(meta, rows)), _take_rows(out, rows)


class _Rows(list):
    """One item per example (ids in `Batch.meta`), as opposed to a tuple of per-layer tensors."""


def _concat_rows(parts: list[Any], sizes: list[int]) -> Any:
    """The per-example content of several batches' values, concatenated along the examples.

    Tensors with one row per example are concatenated (zero-padded along later dimensions
    where the batches differ); lists of one plain item per example are joined; dicts,
    tuples and dataclasses are walked; anything else (a batch mean, None) becomes None."""
    first = parts[0]
    if isinstance(first, torch.Tensor):
        if any(not isinstance(p, torch.Tensor) or p.dim() != first.dim() or p.dim() == 0 or p.shape[0] != n
               for p, n in zip(parts, sizes)):
            return None
        widest = [max(p.shape[d] for p in parts) for d in range(1, first.dim())]
        padded = []
        for p in parts:
            pad: list[int] = []
            for d in range(first.dim() - 1, 0, -1):
                pad += [0, widest[d - 1] - p.shape[d]]
            padded.append(torch.nn.functional.pad(p, pad) if any(pad) else p)
        return torch.cat(padded)
    if isinstance(first, dict):
        if any(not isinstance(p, dict) or p.keys() != first.keys() for p in parts):
            return None
        return {k: _concat_rows([p[k] for p in parts], sizes) for k in first}
    if dataclasses.is_dataclass(first) and not isinstance(first, type):
        return type(first)(**{f.name: _concat_rows([getattr(p, f.name) for p in parts], sizes)
                              for f in dataclasses.fields(first)})
    if isinstance(first, list) and all(isinstance(p, list) and len(p) == n for p, n in zip(parts, sizes)) \
            and not any(isinstance(x, torch.Tensor) for p in parts for x in p):
        return _Rows(x for p in parts for x in p)
    if isinstance(first, (tuple, list)):
        if any(not isinstance(p, (tuple, list)) or len(p) != len(first) for p in parts):
            return None
        return type(first)(_concat_rows([p[i] for p in parts], sizes) for i in range(len(first)))
    return None


def _take_rows(value: Any, rows: torch.Tensor) -> Any:
    """The examples `rows` of a value built by `_concat_rows`."""
    if isinstance(value, torch.Tensor):
        return value.index_select(0, rows.to(value.device))
    if isinstance(value, _Rows):
        return [value[i] for i in rows.tolist()]
    if isinstance(value, dict):
        return {k: _take_rows(v, rows) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return type(value)(**{f.name: _take_rows(getattr(value, f.name), rows) for f in dataclasses.fields(value)})
    if isinstance(value, (tuple, list)):
        return type(value)(_take_rows(v, rows) for v in value)
    return value


class LossMeter:
    """Mean of a model output's `loss` over the examples of several batches."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def add(self, output: Any, size: int) -> None:
        if getattr(output, "loss", None) is not None:
            self.total += float(output.loss) * size
            self.count += size

    @property
    def mean(self) -> float | None:
        """None when no batch carried labels (an unlabelled split)."""
        return self.total / self.count if self.count else None


class AnswerHeadTask(Task):
    """Tasks answered by the QA head over an answer table (VQA, GQA, A-OKVQA, VizWiz)."""

    model_class = LxmertForQuestionAnswering
    #: the data root's own answer table(s), first found wins (relative to the data root)
    answer_files: ClassVar[tuple[str, ...]] = ()
    #: packaged table used when the data root has none (None: build one from the train split)
    packaged_answers: ClassVar[str | None] = None

    def __init__(self, recipe: Recipe, data_dir: str | os.PathLike) -> None:
        super().__init__(recipe, data_dir)
        self.answers = self.answer_table()

    def answer_table(self) -> AnswerTable:
        table = find_answer_table(self.recipe, self.data_dir, self.answer_files, self.packaged_answers)
        return table if table is not None else self.build_answer_table(self.split_files(self.recipe.data.train))

    def build_answer_table(self, files: list[Path]) -> AnswerTable:
        raise NotImplementedError(f"{self.name}: no answer table given (model.answers) and none to build")

    def model_options(self) -> dict[str, Any]:
        return {"answers": self.answers.answers}

    def scratch_extra(self) -> dict[str, Any]:
        return {"num_qa_labels": len(self.answers)}

    def load_model(self, checkpoint: str | os.PathLike) -> nn.Module:
        """The fine-tuned model with its own head; scores use the table the head was trained
        on (its answers.json), so the targets are built from that table too."""
        model = self.model_class.from_pretrained(checkpoint)
        own = getattr(model, "answers", None)
        if own is None:
            if model.config.num_qa_labels != len(self.answers):
                raise ValueError(
                    f"{checkpoint}: its QA head has {model.config.num_qa_labels} answers, names none "
                    f"(no answers.json), and the recipe's table has {len(self.answers)}; pass "
                    f"model.answers=FILE with the table it was trained on")
            model.answers = list(self.answers.answers)
        elif list(own) != list(self.answers.answers):
            self.answers = AnswerTable(list(own))
        return model

    def answer_scores(self, model: nn.Module, dataset: Dataset, device: torch.device
                      ) -> tuple[list[Any], torch.Tensor, float | None]:
        """(example ids, answer-head logits [N, A] on the CPU in float32, mean loss or None)."""
        ids: list[Any] = []
        chunks: list[torch.Tensor] = []
        loss = LossMeter()
        for batch, out in self.outputs(model, dataset, device, loss):
            ids.extend(batch.meta[self.id_key])
            chunks.append(out.question_answering_score.float().cpu())
        return ids, torch.cat(chunks), loss.mean

    @torch.no_grad()
    def predict(self, model: nn.Module, dataset: Dataset, device: torch.device) -> Predictions:
        """{question_id: answer} (argmax of the head) and the mean loss when labelled."""
        answers = getattr(model, "answers", None) or self.answers.answers
        by_id: dict[Any, str] = {}
        loss = LossMeter()
        for batch, out in self.outputs(model, dataset, device, loss):
            for qid, k in zip(batch.meta[self.id_key], out.question_answering_score.argmax(-1).tolist()):
                by_id[qid] = answers[k]
        return Predictions(by_id, loss.mean)
