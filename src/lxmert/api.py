"""The public entry points; the `lxmert` command only parses arguments and calls these.

    import lxmert.api as lx
    result = lx.train("data/", "runs/vqa", lx.load_recipe("vqa", ["model.init=runs/pre/last"]))
    metrics = lx.evaluate("vqa", "data/", "runs/vqa/best", split="minival")
    path = lx.predict("vqa", "data/", "runs/vqa/best", out="test_predict.json", split="test")
    answers = lx.ask("photo.jpg", "what is the man holding?", model="runs/vqa/best", detector="frcnn.bin")
    lx.quantize("runs/vqa/best", "runs/vqa/int8", check_data="data/")
    lx.convert("model_LXRT.pth", "hf-dir", to="hf")
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from lxmert.atomic import atomic_write_text
from lxmert.checkpoint.export import export_hf, export_original
from lxmert.checkpoint.files import RECIPE_NAME, read_checkpoint, resolve_checkpoint
from lxmert.checkpoint.layouts import canonicalize, detect_layout, head_names, infer_class_name
from lxmert.features.store import FeatureStore
from lxmert.modeling import LxmertPreTrainedModel
from lxmert.modeling.int8 import DEFAULT_SKIP, TIED_SKIP
from lxmert.pipeline import VQAPipeline, check_top_k
from lxmert.pipeline import pipeline as make_pipeline
from lxmert.quantize import AgreementCounter, quantize_checkpoint, load_quantized, weight_rounding_model
from lxmert.tasks import get_task
from lxmert.techniques.adversarial import AdversarialHook, adv_config
from lxmert.techniques.pruning import CARRIED_FILES, SparsityHook
from lxmert.text import LxmertTokenizer
from lxmert.training.distributed import cleanup_distributed, init_distributed
from lxmert.training.hooks import TrainerHook
from lxmert.training.precision import autocast, check_amp
from lxmert.training.recipe import Recipe, load_recipe
from lxmert.training.task import Task
from lxmert.training.trainer import FitResult, Trainer

__all__ = [
    "train", "evaluate", "predict", "ask", "quantize", "check_agreement", "convert", "describe",
    "make_task", "load_for_inference", "training_hooks", "load_recipe", "Recipe",
]

logger = logging.getLogger(__name__)


def make_task(recipe: Recipe, data_dir: str | os.PathLike) -> Task:
    """The task object for `recipe.task` (the registry's class) over `data_dir`."""
    return get_task(recipe.task)(recipe, data_dir)


def training_hooks(recipe: Recipe) -> list[TrainerHook]:
    """The extras a recipe asks for, as loop hooks: `[adv]` (adversarial fine-tuning) and
    `train.keep_sparsity` (retraining a pruned checkpoint). Bad values raise here, before
    the run directory is touched."""
    hooks: list[TrainerHook] = []
    adv = adv_config(recipe.adv)
    if adv is not None:
        hooks.append(AdversarialHook(adv))
    if recipe.train.keep_sparsity:
        hooks.append(SparsityHook())
    return hooks


def train(data_dir: str | os.PathLike, out_dir: str | os.PathLike, recipe: Recipe,
          resume: bool = False) -> FitResult:
    """Pre-train or fine-tune (by `recipe.task`) into `out_dir`; DDP when run under torchrun."""
    hooks = training_hooks(recipe)
    info = init_distributed(recipe.train.device)
    try:
        task = make_task(recipe, data_dir)
        result = Trainer(recipe, task, out_dir, resume=resume, dist_info=info, hooks=hooks).fit()
        if info.is_main:
            atomic_write_text(Path(out_dir) / "result.json", json.dumps(result.to_dict(), indent=2) + "\n")
        return result
    finally:
        cleanup_distributed()


# ------------------------------------------------------------------------------ inference
def _legacy_run_recipe(checkpoint: Path) -> Path | None:
    """Runs written before checkpoints carried recipe.json kept the recipe only in the
    run directory, as config.json (the name a checkpoint's model config also has: a
    recipe is the one with a "task" and a [train] section)."""
    for candidate in (checkpoint.parent / RECIPE_NAME, checkpoint.parent / "config.json",
                      checkpoint.parent.parent / RECIPE_NAME, checkpoint.parent.parent / "config.json"):
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(data, dict) and "task" in data and "train" in data:
                return candidate
    return None


def inference_recipe(task: str, checkpoint: str | os.PathLike, overrides: Sequence[str] = (),
                     config: str | os.PathLike | None = None) -> Recipe:
    """The recipe that evaluating / predicting with `checkpoint` uses: `config` when given,
    else the recipe saved in the checkpoint (recipe.json) or its run directory, else the
    task's packaged recipe - announced, since its splits and stores may not fit your data."""
    path = resolve_checkpoint(checkpoint)
    source: str | os.PathLike | None = config
    if source is None and path.is_dir() and (path / RECIPE_NAME).is_file():
        source = path / RECIPE_NAME
    if source is None:
        source = _legacy_run_recipe(path)
    if source is None:
        source = get_task(task).default_recipe
        logger.warning("%s carries no %s (not written by `lxmert pretrain|finetune`?): using the packaged "
                       "recipe %r for its splits, feature stores and batch size; pass --config or --set to "
                       "change them", checkpoint, RECIPE_NAME, source)
    recipe = load_recipe(source, list(overrides))
    if recipe.task != task:
        raise ValueError(f"{checkpoint}: its recipe ({source}) is for task {recipe.task!r}, not {task!r}")
    return recipe


def load_for_inference(task: str, data_dir: str | os.PathLike, checkpoint: str | os.PathLike,
                       overrides: Sequence[str] = (), device: str = "auto", compile: str = "",
                       config: str | os.PathLike | None = None) -> tuple[Task, nn.Module, torch.device]:
    """(task, model on its device, device) for evaluating / predicting with `checkpoint`.

    `compile`: a `torch.compile` backend ("" = eager). With "inductor" the weights are frozen
    into the graph (inference only), which pays on large splits (docs/evaluation.md).
    """
    if not Path(checkpoint).exists():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    recipe = inference_recipe(task, checkpoint, overrides, config)
    recipe.model.init = str(checkpoint)
    adapter = make_task(recipe, data_dir)
    model = adapter.load_model(checkpoint)
    dev = init_distributed(device).device
    model = model.to(dev).eval()
    if compile:
        options = {"freezing": True} if compile == "inductor" else None
        model = torch.compile(model, backend=compile, options=options)
    return adapter, model, dev


def evaluate(task: str, data_dir: str | os.PathLike, checkpoint: str | os.PathLike,
             split: str | None = None, overrides: Sequence[str] = (), device: str = "auto",
             predictions_out: str | os.PathLike | None = None, compile: str = "",
             amp: str = "none", config: str | os.PathLike | None = None,
             metric_options: dict[str, Any] | None = None) -> dict[str, float]:
    """Metrics of `checkpoint` on a labelled split (default: the recipe's validation split).
    `amp="bf16"`: autocast (lxmert.training.precision; faster on CPUs with AMX).
    `metric_options` go to the task's metric (`{"rules": "legacy"}`: the pre-2021 VQA
    evaluator, docs/evaluation.md)."""
    adapter, model, dev = load_for_inference(task, data_dir, checkpoint, overrides, device, compile, config)
    adapter.metric_options = dict(metric_options or {})
    check_amp(amp, dev, "--amp")
    if split:
        adapter.recipe.data.valid = split
    if not adapter.recipe.data.valid:
        raise ValueError("no split to evaluate: pass --split (the recipe's data.valid is empty)")
    adapter.recipe.data.valid_limit = 0
    if adapter.main_metric is None:  # pre-training: its validation is the evaluation
        with autocast(amp, dev):
            return adapter.validate(model, dev)
    dataset = adapter.valid_dataset()
    if not getattr(dataset, "has_labels", True):
        raise ValueError(f"{task} split {adapter.recipe.data.valid!r} has no labels; use `lxmert predict`")
    with autocast(amp, dev):
        predictions = adapter.predict(model, dataset, dev)
    metrics = adapter.score(predictions.by_id, dataset)
    if predictions.loss is not None:
        metrics["loss"] = predictions.loss
    if predictions_out is not None:
        adapter.write_predictions(predictions_out, predictions.by_id)
    return metrics


def predict(task: str, data_dir: str | os.PathLike, checkpoint: str | os.PathLike, out: str | os.PathLike,
            split: str | None = None, overrides: Sequence[str] = (), device: str = "auto",
            compile: str = "", amp: str = "none", config: str | os.PathLike | None = None) -> Path:
    """Test-server file for `split` (default: the recipe's test split), in the format of the
    task's leaderboard (VQA/GQA json, NLVR2 csv, ...)."""
    if get_task(task).main_metric is None:
        raise ValueError(f"{task} has no predictions to submit; predict is for the fine-tuning tasks")
    adapter, model, dev = load_for_inference(task, data_dir, checkpoint, overrides, device, compile, config)
    check_amp(amp, dev, "--amp")
    name = split or adapter.recipe.data.test
    if not name:
        raise ValueError("no test split: pass --split (recipe data.test is empty)")
    dataset = adapter.make_dataset(name, train=False)
    with autocast(amp, dev):
        predictions = adapter.predict(model, dataset, dev)
    return adapter.write_predictions(out, predictions.by_id)


# ------------------------------------------------------------------------------ ask
def ask(image: str | os.PathLike, question: str, *, model: str | os.PathLike,
        detector: str | os.PathLike | None = None, detector_config: str | os.PathLike | None = None,
        top_k: int = 5, device: str = "cpu", random_init_detector: bool = False,
        features: str | os.PathLike | None = None) -> dict[str, Any]:
    """Answer `question` about one image: an image file (region features from the VG
    detector) or, with `features=STORE`, an image id of that store; then the QA
    checkpoint `model`, through `lxmert.pipeline("vqa")` (the one image -> answer path).

    Returns {"answers": [{"answer", "score"}] (sigmoid scores, as the release trains
    VQA/GQA heads with BCE), "regions": the `RegionFeatures` read, "record": them as a
    TSV record, "answers_named", "random_detector"}. The QA model is loaded and checked
    (it must read the detector's features) before the detector's weights are read, so a
    wrong checkpoint fails in seconds, not minutes."""
    check_top_k(top_k)
    in_store = features is not None and str(image) in FeatureStore.open(features)
    if not in_store:
        if not Path(image).is_file():
            where = f"neither an image id of feature store {features} nor" if features is not None else "no such"
            raise FileNotFoundError(f"{image}: {where} image file")
        if detector is None and not random_init_detector:
            raise ValueError("detector weights are required (or random_init_detector=True for a pipeline test)")
    vqa = make_pipeline("vqa", model, detector=None if in_store else detector,
                        detector_config=None if in_store else detector_config,
                        random_init_detector=random_init_detector and not in_store, features=features, device=device)
    assert isinstance(vqa, VQAPipeline)
    regions = vqa.regions(str(image) if in_store else image)
    raw = vqa.forward([([regions], question)])[0]
    answers = vqa.postprocess(raw, [regions], top_k=top_k)
    return {"answers": answers, "regions": regions, "record": regions.to_record(),
            "answers_named": vqa.answers_named, "random_detector": bool(random_init_detector and not in_store)}


# ------------------------------------------------------------------------------ int8
def quantize(checkpoint: str | os.PathLike, out: str | os.PathLike, *, per_channel: bool = True,
             skip: Iterable[str] | None = None, quantize_heads: bool = False, activation_range: str = "auto",
             check_data: str | os.PathLike | None = None, task: str = "vqa", split: str | None = None
             ) -> dict[str, Any]:
    """`lxmert quantize`: an int8 copy of `checkpoint` in `out` (with its recipe and vocab,
    so `lxmert evaluate --checkpoint OUT` uses the same settings), and with `check_data` its
    answer agreement with the fp32 model on a labelled split (`check_agreement`)."""
    skip_all = tuple(TIED_SKIP if quantize_heads else DEFAULT_SKIP) + tuple(skip or ())
    path = quantize_checkpoint(checkpoint, out, per_channel=per_channel, skip=skip_all,
                               activation_range=activation_range)
    source = resolve_checkpoint(checkpoint)
    if source.is_dir():
        for name in CARRIED_FILES:
            if (source / name).is_file():
                shutil.copy2(source / name, Path(out) / name)
    report: dict[str, Any] = {"out": str(path)}
    if check_data is not None:
        report["agreement"] = check_agreement(checkpoint, out, check_data, task, split, activation_range)
    return report


def check_agreement(checkpoint: str | os.PathLike, quantized: str | os.PathLike, data: str | os.PathLike,
                    task: str, split: str | None, activation_range: str = "auto") -> dict[str, Any]:
    """fp32 vs int8 on a labelled split: top-answer agreement (`lxmert.quantize.AgreementCounter`)
    and the official accuracy of each. Real questions and images matter here: a model's
    margins on random inputs say little about how often quantisation flips an answer.

    Also: the agreement of the int8 weights with fp32 activations (what no activation scheme
    can beat) and the fp32 model's median top-1/top-2 logit margin (small margins flip)."""
    adapter, fp32, device = load_for_inference(task, data, checkpoint, device="cpu")
    if split:
        adapter.recipe.data.valid = split
    adapter.recipe.data.valid_limit = 0
    dataset = adapter.valid_dataset()
    if dataset is None:
        raise ValueError(f"{task}: no split to check on; pass --split")
    int8 = load_quantized(quantized, activation_range=activation_range)
    rounded_model = weight_rounding_model(fp32, int8)
    int8_counter, rounded_counter, margins = AgreementCounter(), AgreementCounter(), []
    with torch.inference_mode():
        for batch in adapter.eval_batches(dataset, device):  # one pass; the fp32 logits computed once
            ref = fp32(**batch.inputs).question_answering_score.float()
            int8_counter.add(ref, int8(**batch.inputs).question_answering_score)
            rounded_counter.add(ref, rounded_model(**batch.inputs).question_answering_score)
            top2 = ref.topk(2, dim=-1).values
            margins.append(top2[:, 0] - top2[:, 1])
        agreement, rounded = int8_counter.result(), rounded_counter.result()
        margin = torch.cat(margins)
        scores = {}
        for name, model in (("fp32", fp32), ("int8", int8)):
            predictions = adapter.predict(model, dataset, device)
            scores[name] = float(adapter.score(predictions.by_id, dataset)["accuracy"])
    return {"task": task, "split": adapter.recipe.data.valid, "checkpoint": str(checkpoint),
            **agreement.to_dict(), "accuracy_fp32": scores["fp32"], "accuracy_int8": scores["int8"],
            "activations": int8.config.extra["quantization"].get("activations"),
            "weight_rounding_agreement": rounded.top1_agreement,
            "median_margin": float(margin.median())}


# ------------------------------------------------------------------------------ formats
def convert(src: str | os.PathLike, dst: str | os.PathLike, to: str = "lxmert", *, force: bool = False,
            map_location: str = "cpu", **config_overrides: Any) -> Path:
    """`lxmert convert`: any supported checkpoint -> ours ('lxmert'), Hugging Face ('hf')
    or the authors' `.pth` ('original'). The model is built and loaded on the way, so a
    checkpoint that does not form a complete model is refused rather than converted.

    `dst` must not exist, or be empty, unless `force` (a directory of something else is
    never written into by accident)."""
    if to not in ("lxmert", "hf", "original"):
        raise ValueError(f"unknown target format {to!r} (lxmert, hf, original)")
    target = Path(dst)
    if target.exists() and not force:
        if target.is_dir() and any(target.iterdir()):
            raise FileExistsError(f"{target}: not empty; choose a new directory or pass --force")
        if target.is_file():
            raise FileExistsError(f"{target}: exists; pass --force to replace it")
    model = LxmertPreTrainedModel.from_pretrained(src, map_location=map_location, **config_overrides)
    if to == "lxmert":
        path = model.save_pretrained(target)
        source = resolve_checkpoint(src)
        if source.is_dir():
            for name in CARRIED_FILES:
                if (source / name).is_file():
                    shutil.copy2(source / name, target / name)
        return path
    if to == "hf":
        source = resolve_checkpoint(src)
        tokenizer = LxmertTokenizer.from_vocab(source if source.is_dir() else None)
        return export_hf(target, model.canonical_state(), model.config, type(model).__name__,
                         answers=getattr(model, "answers", None), tokenizer=tokenizer)
    return export_original(target, model.canonical_state(), answers=getattr(model, "answers", None))


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """What `lxmert inspect` prints: layout, class, config, parameter counts per part."""
    stored = read_checkpoint(path)
    if stored.int8:
        layout, state = "lxmert-int8", stored.state
    else:
        layout, state = detect_layout(list(stored.state)), canonicalize(stored.state)
    model = LxmertPreTrainedModel.from_pretrained(path)
    parts: dict[str, int] = {}
    for key, value in state.items():
        part = key.split(".")[0] if not key.startswith("lxmert.") else "lxmert." + key.split(".")[1]
        parts[part] = parts.get(part, 0) + value.numel()
    return {
        "path": str(path),
        "layout": layout,
        "model_class": stored.class_name or infer_class_name(state),
        "config": model.config.to_dict(),
        "parameters": {"total": sum(parts.values()), **dict(sorted(parts.items()))},
        "heads": head_names(state) if not stored.int8 else sorted({k.split(".")[0] for k in state
                                                                    if not k.startswith("lxmert.")}),
        "answers": len(model.answers) if getattr(model, "answers", None) else None,
        "dtypes": sorted({str(v.dtype) for v in state.values()}),
    }
