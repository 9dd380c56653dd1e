"""Pre-training: the five objectives (masked LM, masked-object regression, object and
attribute labels, image-sentence matching, image QA) on `DATA/lxmert/<split>.json`.

Validation reports every loss and the MLM / matching / QA / object-label accuracies; there
is no single "best" metric, so pre-training keeps checkpoints, not `best/`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lxmert.config import LxmertConfig
from lxmert.data import PretrainingDataset
from lxmert.labels import IGNORE_INDEX
from lxmert.modeling import LxmertForPreTraining
from lxmert.tasks import register_task
from lxmert.training.recipe import Recipe
from lxmert.training.task import Task, find_answer_table

__all__ = ["PretrainOptions", "PretrainTask", "PRETRAIN_LOSSES"]

#: names of the pre-training losses (keys of `pretrain.loss_weights`)
PRETRAIN_LOSSES = ("mlm", "matched", "obj", "attr", "feat", "qa")


@dataclass
class PretrainOptions:
    """The `[pretrain]` section: the five objectives (each switchable) and their masking rates.

    `qa_from_epoch`: first epoch (0-based) with the QA loss; the paper adds QA for the last
    10 of 20 epochs (10), the public code from the start (0).
    """

    mask_lm: bool = True
    obj_predict: bool = True
    matched: bool = True
    qa: bool = True
    qa_from_epoch: int = 0
    visual_obj_loss: bool = True
    visual_attr_loss: bool = True
    visual_feat_loss: bool = True
    word_mask_rate: float = 0.15
    obj_mask_rate: float = 0.15
    #: sources whose sentences are matching examples (negatives drawn among them too);
    #: the others get no matching loss. Empty = every sentence, as the release
    match_sources: list[str] = field(default_factory=list)
    #: scales of the named losses (mlm, matched, obj, attr, feat, qa) in the summed loss;
    #: empty = the release's plain sum
    loss_weights: dict[str, float] = field(default_factory=dict)

    def problems(self) -> list[str]:
        """What is wrong with these values (empty when nothing), for the recipe's error."""
        out = []
        for key, value in self.loss_weights.items():
            if key not in PRETRAIN_LOSSES:
                out.append(f"pretrain.loss_weights.{key}: not a loss (expected one of {', '.join(PRETRAIN_LOSSES)})")
            elif not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                out.append(f"pretrain.loss_weights.{key} = {value!r} (a number >= 0)")
        for name in ("word_mask_rate", "obj_mask_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                out.append(f"pretrain.{name} = {value} (a probability in [0, 1])")
        if self.qa_from_epoch < 0:
            out.append(f"pretrain.qa_from_epoch = {self.qa_from_epoch} (must be >= 0)")
        return out


@register_task("pretrain")
class PretrainTask(Task):
    """The five objectives; QA joins at `pretrain.qa_from_epoch`."""

    folder = "lxmert"
    model_class = LxmertForPreTraining
    default_recipe = "lxr955-pretrain"
    main_metric = None
    options_class = PretrainOptions

    def __init__(self, recipe: Recipe, data_dir: str | os.PathLike) -> None:
        super().__init__(recipe, data_dir)
        self.options: PretrainOptions = recipe.options
        self.answers = find_answer_table(recipe, self.data_dir, ("lxmert/all_ans.json",), "pretrain")

    def make_dataset(self, splits: list[str] | str, train: bool) -> PretrainingDataset:
        p = self.options
        return PretrainingDataset(
            self.split_files(splits), self.images, self.tokenizer, self.answers,
            sources=set(self.recipe.data.sources) or None, max_length=self.recipe.data.max_seq_length,
            seed=self.recipe.train.seed, word_mask_prob=p.word_mask_rate if p.mask_lm else 0.0,
            obj_mask_prob=p.obj_mask_rate if p.obj_predict else 0.0, match_prob=0.5 if p.matched else 0.0,
            match_sources=set(p.match_sources) if p.matched and p.match_sources else None,
            qa=p.qa, token_cache=self.token_cache(),
        )

    def objective_flags(self) -> dict[str, bool]:
        """The config switches of the objectives this recipe trains."""
        p = self.options
        return dict(task_mask_lm=p.mask_lm, task_obj_predict=p.obj_predict, task_matched=p.matched,
                    task_qa=p.qa, visual_obj_loss=p.visual_obj_loss, visual_attr_loss=p.visual_attr_loss,
                    visual_feat_loss=p.visual_feat_loss)

    def build_model(self) -> nn.Module:
        flags = self.objective_flags()
        if self.recipe.model.init:
            model = LxmertForPreTraining.from_pretrained(self.recipe.model.init, strict=False,
                                                         **{**self.init_overrides(), **flags})
            if self.options.qa and model.config.num_qa_labels != len(self.answers):
                raise ValueError(f"{self.recipe.model.init}: QA head has {model.config.num_qa_labels} answers, "
                                 f"the pre-training answer table {len(self.answers)}")
        else:
            model = LxmertForPreTraining(self.scratch_config(num_qa_labels=len(self.answers), **flags))
        model.answers = list(self.answers.answers)  # saved as answers.json: heads remap by text
        self.check_label_ids(model.config)
        return model

    def load_model(self, checkpoint: str | os.PathLike) -> nn.Module:
        """A pre-trained checkpoint with the objectives of this recipe switched on or off."""
        model = LxmertForPreTraining.from_pretrained(checkpoint, strict=False, **self.objective_flags())
        if getattr(model, "answers", None) is None:
            model.answers = list(self.answers.answers)
        self.check_label_ids(model.config)
        return model

    def check_label_ids(self, config: LxmertConfig) -> None:
        """The stores' detector ids are the object / attribute targets: refuse, before the
        first step, ids the model's label counts cannot take (else an IndexError deep in
        the loss, naming no file). Objectives switched off need no check."""
        p = self.options
        if not p.obj_predict:
            return
        unchecked = 1 << 62  # a count no id reaches: the objective is off
        self.images.check_label_ids(config.num_object_labels if p.visual_obj_loss else unchecked,
                                    config.num_attr_labels if p.visual_attr_loss else unchecked)

    def ddp_find_unused_parameters(self) -> bool:
        # Every parameter feeds the five objectives' losses, except: the QA head before
        # `qa_from_epoch`, heads of zero-weighted losses, and the last cross layer's object
        # branch when no object objective reads the object outputs.
        p = self.options
        return ((p.qa and p.qa_from_epoch > 0) or any(w == 0 for w in p.loss_weights.values())
                or not p.obj_predict)

    def targets(self, inputs: dict[str, Any], epoch: int | None) -> dict[str, Any]:
        """The batch's model inputs with the targets of switched-off objectives removed
        (and QA's before `qa_from_epoch`; `epoch=None` for validation, where QA counts)."""
        p = self.options
        inputs = dict(inputs)
        wanted = {"obj": p.visual_obj_loss, "attr": p.visual_attr_loss, "feat": p.visual_feat_loss}
        inputs["obj_labels"] = {k: v for k, v in inputs["obj_labels"].items() if wanted.get(k)}
        if not p.obj_predict:
            inputs.pop("obj_labels")
        if not p.matched:
            inputs.pop("matched_label")
        if not p.qa or (epoch is not None and epoch < p.qa_from_epoch):
            inputs.pop("ans")
        return inputs

    def loss(self, model: nn.Module, inputs: dict[str, Any], epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        weights = self.options.loss_weights or None
        out = model(**self.targets(inputs, epoch), sparse_mlm=True, loss_weights=weights)
        return out.loss, out.losses

    @torch.no_grad()
    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
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

        p = self.options
        batches = 0
        for batch in self.eval_batches(valid, device):
            batches += 1
            inputs = batch.inputs
            out = model(**self.targets(inputs, None), sparse_mlm=True)
            b = batch.size
            labels = inputs["labels"]
            chosen = labels != IGNORE_INDEX
            # each loss is a mean over its own targets (masked words, matching examples,
            # QA examples; every object for the visual ones): weighted by their count, the
            # split's mean does not depend on how the batches were formed (length-sorted
            # or not), as a batch-size weighting would
            counts_of = {"mlm": float(chosen.sum()), "matched": float((inputs["matched_label"] != IGNORE_INDEX).sum()),
                         "qa": float((inputs["ans"] != IGNORE_INDEX).sum())}
            for k, v in (out.losses or {}).items():
                n = counts_of.get(k, float(b))
                if n > 0:
                    add(f"{k}_loss", float(v) * n, n)
            if p.mask_lm and chosen.any():
                add("mlm_accuracy", float((out.prediction_logits.argmax(-1) == labels[chosen]).sum()),
                    float(chosen.sum()))
            if p.matched:
                pred = out.cross_relationship_score.argmax(-1)
                target = inputs["matched_label"]
                keep = target != IGNORE_INDEX  # examples outside pretrain.match_sources
                if keep.any():
                    add("matched_accuracy", float((pred[keep] == target[keep]).sum()), float(keep.sum()))
            ans = inputs["ans"]
            if p.qa and out.question_answering_score is not None and (ans != IGNORE_INDEX).any():
                keep = ans != IGNORE_INDEX
                add("qa_accuracy", float((out.question_answering_score.argmax(-1)[keep] == ans[keep]).sum()),
                    float(keep.sum()))
            if out.obj_logits:
                real = inputs.get("visual_attention_mask")
                for key in ("obj", "attr"):
                    if key in out.obj_logits:
                        target = inputs["obj_labels"][key][0]
                        hit = out.obj_logits[key].argmax(-1) == target
                        mask = real.bool() if real is not None else torch.ones_like(hit)
                        add(f"{key}_accuracy", float(hit[mask].sum()), float(mask.sum()))
        if not batches:
            return {}
        means = {k: sums[k] / counts[k] for k in sums if counts[k] > 0}
        # the total as the model sums it (loss_weights included), of the split's means
        scale = p.loss_weights or {}
        parts = [(k[:-len("_loss")], v) for k, v in means.items() if k.endswith("_loss")]
        if parts:
            means = {"loss": sum(v * float(scale.get(name, 1.0)) for name, v in parts), **means}
        return means
