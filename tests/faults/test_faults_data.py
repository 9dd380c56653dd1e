"""Issue 21, data files: ids that would miscount, errors that named no file.

The table format is tests/support/faults.py's. Group 3: a repeated question id (within a file or
across the files of a split), a VQA id of 2.9 or "3", a GQA id that is a number - refused
by the readers with the file, entry and id; NLVR2 identifiers are checked when read, so a
bad one fails before training, not at the evaluation after it. Group 7: a file that is not
UTF-8 or not JSON is named (split files, JSONL, vocab.txt, answer tables, recipes, model
configs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from support.faults import TINY, Case, Env, check_table, cli, one_line, run_case, sets
from lxmert.config import LxmertConfig
from lxmert.data import GQADataset, NLVR2Dataset, PretrainingDataset, VQADataset
from lxmert.data.classification import ClassificationDataset
from lxmert.text import AnswerTable, LxmertTokenizer
from lxmert.training.recipe import load_recipe

# ---------------------------------------------------------------------------- helpers


def entries(env: Env, task: str, split: str = "train", n: int = 6) -> list[dict]:
    return json.loads((env.world() / task / f"{split}.json").read_text())[:n]


def write(env: Env, name: str, data: Any) -> Path:
    path = env.tmp / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def vqa(*paths: Path) -> Any:
    def build(env: Env) -> Any:
        return VQADataset(list(paths), env.world() / "features" / "store",
                          answer_table=env.world() / "vqa" / "trainval_label2ans.json")
    return build


def vqa_with(change: Any, task: str = "vqa") -> Any:
    """The reader of `task` over the world's first train entries, `change(entries)` applied."""
    def run(env: Env) -> Any:
        data = entries(env, task)
        change(data)
        path = write(env, f"{task}.json", data)
        if task == "gqa":
            return GQADataset(path, env.world() / "features" / "store",
                              answer_table=env.world() / "gqa" / "trainval_label2ans.json")
        if task == "nlvr2":
            return NLVR2Dataset(path, env.world() / "features" / "store")
        return vqa(path)(env)
    return run


def setitem(index: int, key: str, value: Any) -> Any:
    def change(data: list[dict]) -> None:
        data[index][key] = value
    return change


def copy_id(src: int, dst: int, key: str = "question_id") -> Any:
    def change(data: list[dict]) -> None:
        data[dst][key] = data[src][key]
    return change


def across_files(env: Env) -> Any:
    data = entries(env, "vqa")
    a = write(env, "a.json", data[:3])
    b = write(env, "b.json", [dict(data[3], question_id=data[1]["question_id"])])
    return vqa(a, b)(env)


def classification_repeat(env: Env) -> Any:
    img = entries(env, "vqa")[0]["img_id"]
    lines = [json.dumps({"id": "m1", "img_id": img, "text": "a", "labels": 0}),
             json.dumps({"id": "m2", "img_id": img, "text": "b", "labels": 1}),
             json.dumps({"id": "m1", "img_id": img, "text": "c", "labels": 1})]
    path = write(env, "memes.jsonl", "\n".join(lines) + "\n")
    return ClassificationDataset(path, env.world() / "features" / "store")


def not_utf8(env: Env, name: str, head: bytes = b'[{"sent": "caf') -> Path:
    path = env.tmp / name
    path.write_bytes(head + b"\xff\xfe" + b'"}]')
    return path


def nlvr2_training_with(identifier: Any) -> Any:
    """`lxmert finetune nlvr2` whose training file holds one bad identifier: refused at
    set-up (before the first step), not by the evaluation after training."""
    def run(env: Env) -> Any:
        data = json.loads((env.world() / "nlvr2" / "train.json").read_text())
        data[5]["identifier"] = identifier
        path = write(env, "nlvr2-train.json", data)
        return cli("finetune", "nlvr2", "--data", env.world(), "--out", env.tmp / "run", "--config", "demo-nlvr2",
                   "--max-steps", "2", *sets(*TINY, "train.batch_size=8", f'data.train="{path}"'))
    return run


def no_run(env: Env, result: Any) -> None:
    one_line(env, result)
    assert not (env.tmp / "run").exists()


def damaged_vocab(env: Env) -> Any:
    world = env.copy_world()
    (world / "vocab.txt").write_bytes((world / "vocab.txt").read_bytes()[:5000] + b"\xc3\x28\n")
    return cli("finetune", "vqa", "--data", world, "--out", env.tmp / "run", "--config", "demo-vqa",
               "--max-steps", "2", *sets(*TINY))


# ---------------------------------------------------------------------------- the table

CASES: list[Case] = [
    # group 3: ids that would miscount
    Case("VQA: a question id repeated in a file", 3, vqa_with(copy_id(1, 4)),
         r"refused: \S+/vqa\.json: entry 4: question_id \d+ repeated \(first at \S+/vqa\.json: entry 1\)"),
    Case("VQA: a question id repeated across the files of a split", 3, across_files,
         r"refused: \S+/b\.json: entry 0: question_id \d+ repeated \(first at \S+/a\.json: entry 1\)"),
    Case("VQA: question_id 2.9", 3, vqa_with(setitem(2, "question_id", 2.9)),
         r"refused: \S+/vqa\.json: entry 2: question_id 2\.9 is not a valid int \(VQADataset question ids are "
         r"ints, read as written, never converted\)"),
    Case("VQA: question_id \"3\"", 3, vqa_with(setitem(2, "question_id", "3")),
         r"refused: \S+/vqa\.json: entry 2: question_id '3' is not a valid int"),
    Case("VQA: question_id true", 3, vqa_with(setitem(2, "question_id", True)),
         r"refused: \S+/vqa\.json: entry 2: question_id True is not a valid int"),
    Case("GQA: a numeric question id", 3, vqa_with(setitem(0, "question_id", 7), task="gqa"),
         r"refused: \S+/gqa\.json: entry 0: question_id 7 is not a valid str \(GQADataset question ids are strs"),
    Case("GQA: a question id repeated", 3, vqa_with(copy_id(0, 3), task="gqa"),
         r"refused: \S+/gqa\.json: entry 3: question_id '\w+' repeated \(first at \S+: entry 0\)"),
    Case("VQA: distinct integer ids", 3, vqa_with(lambda data: None),
         "handled: read, one example per question",
         lambda env, ds: None if len(set(ds.question_ids)) == len(ds) == 6 else pytest.fail(str(ds.question_ids))),
    Case("NLVR2: an identifier repeated", 3, vqa_with(copy_id(0, 2, "identifier"), task="nlvr2"),
         r"refused: \S+/nlvr2\.json: entry 2 \(identifier 'train-\d+-\d+-\d+'\): identifier repeated \(first at "
         r"\S+: entry 0"),
    Case("classification: an id repeated", 3, classification_repeat,
         r"refused: \S+/memes\.jsonl:3: id 'm1' repeated \(first at \S+/memes\.jsonl:1\)"),
    # group 7: NLVR2 identifiers checked when read, as the evaluator needs them
    Case("NLVR2: identifier not in the official form", 7, vqa_with(setitem(1, "identifier", "pair17"),
                                                                    task="nlvr2"),
         r"refused: \S+/nlvr2\.json: entry 1 \(identifier 'pair17'\): identifier 'pair17' is not "
         r"'<split>-<set>-<pair>-<sentence>'"),
    Case("NLVR2: identifier with three fields", 7, vqa_with(setitem(1, "identifier", "dev-850-2"), task="nlvr2"),
         r"refused: \S+/nlvr2\.json: entry 1 .*identifier 'dev-850-2' is not '<split>-<set>-<pair>-<sentence>'"),
    Case("NLVR2: a numeric identifier", 7, vqa_with(setitem(1, "identifier", 17), task="nlvr2"),
         r"refused: \S+/nlvr2\.json: entry 1 \(identifier 17\): identifier must be a string"),
    Case("NLVR2: official identifiers", 7, vqa_with(setitem(1, "identifier", "test1-0-1-0"), task="nlvr2"),
         "handled: read",
         lambda env, ds: None if "test1-0-1-0" in ds.identifiers else pytest.fail(str(ds.identifiers))),
    Case("NLVR2: a bad identifier refused before training", 7, nlvr2_training_with("dev-x-0-0"),
         r"refused: ^lxmert finetune: error: \S+/nlvr2-train\.json: entry 5 .*identifier 'dev-x-0-0' is not",
         no_run),
    # group 7: decode errors name the file
    Case("VQA split not UTF-8", 7, lambda env: vqa(not_utf8(env, "v.json"))(env),
         r"refused: \S+/v\.json: not valid JSON \('utf-8' codec can't decode"),
    Case("VQA split not JSON", 7, lambda env: vqa(write(env, "v.json", "[{"))(env),
         r"refused: \S+/v\.json: not valid JSON \("),
    Case("NLVR2 split not UTF-8", 7, lambda env: NLVR2Dataset(not_utf8(env, "n.json"),
                                                               env.world() / "features" / "store"),
         r"refused: \S+/n\.json: not valid JSON \('utf-8' codec"),
    Case("pre-training json not UTF-8", 7, lambda env: PretrainingDataset(
        [not_utf8(env, "p.json")], env.world() / "features" / "store", LxmertTokenizer.from_vocab(env.world()),
        AnswerTable.from_file(env.world() / "lxmert" / "all_ans.json")),
         r"refused: \S+/p\.json: not valid JSON \('utf-8' codec"),
    Case("JSONL line not UTF-8", 7, lambda env: ClassificationDataset(
        not_utf8(env, "c.jsonl", b'{"img_id": "x", "text": "ok"}\n{"img_id": "y", "text": "caf'),
        env.world() / "features" / "store"),
         r"refused: \S+/c\.jsonl:2: not UTF-8 text"),
    Case("vocab.txt not UTF-8", 7, lambda env: LxmertTokenizer.from_vocab(not_utf8(env, "vocab.txt", b"[PAD]\n")),
         r"refused: \S+/vocab\.txt: not UTF-8 text \("),
    Case("the data root's vocab.txt damaged, through finetune", 7, damaged_vocab,
         r"refused: ^lxmert finetune: error: \S+/world/vocab\.txt: not UTF-8 text", no_run),
    Case("answer table not JSON", 7, lambda env: AnswerTable.from_file(write(env, "ans.json", "[\"a\", ")),
         r"refused: \S+/ans\.json: not valid JSON"),
    Case("answer table not UTF-8", 7, lambda env: AnswerTable.from_file(not_utf8(env, "ans.json", b'["caf')),
         r"refused: \S+/ans\.json: not valid JSON \('utf-8' codec"),
    Case("answer table with a repeated answer", 7, lambda env: AnswerTable.from_file(
        write(env, "ans.json", ["yes", "no", "yes"])),
         r"refused: \S+/ans\.json: duplicate answer 'yes' at 0 and 2"),
    Case("answer table missing", 7, lambda env: AnswerTable.from_file(env.tmp / "nope.json"),
         r"refused: answer table not found: \S+/nope\.json"),
    Case("recipe TOML not valid", 7, lambda env: load_recipe(write(env, "r.toml", "[train\nepochs = 2\n")),
         r"refused: \S+/r\.toml: cannot parse"),
    Case("recipe not UTF-8", 7, lambda env: load_recipe(not_utf8(env, "r.toml", b'name = "caf')),
         r"refused: \S+/r\.toml: cannot parse \('utf-8' codec"),
    Case("recipe.json not JSON", 7, lambda env: load_recipe(write(env, "recipe.json", "{\"task\": ")),
         r"refused: \S+/recipe\.json: cannot parse"),
    Case("model config.json not UTF-8", 7, lambda env: LxmertConfig.from_json_file(
        not_utf8(env, "config.json", b'{"hidden_act": "gel')),
         r"refused: \S+/config\.json: not valid JSON \('utf-8' codec"),
]


def test_case_table_is_well_formed():
    check_table(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault_world, fault_runs) -> None:
    run_case(case, Env(tmp_path, monkeypatch, fault_world, fault_runs))
