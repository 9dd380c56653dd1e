"""The runner of the fault tables (tests/faults/test_faults_*.py, issue 21).

Each module lists ``Case``s (see tests/faults/test_faults_features.py for the format) and runs
them with :func:`run_case`; tests/conftest.py counts the cases that ran (the
``fault_case`` marker) and prints "N fault cases: all refused clearly or handled".

    Case(name, group, run, expect, check=None)

    run     run(env) -> result; ``env.tmp`` is the case's own directory, ``env.monkeypatch``
            injects faults, ``env.world()`` a shared generated world (read-only: copy it
            with ``env.copy_world()`` to change it), ``env.runs("vqa" | "pretrain")`` a
            shared short training run (read-only), ``cli(...)`` runs the command line in
            process (returns ``Cli(rc, out, err)`` instead of raising).
    expect  "refused: <regex>": ``run`` raises an error of the clear types (the package's
            own, ValueError, OSError; never a bare KeyError, IndexError, TypeError or
            RuntimeError) whose message matches, or returns a Cli with rc != 0, one line
            on stderr, no traceback, matching. "handled: <what>": ``run`` returns (a Cli
            with rc 0) and ``check(env, result)`` asserts <what>.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from lxmert.cli import main
from lxmert.errors import LxmertError

__all__ = ["Case", "Cli", "Env", "cli", "run_case", "check_table", "one_line", "exactly_one_line", "TINY", "sets"]

#: a model small enough for a step in milliseconds (the generated world's features are 16-d)
TINY = ["model.hidden_size=32", "model.num_attention_heads=2", "model.intermediate_size=64",
        "model.l_layers=1", "model.x_layers=1", "model.r_layers=1", "train.progress=false",
        "data.num_workers=0"]


def sets(*items: str) -> list[str]:
    """`--set` flags for recipe overrides."""
    out: list[str] = []
    for item in items:
        out += ["--set", item]
    return out


@dataclass(frozen=True)
class Case:
    name: str
    group: int
    run: Callable[["Env"], Any]
    expect: str
    check: Callable[["Env", Any], None] | None = None


@dataclass
class Env:
    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    world: Callable[[], Path]
    runs: Callable[[str], Path]

    def copy_world(self, name: str = "world") -> Path:
        """A private copy of the shared world, to damage."""
        target = self.tmp / name
        shutil.copytree(self.world(), target, symlinks=True)
        return target


@dataclass
class Cli:
    rc: int
    out: str
    err: str


def cli(*args: Any) -> Cli:
    """``lxmert ARGS`` in process, capturing its output."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            rc = exc.code if isinstance(exc.code, int) else 1
    return Cli(rc, out.getvalue(), err.getvalue())


def one_line(env: Any, result: Cli) -> None:
    """The CLI's refusal is a single line."""
    lines = [x for x in result.err.strip().splitlines() if not x.startswith("warning:")]
    assert len(lines) == 1, result.err


def exactly_one_line(env: Any, result: Cli) -> None:
    """The CLI's refusal is a single line, and nothing else is printed (not even a warning)."""
    assert len(result.err.strip().splitlines()) == 1, result.err


def check_table(cases: list[Case]) -> None:
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    for c in cases:
        assert re.match(r"(refused|handled): .", c.expect), c.name
        assert c.expect.startswith("refused") or c.check is not None, f"{c.name}: handled needs a check"


def run_case(case: Case, env: Any, after_refusal: Callable[[], None] | None = None) -> None:
    """Run `case` in `env`; `after_refusal()` asserts what a table checks after every
    refusal (e.g. that no temporary file is left), before the case's own `check`."""
    kind, _, what = case.expect.partition(": ")
    if kind == "handled":
        result = case.run(env)
        if isinstance(result, Cli):
            assert result.rc == 0, result.err
            assert "Traceback" not in result.err, result.err
        assert case.check is not None
        case.check(env, result)
        return
    try:
        result = case.run(env)
    except (LxmertError, ValueError, OSError) as err:  # the clear types; anything else fails the case
        message = str(err)
        result = err
    else:
        assert isinstance(result, Cli), f"accepted: {result!r}"
        assert result.rc != 0, f"accepted: {result.out}"
        assert "Traceback" not in result.err, result.err
        message = result.err
    assert re.search(what, message, flags=re.MULTILINE), f"message {message!r} does not match {what!r}"
    if after_refusal is not None:
        after_refusal()
    if case.check is not None:
        case.check(env, result)
