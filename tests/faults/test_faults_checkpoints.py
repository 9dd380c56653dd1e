"""Issue 21, checkpoints: none loads silently as another model; `convert` writes nowhere it
should not.

The table format is tests/support/faults.py's. Group 2: a directory without config.json, a
config whose layer counts or sizes disagree with the weights, a checkpoint of another task
or class, an authors' `.pth` of a width whose head count cannot be read off the weights -
each refused naming the file (strict loads), while asking for fresh heads (strict=False)
works and says so. Group 1: `lxmert convert` refuses a non-empty directory unless
`--force`. Group 9: what `convert` writes keeps the answer rows' names.
"""

from __future__ import annotations

import json
import logging
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from support.faults import Case, Cli, Env, check_table, cli, one_line, run_case
from lxmert.modeling import (
    LxmertForNLVR2,
    LxmertForPreTraining,
    LxmertForQuestionAnswering,
    LxmertPreTrainedModel,
)

# ---------------------------------------------------------------------------- helpers


def copy_best(env: Env, name: str = "ckpt") -> Path:
    """A private copy of the shared VQA run's best/ (32 wide, 2 heads, 1 layer each)."""
    target = env.tmp / name
    shutil.copytree(env.runs("vqa") / "best", target)
    return target


def edit_config(**changes: Any) -> Any:
    def run(env: Env) -> Any:
        ckpt = copy_best(env)
        config = json.loads((ckpt / "config.json").read_text())
        config.update(changes)
        (ckpt / "config.json").write_text(json.dumps(config))
        return LxmertForQuestionAnswering.from_pretrained(ckpt)
    return run


def without_config(env: Env) -> Any:
    ckpt = copy_best(env)
    (ckpt / "config.json").unlink()
    return LxmertPreTrainedModel.from_pretrained(ckpt)


def inputs(config: Any) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"input_ids": torch.randint(0, config.vocab_size, (2, 6), generator=g),
            "visual_feats": torch.randn(2, 5, config.visual_feat_dim, generator=g),
            "visual_pos": torch.rand(2, 5, 4, generator=g)}


def same_outputs(a: Any, b: Any) -> None:
    with torch.no_grad():
        x = inputs(a.config)
        torch.testing.assert_close(b.eval()(**x).question_answering_score, a.eval()(**x).question_answering_score)


def pth_of(env: Env) -> Path:
    path = env.tmp / "model.pth"
    assert cli("convert", copy_best(env), path, "--to", "original").rc == 0
    return path


def pth_with_heads(env: Env) -> Any:
    path = pth_of(env)
    assert cli("convert", path, env.tmp / "back", "--num-attention-heads", "2").rc == 0
    return LxmertForQuestionAnswering.from_pretrained(env.tmp / "back")


def check_pth_round_trip(env: Env, model: Any) -> None:
    source = LxmertForQuestionAnswering.from_pretrained(env.tmp / "ckpt")
    assert model.config.num_attention_heads == 2 and model.answers == source.answers
    same_outputs(source, model)


def strict_false_fresh_head(env: Env) -> Any:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("lxmert.modeling.base")
    logger.addHandler(handler)
    try:
        model = LxmertForPreTraining.from_pretrained(copy_best(env), strict=False)
    finally:
        logger.removeHandler(handler)
    return model, [r.getMessage() for r in records]


def check_fresh_head(env: Env, result: Any) -> None:
    model, messages = result
    assert isinstance(model, LxmertForPreTraining)
    assert any("heads not in the checkpoint: cls.predictions, cls.seq_relationship, obj_predict_head" in m for m in messages), messages


def recorded_class(env: Env) -> Any:
    return LxmertPreTrainedModel.from_pretrained(copy_best(env))


def malicious_pickle(env: Env) -> Any:
    class Boom:
        def __reduce__(self) -> Any:
            return (Path.write_text, (env.tmp / "pwned", "ran"))

    path = env.tmp / "model.pth"
    path.write_bytes(pickle.dumps({"lxmert.embeddings.word_embeddings.weight": Boom()}, protocol=2))
    return LxmertPreTrainedModel.from_pretrained(path)


def truncated_weights(env: Env) -> Any:
    ckpt = copy_best(env)
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[: len(data) // 2])
    return LxmertForQuestionAnswering.from_pretrained(ckpt)


def evaluate_as(task: str, *extra: str, kind: str = "vqa") -> Any:
    return lambda env: cli("evaluate", task, "--data", env.world(), "--checkpoint", env.runs(kind) / (
        "best" if kind == "vqa" else "last"), *extra)


# ---------------------------------------------------------------------------- convert


def unrelated_dir(env: Env) -> Path:
    out = env.tmp / "out"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    return out


def untouched(env: Env, result: Any) -> None:
    one_line(env, result)
    assert sorted(p.name for p in (env.tmp / "out").iterdir()) == ["notes.txt"]
    assert (env.tmp / "out" / "notes.txt").read_text() == "precious"


def converted_hf(env: Env) -> Cli:
    return cli("convert", copy_best(env), env.tmp / "hf", "--to", "hf")


def check_hf(env: Env, result: Cli) -> None:
    source = json.loads((env.tmp / "ckpt" / "answers.json").read_text())
    assert json.loads((env.tmp / "hf" / "answers.json").read_text()) == source
    config = json.loads((env.tmp / "hf" / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(len(source))] == source
    same_outputs(LxmertForQuestionAnswering.from_pretrained(env.tmp / "ckpt"),
                 LxmertForQuestionAnswering.from_pretrained(env.tmp / "hf"))


def check_pth_answers(env: Env, result: Path) -> None:
    source = json.loads((env.tmp / "ckpt" / "answers.json").read_text())
    assert json.loads((env.tmp / "model.answers.json").read_text()) == source


# ---------------------------------------------------------------------------- the table

CASES: list[Case] = [
    # group 2: checkpoints that loaded silently as another model
    Case("checkpoint directory without config.json", 2, without_config,
         r"refused: \S+/ckpt: no config\.json beside model\.safetensors; a checkpoint directory needs its config"),
    Case("without config.json, through evaluate", 2, lambda env: cli(
        "evaluate", "vqa", "--data", env.world(), "--checkpoint", (without_config_dir(env))),
        r"refused: ^lxmert evaluate: error: \S+/ckpt: no config\.json", one_line),
    Case("config.json with fewer layers than the weights", 2, edit_config(l_layers=0),
         r"refused: \S+/ckpt: the encoder does not match the model's config: \d+ weights the config has no place "
         r"for \(e\.g\. \['lxmert\.encoder\.layer\.0\."),
    Case("config.json with more layers than the weights", 2, edit_config(x_layers=2),
         r"refused: \S+/ckpt: the encoder does not match the model's config: \d+ weights missing "
         r"\(e\.g\. \['lxmert\.encoder\.x_layers\.1\."),
    Case("config.json with another width", 2, edit_config(hidden_size=64, intermediate_size=128),
         r"refused: \S+/ckpt: shape mismatch for \d+ keys \(another architecture\?\)"),
    Case("config.json with a bad value", 2, edit_config(num_attention_heads=0),
         r"refused: \S+/ckpt/config\.json: LxmertConfig: num_attention_heads = 0 \(expected an integer >= 1\)"),
    Case("evaluate nlvr2 on a VQA checkpoint", 2, evaluate_as("nlvr2"),
         r"refused: ^lxmert evaluate: error: \S+/best: its recipe \(\S+\) is for task 'vqa', not 'nlvr2'", one_line),
    Case("evaluate nlvr2 on a VQA checkpoint, nlvr2 recipe given", 2,
         evaluate_as("nlvr2", "--config", "demo-nlvr2"),
         r"refused: ^lxmert evaluate: error: \S+/best: holds a LxmertForQuestionAnswering, not a LxmertForNLVR2 "
         r"\(its heads: answer_head\)", one_line),
    Case("evaluate vqa on a pre-training checkpoint", 2,
         evaluate_as("vqa", "--config", "demo-vqa", kind="pretrain"),
         r"refused: ^lxmert evaluate: error: \S+: holds a LxmertForPreTraining, not a LxmertForQuestionAnswering",
         one_line),
    Case("strict load of a VQA checkpoint as an NLVR2 model", 2,
         lambda env: LxmertForNLVR2.from_pretrained(copy_best(env)),
         r"refused: holds a LxmertForQuestionAnswering, not a LxmertForNLVR2.*pass strict=False"),
    Case("strict=False: heads the checkpoint lacks start fresh", 2, strict_false_fresh_head,
         "handled: loads, and a warning names the fresh heads", check_fresh_head),
    Case("the class recorded in the weights", 2, recorded_class, "handled: loads as the class that saved it",
         lambda env, m: None if type(m) is LxmertForQuestionAnswering and m.answers else pytest.fail(repr(m))),
    Case(".pth of a 32-wide model without a head count", 2,
         lambda env: cli("convert", pth_of(env), env.tmp / "back"),
         r"refused: ^lxmert convert: error: \S+/model\.pth: no config\.json, and the head count cannot be read "
         r"from the weights of a 32-wide model; give it", one_line),
    Case(".pth with the head count given", 2, pth_with_heads,
         "handled: the same model (outputs and answers) as the source", check_pth_round_trip),
    Case("a pickle that would run code", 2, malicious_pickle,
         r"refused: \S+/model\.pth: refused or unreadable\. Checkpoints are loaded with weights_only=True",
         lambda env, err: None if not (env.tmp / "pwned").exists() else pytest.fail("the pickle ran code")),
    Case("truncated weights", 2, truncated_weights,
         r"refused: \S+/model\.safetensors: not a readable safetensors file"),
    # group 1: convert into other directories
    Case("convert into a non-empty unrelated directory", 1,
         lambda env: cli("convert", copy_best(env), unrelated_dir(env)),
         r"refused: ^lxmert convert: error: \S+/out: not empty; choose a new directory or pass --force$", untouched),
    Case("convert --to original onto an existing file", 1, lambda env: (
        (env.tmp / "out.pth").write_text("precious"), cli("convert", copy_best(env), env.tmp / "out.pth",
                                                          "--to", "original"))[1],
         r"refused: ^lxmert convert: error: \S+/out\.pth: exists; pass --force to replace it$",
         lambda env, r: None if (env.tmp / "out.pth").read_text() == "precious" else pytest.fail("replaced")),
    Case("convert into an empty directory", 1, lambda env: (
        (env.tmp / "out").mkdir(), cli("convert", copy_best(env), env.tmp / "out"))[1],
         "handled: written", lambda env, r: LxmertForQuestionAnswering.from_pretrained(env.tmp / "out")),
    Case("convert --force into a non-empty directory", 1,
         lambda env: cli("convert", copy_best(env), unrelated_dir(env), "--force"),
         "handled: written beside the other files",
         lambda env, r: (LxmertForQuestionAnswering.from_pretrained(env.tmp / "out"),
                         (env.tmp / "out" / "notes.txt").read_text() == "precious" or pytest.fail("removed"))),
    # group 9: what convert writes keeps the answer rows' names
    Case("convert --to hf keeps the answers", 9, converted_hf,
         "handled: answers.json and id2label, the same outputs", check_hf),
    Case("convert --to original keeps the answers beside the .pth", 9, pth_of,
         "handled: model.answers.json", check_pth_answers),
]


def without_config_dir(env: Env) -> Path:
    ckpt = copy_best(env)
    (ckpt / "config.json").unlink()
    return ckpt


def test_case_table_is_well_formed():
    check_table(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault_world, fault_runs) -> None:
    run_case(case, Env(tmp_path, monkeypatch, fault_world, fault_runs))
