"""What a new user meets first: the commands' help, flags, messages and the demo world's next steps.

Each test pins one finding of a new-user trial (issue 16): a flag abbreviation that silently
meant another flag, `lxmert ask` running the detector before finding the model unusable,
evaluation outside the run directory falling back to wrong defaults, dropped answers
reported quietly, `inspect` mislabelling our own layout, a BrokenPipe traceback, the
top-level help importing torch.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lxmert.cli import main
from lxmert.data.synth import SynthConfig, generate_world

SMALL = ["--set", "model.hidden_size=32", "--set", "model.num_attention_heads=2",
         "--set", "model.intermediate_size=64", "--set", "model.l_layers=1", "--set", "model.x_layers=1",
         "--set", "model.r_layers=1", "--no-progress", "--batch-size", "8"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(out, SynthConfig(images=60, feat_dim=16, seed=5), build_store=True, progress=False)
    return out


@pytest.fixture(scope="module")
def vqa_run(world, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "vqa"
    assert main(["finetune", "vqa", "--data", str(world), "--out", str(run), "--config", "demo-vqa",
                 "--max-steps", "3", *SMALL]) == 0
    return run


def _lxmert(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lxmert", *args], capture_output=True, text=True, cwd=cwd)


def test_top_level_help_imports_no_torch_and_lists_every_task():
    code = ("import sys, lxmert.cli; p = lxmert.cli.build_parser(); "
            "print('torch' in sys.modules); p.parse_args(['finetune', '--help'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    first, rest = out.stdout.split("\n", 1)
    assert first == "False", "building the parser imported torch"
    for task in ("vqa", "gqa", "nlvr2", "aokvqa", "vizwiz", "classify"):
        assert task in rest
    assert "default None" not in rest  # --config names what it falls back to


def test_version_and_recipes():
    assert _lxmert("--version").stdout.startswith("lxmert ")
    listed = _lxmert("recipes").stdout
    assert "lxr955-pretrain" in listed and "task vqa" in listed
    assert "[train]" in _lxmert("recipes", "vqa").stdout


def test_abbreviated_flags_are_refused(capsys):
    with pytest.raises(SystemExit):
        main(["ask", "x.jpg", "q", "--model", "m", "--random-init"])
    assert "unrecognized arguments: --random-init" in capsys.readouterr().err


def test_ask_checks_the_model_before_running_the_detector(vqa_run, tmp_path, monkeypatch):
    from PIL import Image

    from lxmert.detector import FeatureExtractor

    image = tmp_path / "img.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(image)

    def no_detection(self, *args, **kwargs):
        raise AssertionError("the detector ran before the model was checked")

    monkeypatch.setattr(FeatureExtractor, "extract", no_detection)
    assert main(["ask", str(image), "what colour?", "--model", str(vqa_run / "best"), "--random-init-detector"]) == 1


def test_evaluate_a_checkpoint_moved_out_of_its_run(vqa_run, world, tmp_path, capsys):
    assert main(["evaluate", "vqa", "--data", str(world), "--checkpoint", str(vqa_run / "best"),
                 "--out", str(tmp_path / "in_place.json")]) == 0
    moved = tmp_path / "elsewhere" / "best"
    shutil.copytree(vqa_run / "best", moved)
    assert (moved / "recipe.json").is_file()  # the checkpoint carries its settings
    assert main(["evaluate", "vqa", "--data", str(world), "--checkpoint", str(moved),
                 "--out", str(tmp_path / "moved.json")]) == 0
    assert json.loads((tmp_path / "moved.json").read_text()) == json.loads((tmp_path / "in_place.json").read_text())
    # without its recipe, the command says so and which recipe it uses instead
    (moved / "recipe.json").unlink()
    capsys.readouterr()
    out = _lxmert("evaluate", "vqa", "--data", str(world), "--checkpoint", str(moved))
    assert "carries no recipe.json" in out.stderr and "'vqa'" in out.stderr


def test_dropped_answers_are_reported_with_counts(world, tmp_path, capsys):
    assert main(["finetune", "vqa", "--data", str(world), "--out", str(tmp_path / "r"), "--config", "demo-vqa",
                 "--set", "model.answers=\"vqa\"", "--max-steps", "1", *SMALL]) == 0
    err = capsys.readouterr().out
    assert "training label answers are not in the answer table (3129 answers) and are dropped" in err


def test_inspect_names_our_layout_reads_int8_and_survives_a_closed_pipe(vqa_run, tmp_path):
    info = json.loads(_lxmert("inspect", str(vqa_run / "best"), "--json").stdout)
    assert info["layout"] == "lxmert" and info["model_class"] == "LxmertForQuestionAnswering"
    assert main(["quantize", str(vqa_run / "best"), str(tmp_path / "int8")]) == 0
    info = json.loads(_lxmert("inspect", str(tmp_path / "int8"), "--json").stdout)
    assert info["layout"] == "lxmert-int8" and "answer_head" in info["heads"]
    assert (tmp_path / "int8" / "recipe.json").is_file()  # evaluation settings travel with the copy
    piped = subprocess.run(f"{sys.executable} -m lxmert inspect {vqa_run / 'best'} | head -1", shell=True,
                           capture_output=True, text=True)
    assert "Traceback" not in piped.stderr and piped.stdout.strip()


def test_pruned_copy_does_not_keep_the_sources_scores(vqa_run, tmp_path):
    assert (vqa_run / "best" / "eval.json").is_file()
    assert main(["prune", str(vqa_run / "best"), "--sparsity", "0.5", "--out", str(tmp_path / "pruned")]) == 0
    assert not (tmp_path / "pruned" / "eval.json").exists()
    assert (tmp_path / "pruned" / "recipe.json").is_file()


def test_inference_commands_take_threads(world, vqa_run, tmp_path):
    assert main(["evaluate", "vqa", "--data", str(world), "--checkpoint", str(vqa_run / "best"),
                 "--threads", "1"]) == 0
    assert main(["predict", "vqa", "--data", str(world), "--checkpoint", str(vqa_run / "best"),
                 "--threads", "1", "--out", str(tmp_path / "p.json")]) == 0
    with pytest.raises(SystemExit):
        main(["evaluate", "vqa", "--data", str(world), "--checkpoint", str(vqa_run / "best"), "--threads", "x"])


def test_split_holds_out_whole_images(world, tmp_path):
    assert main(["split", str(world / "vqa" / "train.json"), "--valid-fraction", "0.25",
                 "--out-dir", str(tmp_path)]) == 0
    fit = json.loads((tmp_path / "train.fit.json").read_text())
    held = json.loads((tmp_path / "train.held.json").read_text())
    assert not {e["img_id"] for e in fit} & {e["img_id"] for e in held}
    assert len(fit) + len(held) == len(json.loads((world / "vqa" / "train.json").read_text()))
    again = tmp_path / "again"
    assert main(["split", str(world / "vqa" / "train.json"), "--valid-fraction", "0.25", "--out-dir", str(again)]) == 0
    assert (again / "train.held.json").read_bytes() == (tmp_path / "train.held.json").read_bytes()


def test_next_steps_on_the_demo_world_as_the_readme_gives_them(world, tmp_path):
    """The README's "next steps" block: fine-tune from a pre-trained run of the world,
    evaluate, predict, plot; each one command."""
    pre = tmp_path / "pretrain"
    assert main(["pretrain", "--data", str(world), "--out", str(pre), "--config", "demo-pretrain",
                 "--max-steps", "2", *SMALL]) == 0
    run = tmp_path / "vqa"
    assert main(["finetune", "vqa", "--data", str(world), "--out", str(run), "--config", "demo-vqa",
                 "--init", str(pre / "last"), "--max-steps", "2", *SMALL]) == 0
    assert main(["evaluate", "vqa", "--data", str(world), "--checkpoint", str(run / "best"), "--split", "test"]) == 0
    assert main(["predict", "vqa", "--data", str(world), "--checkpoint", str(run / "best"),
                 "--out", str(run / "test_predict.json")]) == 0
    assert json.loads((run / "test_predict.json").read_text())
