"""The public entry points behind `lxmert pretrain|finetune|evaluate|predict`.

    from lxmert.training.run import train, evaluate, predict
    result = train("data/", "runs/vqa", recipe)              # pretrain or finetune
    metrics = evaluate("vqa", "data/", "runs/vqa/best", split="minival")
    path = predict("vqa", "data/", "runs/vqa/best", split="test", out="test_predict.json")
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lxmert.training.distributed import cleanup_distributed, init_distributed
from lxmert.training.precision import autocast, check_amp
from lxmert.training.recipe import Recipe, load_recipe
from lxmert.training.tasks import make_task
from lxmert.training.trainer import FitResult, Trainer
from lxmert.utils import atomic_write_text

__all__ = ["train", "evaluate", "predict", "load_for_inference"]


def train(data_dir: str | os.PathLike, out_dir: str | os.PathLike, recipe: Recipe,
          resume: bool = False) -> FitResult:
    """Pre-train or fine-tune (by `recipe.task`) into `out_dir`; DDP when run under torchrun."""
    info = init_distributed(recipe.train.device)
    try:
        adapter = make_task(recipe, data_dir)
        result = Trainer(recipe, adapter, out_dir, resume=resume, dist_info=info).fit()
        if info.is_main:
            atomic_write_text(Path(out_dir) / "result.json", json.dumps(result.to_dict(), indent=2) + "\n")
        return result
    finally:
        cleanup_distributed()


def _inference_recipe(task: str, checkpoint: Path, overrides: list[str]) -> Recipe:
    """The run's own recipe when the checkpoint sits in a run directory, else defaults."""
    for candidate in (checkpoint / "recipe.json", checkpoint.parent / "config.json",
                      checkpoint.parent.parent / "config.json"):
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text())
            except json.JSONDecodeError:
                continue
            if isinstance(data, dict) and data.get("task") == task and "train" in data:
                return load_recipe(candidate, overrides)
    return load_recipe(None, overrides, task=task)


def load_for_inference(task: str, data_dir: str | os.PathLike, checkpoint: str | os.PathLike,
                       overrides: list[str] | None = None, device: str = "auto", compile: str = ""):
    """(adapter, model on its device) for evaluating / predicting with `checkpoint`.

    `compile`: a `torch.compile` backend ("" = eager). With "inductor" the weights are frozen
    into the graph (inference only): on the 2-core CPU the QA model then runs at 0.91 of the
    GEMM rate instead of 0.79 (docs/benchmarks.md), after ~20 s of compilation.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    recipe = _inference_recipe(task, checkpoint, list(overrides or []))
    recipe.model.init = str(checkpoint)
    adapter = make_task(recipe, data_dir)
    if hasattr(adapter, "load_checkpoint"):  # tasks with their own head class (lxmert.training.beyond)
        model = adapter.load_checkpoint(checkpoint)
    elif task != "pretrain":
        from lxmert import LxmertForNLVR2, LxmertForQuestionAnswering

        cls = LxmertForNLVR2 if task == "nlvr2" else LxmertForQuestionAnswering
        model = cls.from_pretrained(checkpoint)  # its own head and answers, no remapping
        if task != "nlvr2":
            own = getattr(model, "answers", None)
            if own is None:
                if model.config.num_qa_labels != len(adapter.answers):
                    raise ValueError(
                        f"{checkpoint}: its QA head has {model.config.num_qa_labels} answers, names none "
                        f"(no answers.json), and the recipe's table has {len(adapter.answers)}; pass "
                        f"model.answers=FILE with the table it was trained on")
                model.answers = list(adapter.answers.answers)
            elif list(own) != list(adapter.answers.answers):
                # score with the table the head was trained on: targets are built from it too
                from lxmert.text import AnswerTable

                adapter.answers = AnswerTable(list(own))
    else:
        model = adapter.build_model()
    dev = init_distributed(device).device
    model = model.to(dev).eval()
    if compile:
        import torch

        options = {"freezing": True} if compile == "inductor" else None
        model = torch.compile(model, backend=compile, options=options)
    return adapter, model, dev


def evaluate(task: str, data_dir: str | os.PathLike, checkpoint: str | os.PathLike,
             split: str | None = None, overrides: list[str] | None = None, device: str = "auto",
             predictions_out: str | os.PathLike | None = None, compile: str = "",
             amp: str = "none") -> dict[str, float]:
    """Metrics of `checkpoint` on a labelled split (default: the recipe's validation split).
    `amp="bf16"`: autocast (lxmert.training.precision; ~2.3x on CPUs with AMX)."""
    adapter, model, dev = load_for_inference(task, data_dir, checkpoint, overrides, device, compile)
    check_amp(amp, dev, "--amp")
    if split:
        adapter.recipe.data.valid = split
    adapter.recipe.data.valid_limit = 0
    if task == "pretrain":
        with autocast(amp, dev):
            return adapter.evaluate(model, dev)
    dataset = adapter.valid_dataset()
    with autocast(amp, dev):
        preds, loss = adapter.predict(model, dataset, dev)
    if not getattr(dataset, "has_labels", True):
        raise ValueError(f"{task} split {adapter.recipe.data.valid!r} has no labels; use `lxmert predict`")
    metrics = adapter.score(preds, dataset)
    if loss is not None:
        metrics["loss"] = loss
    if predictions_out is not None:
        _write(task, predictions_out, preds, adapter)
    return metrics


def _write(task: str, path: str | os.PathLike, preds: dict[Any, Any], adapter: Any = None) -> Path:
    from lxmert.evaluation import write_predictions

    if hasattr(adapter, "write_predictions"):  # A-OKVQA / VizWiz / classification files
        return adapter.write_predictions(path, preds)
    if task == "nlvr2":
        preds = {k: bool(v) for k, v in preds.items()}
    return write_predictions(task, path, preds)


def predict(task: str, data_dir: str | os.PathLike, checkpoint: str | os.PathLike, out: str | os.PathLike,
            split: str | None = None, overrides: list[str] | None = None, device: str = "auto",
            compile: str = "", amp: str = "none") -> Path:
    """Test-server file for `split` (default: the recipe's test split): VQA/GQA json, NLVR2 csv."""
    if task == "pretrain":
        raise ValueError("predict is for vqa, gqa and nlvr2")
    adapter, model, dev = load_for_inference(task, data_dir, checkpoint, overrides, device, compile)
    check_amp(amp, dev, "--amp")
    name = split or adapter.recipe.data.test
    if not name:
        raise ValueError("no test split: pass --split (recipe data.test is empty)")
    dataset = adapter.make_dataset(name, train=False)
    with autocast(amp, dev):
        preds, _ = adapter.predict(model, dataset, dev)
    return _write(task, out, preds, adapter)
