"""The house rules, checked on the source (docs/architecture.md).

- imports point one way: no import cycle among the package's modules, counting imports
  inside functions and under `TYPE_CHECKING`;
- private names (`_x`) stay inside their module: neither the package nor the tests
  import one from another module;
- forwards take explicit arguments: no `**kwargs` catch-all that swallows a misspelt name;
- no process-global state is changed (umask, global RNG seeds);
- the task registry is the one list of tasks: the CLI's choices, the recipes and the
  registry agree.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest
import torch

SRC = Path(__file__).resolve().parents[2] / "src"
TESTS = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "lxmert").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str:
    while name and name not in MODULES:
        name = name.rsplit(".", 1)[0] if "." in name else ""
    return name


def _imports(module: str, path: Path) -> list[tuple[str, str]]:
    """(imported module, imported name or "") of every import statement, wherever it is."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(_resolve(a.name), "") for a in node.names if a.name.startswith("lxmert")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if not source.startswith("lxmert"):
                continue
            for alias in node.names:
                full = f"{source}.{alias.name}"
                out.append((full if full in MODULES else _resolve(source), alias.name))
    return out


def test_no_import_cycle_even_inside_functions():
    graph = {m: {t for t, _ in _imports(m, p) if t and t != m} for m, p in MODULES.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for module in graph:
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


def _private_imports(files: dict[str, Path]) -> list[str]:
    bad = []
    for module, path in files.items():
        for target, name in _imports(module, path):
            if name.startswith("_") and not name.startswith("__") and target != module:
                bad.append(f"{path.name}: {name} from {target}")
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"\blxmert(?:\.\w+)+\._[a-z]\w*", text):  # a dotted private name of the package
            bad.append(f"{path.name}: {match.group(0)}")
    return bad


def test_private_names_stay_in_their_module():
    tests = {f"tests.{p.relative_to(TESTS).with_suffix('').as_posix().replace('/', '.')}": p for p in TESTS.rglob("*.py")}
    assert not _private_imports(MODULES), _private_imports(MODULES)
    assert not _private_imports(tests), _private_imports(tests)


def test_forwards_take_no_catch_all():
    import lxmert.modeling as modeling

    checked = 0
    for module_name, path in MODULES.items():
        if not module_name.startswith("lxmert.modeling"):
            continue
        module = __import__(module_name, fromlist=["_"])
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, torch.nn.Module) and cls.__module__ == module_name and "forward" in vars(cls):
                kinds = {p.kind for p in inspect.signature(cls.forward).parameters.values()}
                assert inspect.Parameter.VAR_KEYWORD not in kinds, f"{cls.__name__}.forward takes **kwargs"
                checked += 1
    assert checked >= 10 and modeling.LxmertForQuestionAnswering


def test_no_process_global_state_changes():
    pattern = re.compile(r"\bos\.umask\(|\bnp\.random\.seed\(|\bnumpy\.random\.seed\(|(?<![\w.])random\.seed\(")
    bad = [f"{p.relative_to(SRC)}:{i}" for p in MODULES.values()
           for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert not bad, bad


def test_the_task_registry_is_the_one_list_of_tasks():
    from lxmert.cli import build_parser
    from lxmert.tasks import PRETRAINING_TASK, get_task, task_names
    from lxmert.training.recipe import load_recipe, recipe_names

    names = task_names()
    assert {"pretrain", "vqa", "gqa", "nlvr2", "aokvqa", "vizwiz", "classify"} <= set(names)
    for name in names:
        task = get_task(name)
        assert task.name == name
        assert task.default_recipe in recipe_names(), f"{name}: no packaged recipe {task.default_recipe!r}"
        assert load_recipe(task.default_recipe).task == name
    parser = build_parser()
    for name in names:  # every task is a choice of the commands, read from the registry
        assert parser.parse_args(["evaluate", name, "--data", "d", "--checkpoint", "c"]).task == name
        if name != PRETRAINING_TASK:
            assert parser.parse_args(["finetune", name, "--data", "d", "--out", "o"]).task == name
    with pytest.raises(SystemExit):
        parser.parse_args(["finetune", PRETRAINING_TASK, "--data", "d", "--out", "o"])  # `lxmert pretrain` runs it


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("lxmert.checkpoint")))
def test_checkpoint_formats_import_no_model_class(module):
    targets = {t for t, _ in _imports(module, MODULES[module])}
    assert not {t for t in targets if t.startswith(("lxmert.modeling", "lxmert.tasks", "lxmert.training"))}, targets
