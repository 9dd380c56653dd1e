"""Issue 21, the command line and recipes: nonsense refused by key, errors as one line.

The table format is tests/support/faults.py's (and tests/faults/test_faults_features.py's). Group 7:
every recipe value out of its range (`--max-steps 0`, `hidden_size=0`, `l_layers=-1`,
`--save-every -1`, `max_grad_norm=nan`, ... one case per field) is refused at load time,
naming the key, before a run directory exists. Group 5: the CLI's last-resort handler
prints the package's errors, ValueError, KeyError, OSError and MemoryError as one line
(ENOSPC as "no space left on device" with the path); `--debug` keeps the traceback.
"""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path
from typing import Any

import pytest

from support.faults import TINY, Case, Cli, Env, check_table, cli, one_line, run_case, sets
from lxmert.errors import CheckpointError
from lxmert.training.recipe import load_recipe

# ---------------------------------------------------------------------------- helpers


def finetune(env: Env, *args: Any, task: str = "vqa") -> Cli:
    """`lxmert finetune TASK` on the shared world into env.tmp/run, tiny model (`args`
    after the recipe's, so that they win)."""
    return cli("finetune", task, "--data", env.world(), "--out", env.tmp / "run", "--config", f"demo-{task}",
               *sets(*TINY, "train.batch_size=8"), *args)


def no_run_dir(env: Env, result: Any) -> None:
    one_line(env, result)
    assert not (env.tmp / "run").exists(), "a refused run left its directory"


def refuse_set(*items: str) -> Any:
    return lambda env: finetune(env, *sets(*items))


def refuse_flag(*flags: str) -> Any:
    return lambda env: finetune(env, *flags)


def key(name: str, value: str) -> str:
    """The refusal's text: `<recipe>: name = value (...)`, as one line (`name` a regex)."""
    return rf"refused: ^lxmert finetune: error: \S+: .*{name} = {value} \("


# ---------------------------------------------------------------------------- group 7: recipes


def unset_max_steps(env: Env) -> Any:
    return load_recipe("demo-pretrain", ["train.max_steps=none"])


def legacy_recipe_json(env: Env) -> Any:
    """recipe.json of runs saved when max_steps 0 meant "epochs" still loads (evaluate reads it)."""
    data = load_recipe("demo-vqa").to_dict()
    data["train"]["max_steps"] = 0
    path = env.tmp / "recipe.json"
    path.write_text(json.dumps(data))
    return load_recipe(path)


def max_steps_trains_that_many(env: Env) -> Cli:
    return finetune(env, "--max-steps", "3", *sets("train.eval_every=0", "data.valid_limit=8"))


def check_three_steps(env: Env, result: Cli) -> None:
    steps = [json.loads(x)["step"] for x in (env.tmp / "run" / "metrics.jsonl").read_text().splitlines()
             if json.loads(x)["split"] == "train"]
    assert steps and steps[-1] == 3, steps
    assert json.loads((env.tmp / "run" / "recipe.json").read_text())["train"]["max_steps"] == 3


# ---------------------------------------------------------------------------- group 5: the handler


def api_raises(error: BaseException, command: str = "evaluate") -> Any:
    """`lxmert evaluate ...` whose API call fails with `error` (the handler's contract)."""
    def run(env: Env) -> Cli:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise error
        env.monkeypatch.setattr("lxmert.api.evaluate", fail)
        return cli("evaluate", "vqa", "--data", env.tmp, "--checkpoint", env.tmp, *(["--debug"] if command == "debug"
                                                                                    else []))
    return run


def debug_reraises(env: Env) -> Any:
    try:
        api_raises(CheckpointError("x.safetensors: damaged"), "debug")(env)
    except CheckpointError as err:
        return err
    pytest.fail("--debug did not re-raise (no traceback)")


def out_is_a_file(env: Env) -> Cli:
    (env.tmp / "run").write_text("precious")
    return finetune(env, "--max-steps", "2")


def file_untouched(env: Env, result: Cli) -> None:
    one_line(env, result)
    assert (env.tmp / "run").read_text() == "precious"


# ---------------------------------------------------------------------------- the table

_FIELDS: list[tuple[str, str, str]] = [
    # (override, the value as the message prints it, why it is nonsense); the key named is
    # the override's (optim.betas: the element's, optim.betas[1])
    ("data.train=[]", r"\[\]", "no training split"),
    ("data.features=[]", r"\[\]", "no feature store"),
    ("data.max_seq_length=1", "1", "no room for [CLS] and [SEP]"),
    ("data.eval_batch_size=-1", "-1", "negative batch"),
    ("data.num_workers=-1", "-1", "negative worker count"),
    ("data.train_limit=-1", "-1", "negative limit"),
    ("data.valid_limit=-1", "-1", "negative limit"),
    ("optim.lr=0", r"0\.0", "no learning"),
    ("optim.lr=-1e-4", r"-0\.0001", "negative rate"),
    ("optim.lr=inf", "inf", "infinite rate"),
    ("optim.weight_decay=-0.1", r"-0\.1", "negative decay"),
    ("optim.betas=[0.9, 1.0]", r"1\.0", "beta 1 never forgets"),
    ("optim.betas=[-0.1, 0.999]", r"-0\.1", "negative beta"),
    ("optim.eps=0", r"0\.0", "division by zero"),
    ("optim.warmup=1.5", r"1\.5", "warm-up beyond the run"),
    ("optim.max_grad_norm=nan", "nan", "NaN clipping"),
    ("optim.max_grad_norm=-1", r"-1\.0", "negative clipping"),
    ("train.batch_size=0", "0", "empty batch"),
    ("train.grad_accum=0", "0", "no micro-batch"),
    ("train.epochs=0", "0", "no epoch"),
    ("train.max_steps=0", "0", "zero steps meant 'full epochs'"),
    ("train.max_steps=-5", "-5", "negative steps"),
    ("train.save_every=-1", "-1", "negative interval"),
    ("train.keep_last=-1", "-1", "negative count"),
    ("train.log_every=0", "0", "division by zero"),
    ("train.eval_every=-1", "-1", "negative interval"),
    ('train.device=""', "''", "no device"),
    ("model.hidden_size=0", "0", "zero width"),
    ("model.hidden_size=abc", "'abc'", "not a number (was a raw TypeError)"),
    ("model.l_layers=-1", "-1", "negative layer count"),
    ("model.x_layers=-2", "-2", "negative layer count"),
    ("model.r_layers=1.5", r"1\.5", "fractional layer count"),
    ("model.num_attention_heads=0", "0", "no heads"),
    ("model.intermediate_size=-64", "-64", "negative width"),
    ("model.vocab_size=0", "0", "no vocabulary"),
    ("model.hidden_dropout_prob=1.5", r"1\.5", "a probability above 1"),
    ("model.attention_probs_dropout_prob=-0.1", r"-0\.1", "a negative probability"),
    ("model.layer_norm_eps=0", "0", "division by zero"),
    ("model.initializer_range=-0.02", r"-0\.02", "negative spread"),
    ("model.visual_loss_normalizer=inf", "inf", "infinite scale"),
    ("model.task_qa=1", "1", "a number for a switch"),
    ('model.hidden_act="swish"', "'swish'", "unknown activation"),
]

CASES: list[Case] = [
    *(Case(f"recipe {override} ({why})", 7, refuse_set(override),
           key(re.escape(override.split("=")[0]) + r"(\[\d\])?", value), no_run_dir)
      for override, value, why in _FIELDS),
    Case("--max-steps 0", 7, refuse_flag("--max-steps", "0"), key(r"train\.max_steps", "0") + ".*leave it unset",
         no_run_dir),
    Case("--max-steps -5", 7, refuse_flag("--max-steps", "-5"), key(r"train\.max_steps", "-5"), no_run_dir),
    Case("--save-every -1", 7, refuse_flag("--save-every", "-1"), key(r"train\.save_every", "-1"), no_run_dir),
    Case("--epochs 0", 7, refuse_flag("--epochs", "0"), key(r"train\.epochs", "0"), no_run_dir),
    Case("--batch-size 0", 7, lambda env: cli("finetune", "vqa", "--data", env.world(), "--out", env.tmp / "run",
                                              "--batch-size", "0"), key(r"train\.batch_size", "0"), no_run_dir),
    Case("--lr 0", 7, refuse_flag("--lr", "0"), key(r"optim\.lr", r"0\.0"), no_run_dir),
    Case("--grad-accum 0", 7, refuse_flag("--grad-accum", "0"), key(r"train\.grad_accum", "0"), no_run_dir),
    Case("--num-workers -1", 7, refuse_flag("--num-workers", "-1"), key(r"data\.num_workers", "-1"), no_run_dir),
    Case("hidden_size not a multiple of the heads", 7, refuse_set("model.hidden_size=31"),
         r"refused: model\.hidden_size 31 is not a multiple of model\.num_attention_heads 2", no_run_dir),
    Case("a task option out of range", 7, lambda env: cli(
        "pretrain", "--data", env.world(), "--out", env.tmp / "run", *sets("pretrain.word_mask_rate=1.5")),
        r"refused: pretrain\.word_mask_rate = 1\.5 \(a probability in \[0, 1\]\)", no_run_dir),
    Case("--adv-steps 0", 7, refuse_flag("--adv", "text", "--adv-steps", "0"),
         r"refused: ^lxmert finetune: error: \[adv\] section: .*steps", no_run_dir),
    Case("max_steps unset on the command line", 7, unset_max_steps,
         "handled: `--set train.max_steps=none` trains train.epochs",
         lambda env, r: None if r.train.max_steps is None and r.train.epochs == 1 else pytest.fail(str(r.train))),
    Case("recipe.json of an older run with max_steps 0", 7, legacy_recipe_json,
         "handled: read as 'train the epochs'",
         lambda env, r: None if r.train.max_steps is None else pytest.fail(str(r.train))),
    Case("--max-steps 3", 7, max_steps_trains_that_many, "handled: 3 optimiser updates, recorded",
         check_three_steps),
    # group 5: the last-resort handler, one line naming the file
    Case("--set model.hidden_size=abc", 5, refuse_set("model.hidden_size=abc"),
         key(r"model\.hidden_size", "'abc'") + r"expected an integer >= 1\)$", no_run_dir),
    Case("ENOSPC: says 'no space left on device' and the path", 5,
         api_raises(OSError(errno.ENOSPC, "No space left on device", "/data/m.json")),
         r"refused: ^lxmert evaluate: error: /data/m\.json: no space left on device$", one_line),
    Case("read-only file system", 5, api_raises(OSError(errno.EROFS, "Read-only file system", "/ro/m.json")),
         r"refused: ^lxmert evaluate: error: /ro/m\.json: Read-only file system$", one_line),
    Case("is a directory", 5, api_raises(IsADirectoryError(errno.EISDIR, "Is a directory", "/out")),
         r"refused: ^lxmert evaluate: error: /out: Is a directory$", one_line),
    Case("a rename between two paths", 5,
         api_raises(OSError(errno.EXDEV, "Invalid cross-device link", "/a/x.tmp", None, "/b/x")),
         r"refused: ^lxmert evaluate: error: /a/x\.tmp -> /b/x: Invalid cross-device link$", one_line),
    Case("KeyError: its message, not its repr", 5, api_raises(KeyError("image 'x' is not in the store s")),
         r"refused: ^lxmert evaluate: error: image 'x' is not in the store s$", one_line),
    Case("a multi-line message", 5, api_raises(CheckpointError("s: shape mismatch for 2 keys:\n  a: 1\n  b: 2")),
         r"refused: ^lxmert evaluate: error: s: shape mismatch for 2 keys:; a: 1; b: 2$", one_line),
    Case("MemoryError", 5, api_raises(MemoryError("Unable to allocate 59.6 GiB for an array with shape "
                                                  "(1, 1000000000, 16) and data type float32")),
         r"refused: ^lxmert evaluate: error: out of memory: Unable to allocate 59\.6 GiB", one_line),
    Case("--debug shows the traceback", 5, debug_reraises, "handled: the error is raised, not printed",
         lambda env, err: None if isinstance(err, CheckpointError) else pytest.fail(repr(err))),
    Case("--out is a file", 5, out_is_a_file, r"refused: ^lxmert finetune: error: \S+/run: (File exists|Not a dir)",
         file_untouched),
    Case("--out under a read-only file system", 5,
         lambda env: cli("finetune", "vqa", "--data", env.world(), "--out", "/sys/lxmert-fault-run", "--config",
                         "demo-vqa", "--max-steps", "2", *sets(*TINY)),
         r"refused: ^lxmert finetune: error: /sys/lxmert-fault-run\S*: "
         r"(Operation not permitted|Permission denied|Read-only file system)$", one_line),
    Case("--max-boxes 1e9", 5,
         lambda env: cli("features", "import", env.world() / "features" / "train_obj36.tsv", "--out",
                         env.tmp / "s", "--max-boxes", "1e9"),
         r"refused: argument --max-boxes: invalid int value: '1e9'",
         lambda env, r: None if not (env.tmp / "s").exists() else pytest.fail("store written")),
]


def test_case_table_is_well_formed():
    check_table(CASES)
    assert {f.split("=")[0] for f, _, _ in _FIELDS} >= {
        "train.max_steps", "train.save_every", "model.hidden_size", "model.l_layers", "optim.max_grad_norm"}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault_world, fault_runs) -> None:
    run_case(case, Env(tmp_path, monkeypatch, fault_world, fault_runs))
