"""The task registry: one module per task, `lxmert/tasks/<name>.py`, one `@register_task`.

A task module defines a `lxmert.training.task.Task` subclass - dataset, model class, loss,
metric, prediction writer, answers, default recipe - and registers it under the module's
name. The recipe loader, the trainer, `lxmert finetune|evaluate|predict` and the docs'
task tables all read this registry; adding a task means adding its module and a recipe.

Listing the names (`task_names`) only lists the modules of this package, without importing
them (so `lxmert --help` stays fast); `get_task` imports the one asked for.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, TypeVar

__all__ = ["register_task", "get_task", "task_names", "PRETRAINING_TASK"]

T = TypeVar("T", bound=type)
_TASKS: dict[str, type] = {}
#: the task `lxmert pretrain` runs (the others are fine-tuning tasks)
PRETRAINING_TASK = "pretrain"


def register_task(name: str) -> Callable[[T], T]:
    """Class decorator: register a `Task` subclass as `name` (its module must be `name`.py
    in this package, or be imported before `get_task(name)` for tasks defined elsewhere)."""

    def decorate(cls: T) -> T:
        if name in _TASKS and _TASKS[name] is not cls:
            raise ValueError(f"task {name!r} registered twice: {_TASKS[name]} and {cls}")
        cls.name = name  # type: ignore[attr-defined]
        _TASKS[name] = cls
        return cls

    return decorate


def task_names() -> list[str]:
    """Every task: the modules of this package and tasks registered from elsewhere."""
    found = {info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")}
    return sorted(found | set(_TASKS))


def get_task(name: str) -> type:
    """The task class registered as `name` (importing its module on first use): a subclass
    of `lxmert.training.task.Task` (not imported here, so that this registry imports
    nothing of the package)."""
    if name not in _TASKS:
        if name not in task_names():
            raise KeyError(f"unknown task {name!r} (known: {', '.join(task_names())})")
        importlib.import_module(f"{__name__}.{name}")
        if name not in _TASKS:
            raise RuntimeError(f"lxmert.tasks.{name} registers no task named {name!r}")
    return _TASKS[name]
