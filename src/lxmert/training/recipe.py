"""Recipes: one TOML file per experiment, every field overridable, the result saved with the run.

A recipe has a `task` (a name of the task registry, `lxmert.tasks`) and sections:
`[model]` (LxmertConfig fields and `init`, the checkpoint to start from), `[data]`,
`[optim]`, `[train]`, `[adv]` (adversarial fine-tuning, off by default) and the task's own
section, named after the task, when the task has options (`[pretrain]`: the five
objectives). The recipes the package ships live in `lxmert/recipes/*.toml` (package data,
so a wheel install has them); `--config NAME` picks one, `--config PATH` reads a file.
Command-line overrides use dotted keys (`--set optim.lr=1e-4 train.epochs=2`); the value
is read as a TOML value when it parses as one (numbers, booleans, lists, quoted strings)
and as a bare string otherwise; `none` unsets an optional value (`train.max_steps=none`:
train `train.epochs`). Unknown keys and values out of range are errors naming the file and
the key (`Recipe.validate`, one place for every section): a typo in a recipe must never
silently train the default, nor `max_steps = 0` silently mean "full epochs".
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import tomllib
import types
import typing
from importlib import resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from lxmert.atomic import atomic_write_text
from lxmert.config import LxmertConfig, config_problems
from lxmert.errors import RecipeError
from lxmert.tasks import get_task, task_names
from lxmert.training.precision import AMP_CHOICES
from lxmert.training.sampler import BATCHINGS

__all__ = [
    "Recipe",
    "ModelSection",
    "DataSection",
    "OptimSection",
    "TrainSection",
    "AdvSection",
    "load_recipe",
    "apply_overrides",
    "parse_override",
    "recipe_names",
    "recipe_path",
    "build_section",
]


@dataclass
class ModelSection:
    """Where the network comes from.

    `init`: a checkpoint directory (ours, HF or an imported original) to start from; empty
    = random init from `config`. `config`: LxmertConfig fields (sizes, layers, dropouts).
    `answers`: answer table of the task head ("vqa", "gqa", a label2ans JSON path, or empty
    for the table found in the data directory).
    """

    init: str = ""
    answers: str = ""
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataSection:
    """Splits, feature stores and sizes.

    Split names are json files under DATA/<folder>/ (`lxmert/` for pre-training, `vqa/`,
    `gqa/`, `nlvr2/`); `features` are feature-store directories relative to DATA (or
    absolute). `train_limit` > 0 keeps only the first N training examples (the demo's
    "limited labelled set"); `valid_limit` likewise for validation. `qa_target`: "soft"
    (the release's BCE on soft scores) or "index" (cross-entropy on the best answer).

    `batching`: "length" (the default) groups examples of similar token counts: training
    steps are drawn from windows of up to 50 shuffled global batches sorted by length
    (fewer in small epochs, see `training.sampler.training_window`), so that
    collate pads little (the examples of a step are still a function of (seed, epoch)
    only, for any number of processes); evaluation and prediction run the split sorted
    by length in windows and return the outputs in file order. "random": training batches
    in random order, evaluation in file order (what runs did before length batching).
    A run resumes only with the batching it started with.
    """

    train: list[str] = field(default_factory=lambda: ["train"])
    valid: str = "valid"
    test: str = "test"
    features: list[str] = field(default_factory=lambda: ["features/store"])
    sources: list[str] = field(default_factory=list)
    max_seq_length: int = 20
    qa_target: str = "soft"
    eval_batch_size: int = 0
    num_workers: int = 0
    train_limit: int = 0
    valid_limit: int = 0
    #: where tokenised splits are cached between runs (keyed by the files, vocabulary and
    #: max_seq_length): "auto" = $LXMERT_CACHE_DIR or $XDG_CACHE_HOME/lxmert (~/.cache/lxmert),
    #: "" = no cache, or a directory
    token_cache: str = "auto"
    batching: str = "length"


@dataclass
class OptimSection:
    """Optimiser and schedule; defaults are the release's pre-training numbers."""

    name: str = "bertadam"
    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-6
    warmup: float = 0.05
    schedule: str = "warmup_linear"
    max_grad_norm: float = 1.0
    decay_norm_and_bias: bool = True


@dataclass
class TrainSection:
    """Loop settings. `batch_size` is GLOBAL (split over DDP ranks and accumulation)."""

    batch_size: int = 256
    grad_accum: int = 1
    epochs: int = 20
    #: stop after this many optimiser updates (the schedule spans them); None = `epochs`
    max_steps: int | None = None
    save_every: int = 0
    keep_last: int = 2
    log_every: int = 10
    eval_every: int = 0
    amp: str = "none"
    #: `torch.compile` backend for the training forward/backward ("" = eager). "inductor"
    #: fuses the element-wise work around the GEMMs (on a GPU, and on CPU with a C++
    #: compiler); "aot_eager" only traces (a check that the model compiles). Evaluation and
    #: checkpoints use the uncompiled module, so the weights and files are the same.
    compile: str = ""
    device: str = "auto"
    seed: int = 9595
    progress: bool = True
    #: fine-tuning a pruned checkpoint: the encoder's zero weights stay zero after every step
    keep_sparsity: bool = False


@dataclass
class AdvSection:
    """The `[adv]` section (`lxmert finetune --adv text,image --adv-steps 3 ...`): adversarial
    fine-tuning in embedding space (VILLA; `lxmert.techniques.adversarial`, which checks
    the values when the run starts).

    `modalities` empty = off (the default). `kl` is the weight of the symmetric KL term,
    `init` the uniform init magnitude of the perturbation, `max_norm` its L2 radius per
    example (0 = unbounded), `task_weight` the weight of the adversarial task loss.
    """

    modalities: list[str] = field(default_factory=list)
    steps: int = 3
    lr: float = 1e-3
    kl: float = 1.5
    init: float = 0.0
    max_norm: float = 0.0
    task_weight: float = 1.0
    kl_mode: str = "auto"


@dataclass
class Recipe:
    """A whole experiment; `Recipe.to_dict()` is what a run saves as config.json."""

    task: str = "pretrain"
    name: str = ""
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    adv: AdvSection = field(default_factory=AdvSection)
    #: the task's own section (`[<task>]` in TOML), an instance of its `options_class`;
    #: None for tasks without options
    options: Any = None

    def __post_init__(self) -> None:
        if self.options is None:
            self.options = task_options(self.task, {}, "recipe")
        self.validate()

    def validate(self, source: str = "recipe") -> None:
        """Check every value once, here, before anything runs: a wrong type or range is an
        error naming the key (`train.max_steps = 0 (...)`), never a silent fallback (a
        zero step budget meaning "full epochs") nor a failure hours later."""
        problems: list[str] = []

        def need(ok: bool, key: str, value: Any, expected: str) -> None:
            if not ok:
                problems.append(f"{key} = {value!r} ({expected})")

        def at_least(key: str, value: Any, low: int, what: str = "") -> None:
            need(_is_int(value) and value >= low, key, value, f"must be an integer >= {low}{what}")

        def number(key: str, value: Any, low: float, *, open_low: bool = False, high: float | None = None,
                   open_high: bool = False, what: str = "") -> None:
            ok = _is_number(value) and (value > low if open_low else value >= low)
            if ok and high is not None:
                ok = value < high if open_high else value <= high
            interval = (f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}" if high is not None
                        else f"{'>' if open_low else '>='} {low:g}")
            need(ok, key, value, f"must be a finite number {'in ' if high is not None else ''}{interval}{what}")

        if self.task not in task_names():
            problems.append(f"task = {self.task!r} (expected one of {', '.join(task_names())})")
        m, d, o, t = self.model, self.data, self.optim, self.train
        # [model]
        if m.config:
            known = {f.name for f in dataclasses.fields(LxmertConfig)}
            for key in m.config:
                if key not in known:
                    problems.append(f"model.{key}: not an LxmertConfig field")
            problems.extend(config_problems({k: v for k, v in m.config.items() if k in known}, prefix="model."))
        # [data]
        need(bool(d.train) and all(d.train), "data.train", d.train, "one or more split names")
        need(bool(d.features) and all(d.features), "data.features", d.features, "one or more feature stores")
        at_least("data.max_seq_length", d.max_seq_length, 2, " (room for [CLS] and [SEP])")
        if d.qa_target not in ("soft", "index"):
            problems.append(f"data.qa_target = {d.qa_target!r} (expected soft or index)")
        if d.batching not in BATCHINGS:
            problems.append(f"data.batching = {d.batching!r} (expected {' or '.join(BATCHINGS)})")
        at_least("data.eval_batch_size", d.eval_batch_size, 0, "; 0 = train.batch_size")
        at_least("data.num_workers", d.num_workers, 0)
        at_least("data.train_limit", d.train_limit, 0, "; 0 = every example")
        at_least("data.valid_limit", d.valid_limit, 0, "; 0 = every example")
        # [optim]
        if o.name.lower() not in ("bertadam", "adamw"):
            problems.append(f"optim.name = {o.name!r} (expected bertadam or adamw)")
        number("optim.lr", o.lr, 0.0, open_low=True)
        number("optim.weight_decay", o.weight_decay, 0.0)
        if len(o.betas) != 2:
            problems.append(f"optim.betas = {o.betas} (two numbers)")
        for i, beta in enumerate(o.betas[:2]):
            number(f"optim.betas[{i}]", beta, 0.0, high=1.0, open_high=True)
        number("optim.eps", o.eps, 0.0, open_low=True)
        number("optim.warmup", o.warmup, 0.0, high=1.0, what=" (a fraction of the steps)")
        if o.schedule not in ("warmup_linear", "constant"):
            problems.append(f"optim.schedule = {o.schedule!r} (expected warmup_linear or constant)")
        number("optim.max_grad_norm", o.max_grad_norm, 0.0, what="; 0 = no clipping")
        # [train]
        at_least("train.batch_size", t.batch_size, 1)
        at_least("train.grad_accum", t.grad_accum, 1)
        at_least("train.epochs", t.epochs, 1)
        if t.max_steps is not None:
            at_least("train.max_steps", t.max_steps, 1, "; leave it unset (or `none`) to train train.epochs")
        at_least("train.save_every", t.save_every, 0, "; 0 = at each epoch end only")
        at_least("train.keep_last", t.keep_last, 0, "; 0 = keep every checkpoint")
        at_least("train.log_every", t.log_every, 1)
        at_least("train.eval_every", t.eval_every, 0, "; 0 = at each epoch end only")
        if t.amp not in AMP_CHOICES:
            problems.append(f"train.amp = {t.amp!r} (expected {', '.join(AMP_CHOICES)})")
        if t.compile and t.compile not in ("inductor", "aot_eager", "eager", "cudagraphs"):
            problems.append(f"train.compile = {t.compile!r} (expected '', inductor, aot_eager, eager "
                            "or cudagraphs)")
        need(bool(t.device), "train.device", t.device, "auto, cpu, cuda, cuda:N or mps")
        # [<task>]: the task's own options check themselves ([adv] is checked by
        # lxmert.techniques.adversarial when it is switched on)
        check = getattr(self.options, "problems", None)
        if check is not None:
            problems.extend(check())
        if problems:
            raise RecipeError(f"{source}: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain data; the task's options under the task's name (as in the TOML files)."""
        data = {f.name: dataclasses.asdict(getattr(self, f.name)) if dataclasses.is_dataclass(getattr(self, f.name))
                else getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "options"}
        if self.options is not None:
            data[self.task] = dataclasses.asdict(self.options)
        return data

    def to_toml_dict(self) -> dict[str, Any]:
        """Layout of the TOML files: LxmertConfig fields sit directly in [model]."""
        data = self.to_dict()
        model = data["model"]
        config = model.pop("config")
        model.update(config)
        return data

    def save(self, path: str | os.PathLike) -> Path:
        """Write the resolved recipe as JSON (atomic)."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "recipe") -> "Recipe":
        """Build from the TOML layout (or a saved recipe.json); errors name `source`."""
        data = dict(data)
        task = data.get("task", "pretrain")
        if not isinstance(task, str) or task not in task_names():
            raise RecipeError(f"{source}: task = {task!r} (expected one of {', '.join(task_names())})")
        options = task_options(task, data.pop(task, {}), source)
        model = dict(data.get("model") or {})
        config = dict(model.pop("config", {}) or {})
        for key in list(model):
            if key not in ("init", "answers"):
                value = model.pop(key)
                if key in config and config[key] != value:
                    # Both layouts name the field: silently keeping one would drop an
                    # override (e.g. `model.config.X=...` against a TOML's flat `X`).
                    raise RecipeError(
                        f"{source}: model.{key} ({value!r}) and model.config.{key} ({config[key]!r}) are "
                        f"both set; set one (TOML recipes keep LxmertConfig fields directly in [model], "
                        f"so override model.{key}=...)")
                config[key] = value
        model["config"] = config
        data["model"] = model
        recipe = build_section(cls, data, source, prefix="")
        recipe.options = options
        recipe.validate(source)
        return recipe


def task_options(task: str, data: Any, source: str) -> Any:
    """The `[<task>]` section of a recipe as the task's `options_class` (None if it has none)."""
    options_class = getattr(get_task(task), "options_class", None)
    if options_class is None:
        if data:
            raise RecipeError(f"{source}: task {task!r} has no [{task}] section (got {sorted(data)})")
        return None
    return build_section(options_class, data, source, prefix=f"{task}.")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check and convert one value to its field type (int -> float allowed, not the reverse).

    An optional field (`int | None`) takes JSON's null, or the bare word `none` on the
    command line (TOML has no null), for "unset"."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        (inner,) = args
        return _coerce(value, inner, where)
    if annotation is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{where}: expected true/false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise RecipeError(f"{where}: expected a string, got {value!r}")
        return value
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]  # `--set data.train=train` is a one-element list
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    raise TypeError(f"{where}: unsupported field type {annotation!r}")  # pragma: no cover


def build_section(cls: type, data: dict[str, Any], source: str, prefix: str) -> Any:
    """A recipe section dataclass from plain data: unknown keys and mistyped values are
    errors naming `source` and the dotted key."""
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: [{prefix.rstrip('.')}] must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise RecipeError(
            f"{source}: unknown key(s) {', '.join(prefix + k for k in unknown)} "
            f"(known in this section: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = build_section(hint, value, source, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, hint, f"{source}: {prefix}{name}")
    obj = cls.__new__(cls)
    # Fill defaults first, then given values, without running Recipe.__post_init__ early.
    for name, f in fields.items():
        if name in kwargs:
            setattr(obj, name, kwargs[name])
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            setattr(obj, name, f.default_factory())  # type: ignore[misc]
        else:
            setattr(obj, name, f.default)
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """`"optim.lr=1e-4"` -> (["optim", "lr"], 1e-4); values parse as TOML when they can."""
    if "=" not in text:
        raise RecipeError(f"override {text!r}: expected KEY=VALUE, e.g. optim.lr=1e-4")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise RecipeError(f"override {text!r}: empty key")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of the TOML-layout dict `data` with dotted overrides applied."""
    data = json.loads(json.dumps(data))  # deep copy of plain data
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise RecipeError(f"override {text!r}: {part} is not a section")
            node = nxt
        node[path[-1]] = value
    return data


def _packaged_recipes() -> Any:
    return resources.files("lxmert") / "recipes"


def recipe_names() -> list[str]:
    """The recipes shipped with the package (`lxmert recipes`; `--config NAME`)."""
    return sorted(p.name[: -len(".toml")] for p in _packaged_recipes().iterdir() if p.name.endswith(".toml"))


def recipe_path(name: str | os.PathLike) -> Path:
    """A recipe file: `name` as a path when it is a file, else the packaged recipe `name`."""
    path = Path(name)
    if path.is_file():
        return path
    stem = str(name)[: -len(".toml")] if str(name).endswith(".toml") else str(name)
    if stem in recipe_names():
        return Path(str(_packaged_recipes() / f"{stem}.toml"))
    raise FileNotFoundError(f"recipe {str(name)!r} not found: not a file, nor one of the packaged recipes "
                            f"({', '.join(recipe_names())})")


def load_recipe(
    path: str | os.PathLike | None = None,
    overrides: Iterable[str] = (),
    task: str | None = None,
) -> Recipe:
    """Read a recipe (a path, or the name of a packaged recipe), apply overrides, validate.

    `path` may also be a saved `recipe.json` (JSON layout). `task`, when given, must
    agree with the recipe's task (or sets it when the recipe has none).
    """
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        file = recipe_path(path)
        source = str(file)
        try:
            text = file.read_text(encoding="utf-8")
            data = json.loads(text) if file.suffix == ".json" else tomllib.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RecipeError(f"{file}: cannot parse ({err})") from None
        if not isinstance(data, dict):
            raise RecipeError(f"{file}: expected a table of sections")
        train = data.get("train")
        if file.suffix == ".json" and isinstance(train, dict) and train.get("max_steps") == 0:
            # recipe.json of runs saved before max_steps became optional: 0 meant "epochs"
            train["max_steps"] = None
    if task is not None:
        if "task" in data and data["task"] != task:
            raise RecipeError(f"{source}: recipe is for task {data['task']!r}, not {task!r}")
        data["task"] = task
    data = apply_overrides(data, overrides)
    return Recipe.from_dict(data, source=source)
