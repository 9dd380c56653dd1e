"""A plain wheel install works as a checkout does (issue: the wheel found no recipe).

Builds the wheel, installs it with the pinned CPU torch into a fresh virtual environment,
and runs the commands a new user runs first from a directory outside the checkout:
`lxmert --version`, `lxmert recipes`, `lxmert quickstart --tiny`, and `lxmert convert --to
hf`, whose output `transformers` (`AutoTokenizer`, `AutoConfig`,
`LxmertForQuestionAnswering`) must load with our token ids, our answers and our logits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TORCH_PIN = os.environ.get("LXMERT_TEST_TORCH", "torch==2.13.0")  # as the Makefile pins it


def _run(cmd: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel (and the pinned torch) installed; returns its bin/."""
    base = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(base / "dist"), str(ROOT)], cwd=base)
    wheels = list((base / "dist").glob("lxmert-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as whl:
        names = set(whl.namelist())
    for required in ("lxmert/recipes/vqa.toml", "lxmert/recipes/demo-pretrain-ground.toml",
                     "lxmert/resources/vocab.txt", "lxmert/resources/answers/vqa_trainval_label2ans.json"):
        assert required in names, f"{required} is not package data"
    _run([sys.executable, "-m", "venv", str(base / "venv")], cwd=base)
    pip = [str(base / "venv" / "bin" / "python"), "-m", "pip", "install", "-q"]
    _run([*pip, TORCH_PIN], cwd=base)
    _run([*pip, str(wheels[0])], cwd=base)
    return base / "venv" / "bin"


@pytest.mark.slow
def test_wheel_runs_the_first_commands_and_exports_for_transformers(installed, tmp_path):
    transformers = pytest.importorskip("transformers")
    lxmert = str(installed / "lxmert")
    assert _run([lxmert, "--version"], cwd=tmp_path).stdout.startswith("lxmert ")
    listed = _run([lxmert, "recipes"], cwd=tmp_path).stdout
    assert "lxr955-pretrain" in listed and "demo-pretrain-ground" in listed
    # the package found by the venv is the installed one, not this checkout
    where = _run([str(installed / "python"), "-c", "import lxmert; print(lxmert.__file__)"], cwd=tmp_path).stdout
    assert str(ROOT) not in where and "site-packages" in where
    _run([lxmert, "quickstart", "--out", str(tmp_path / "demo"), "--tiny", "--no-progress"], cwd=tmp_path)
    assert set(json.loads((tmp_path / "demo" / "report.json").read_text())) == {"vqa", "gqa", "nlvr2"}
    best = tmp_path / "demo" / "vqa" / "pretrained" / "best"
    _run([lxmert, "convert", str(best), str(tmp_path / "hf"), "--to", "hf"], cwd=tmp_path)

    from lxmert import LxmertForQuestionAnswering as Ours
    from lxmert.text import LxmertTokenizer

    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    ours_tok = LxmertTokenizer.from_vocab(best)
    for text in ("what color is the block?", "How many red objects are left of the cube?",
                 "is there a [MASK] here", "Ünïcödé spaces\tand\ttabs"):
        assert tokenizer(text)["input_ids"] == ours_tok.encode(text, max_length=None), text
    answers = json.loads((best / "answers.json").read_text())
    config = transformers.AutoConfig.from_pretrained(tmp_path / "hf")
    assert [config.id2label[i] for i in range(len(answers))] == answers
    hf = transformers.LxmertForQuestionAnswering.from_pretrained(tmp_path / "hf").eval()
    ours = Ours.from_pretrained(best).eval()
    back = Ours.from_pretrained(tmp_path / "hf")  # and the export reads back with its answers
    assert back.answers == answers
    enc = tokenizer(["what color is the block?"], return_tensors="pt")
    feats = torch.rand(1, 6, ours.config.visual_feat_dim)
    boxes = torch.rand(1, 6, 4)
    with torch.no_grad():
        a = hf(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], visual_feats=feats,
               visual_pos=boxes).question_answering_score
        b = ours(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], visual_feats=feats,
                 visual_pos=boxes).question_answering_score
    assert (a - b).abs().max() < 1e-5
