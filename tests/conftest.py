import os
import tempfile
from pathlib import Path

import pytest
import torch

# Helpers and CI share 2 cores: keep each test process to what it needs.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
# The tokenised-split cache of the runs the tests make goes to a temporary directory, not
# the user's ~/.cache (subprocesses inherit it).
os.environ.setdefault("LXMERT_CACHE_DIR", tempfile.mkdtemp(prefix="lxmert-test-cache-"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def fault_world(tmp_path_factory):
    """A small generated world shared by the fault tables (read-only: cases copy it to
    damage it); made on first use."""
    made: list[Path] = []

    def get() -> Path:
        if not made:
            from lxmert.data.synth import SynthConfig, generate_world

            out = tmp_path_factory.mktemp("fault-world")
            generate_world(out, SynthConfig(images=40, feat_dim=16, seed=3, test_fraction=0.25),
                           build_store=True, progress=False)
            made.append(out)
        return made[0]

    return get


@pytest.fixture(scope="session")
def fault_runs(tmp_path_factory, fault_world):
    """Short training runs on the fault world, made on first use and shared (read-only):
    `get("vqa")` a fine-tuning run with best/ and checkpoints, `get("pretrain")` a
    pre-training run."""
    made: dict[str, Path] = {}
    tiny = ["model.hidden_size=32", "model.num_attention_heads=2", "model.intermediate_size=64",
            "model.l_layers=1", "model.x_layers=1", "model.r_layers=1", "train.progress=false",
            "data.num_workers=0", "data.valid_limit=16", "train.eval_every=2"]

    def get(kind: str) -> Path:
        if kind not in made:
            import contextlib
            import io

            from lxmert.cli import main

            out = tmp_path_factory.mktemp(f"fault-run-{kind}") / "run"
            command = (["pretrain", "--config", "demo-pretrain"] if kind == "pretrain"
                       else ["finetune", kind, "--config", f"demo-{kind}"])
            args = [*command, "--data", str(fault_world()), "--out", str(out), "--max-steps", "4",
                    "--batch-size", "8"]
            for item in tiny:
                args += ["--set", item]
            with contextlib.redirect_stdout(io.StringIO()):
                assert main(args) == 0
            made[kind] = out
        return made[kind]

    return get


# ---------------------------------------------------------------------------- fault tables
# Every `test_case[...]` of tests/faults/test_faults_*.py is one case of issue 21's list; the
# summary line counts those that ran, so the figure "N cases, all refused clearly or
# handled" comes from the suite itself.

_FAULT_RESULTS: dict[str, tuple[str, int | None]] = {}


def pytest_configure(config):
    config.addinivalue_line("markers", "fault_case: one case of a fault table (tests/faults/test_faults_*.py)")


def pytest_collection_modifyitems(items):
    for item in items:
        callspec = getattr(item, "callspec", None)
        case = callspec.params.get("case") if callspec is not None else None
        if item.module.__name__.startswith("test_faults_") and hasattr(case, "expect"):
            item.add_marker("fault_case")
            item.user_properties.append(("fault_group", getattr(case, "group", None)))


def pytest_runtest_logreport(report):
    if "fault_case" not in report.keywords:
        return
    if report.when == "call" or report.outcome != "passed":
        group = dict(report.user_properties).get("fault_group")
        previous = _FAULT_RESULTS.get(report.nodeid, ("passed", group))[0]
        outcome = report.outcome if previous == "passed" else previous
        _FAULT_RESULTS[report.nodeid] = (outcome, group)


def pytest_terminal_summary(terminalreporter):
    if not _FAULT_RESULTS:
        return
    total = len(_FAULT_RESULTS)
    bad = sorted(k for k, (outcome, _) in _FAULT_RESULTS.items() if outcome != "passed")
    groups: dict[int, int] = {}
    for _, group in _FAULT_RESULTS.values():
        if group is not None:
            groups[group] = groups.get(group, 0) + 1
    per_group = ", ".join(f"group {g}: {n}" for g, n in sorted(groups.items()))
    if bad:
        line = f"{total} fault cases: {len(bad)} NOT refused clearly or handled: " + ", ".join(bad)
    else:
        line = f"{total} fault cases: all refused clearly or handled ({per_group})"
    terminalreporter.write_sep("-", "issue 21 fault tables")
    terminalreporter.write_line(line)
