"""`lxmert finetune aokvqa|vizwiz|classify` (with --adv) through the one pipeline, their
prediction files, evaluation, and `lxmert attention` PNGs - on a small generated world."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from support.world import make_world
from lxmert.cli import main
from lxmert.data.synth.more_tasks import derive_more_tasks

TINY = ["--set", "model.hidden_size=32", "--set", "model.num_attention_heads=2", "--set",
        "model.intermediate_size=64", "--set", "model.l_layers=1", "--set", "model.x_layers=1",
        "--set", "model.r_layers=1", "--set", "data.num_workers=0", "--set", 'data.features=["features/store"]',
        "--set", "data.valid_limit=24"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = make_world(tmp_path_factory.mktemp("more_tasks_world"), images=40)
    counts = derive_more_tasks(root, seed=0)
    assert all(v > 0 for v in counts.values())
    return root


def _finetune(task, world, out, *extra):
    args = ["finetune", task, "--data", str(world), "--out", str(out), "--max-steps", "3", "--batch-size", "8",
            "--no-progress", *TINY, *extra]
    assert main(args) == 0
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_derived_files_have_the_official_layouts(world):
    aok = json.loads((world / "aokvqa" / "train.json").read_text())
    e = aok[0]
    assert set(e) >= {"question_id", "image_id", "question", "choices", "correct_choice_idx", "direct_answers",
                      "difficult_direct_answer"}
    assert len(e["choices"]) == 4 and len(set(e["choices"])) == 4 and len(e["direct_answers"]) == 10
    viz = json.loads((world / "vizwiz" / "train.json").read_text())
    assert {v["answerable"] for v in viz} == {0, 1}
    assert all(v["answer_type"] == "unanswerable" for v in viz if not v["answerable"])
    rows = [json.loads(x) for x in (world / "classify" / "train.jsonl").read_text().splitlines()]
    assert {r["labels"] for r in rows} == {0, 1}


def test_finetune_aokvqa_with_adversarial_training_then_predict(world, tmp_path, capsys):
    records = _finetune("aokvqa", world, tmp_path / "run", "--adv", "text,image", "--adv-steps", "2")
    train = [r for r in records if r["split"] == "train"][-1]
    assert {"clean_loss", "adv_loss_text", "adv_kl_image", "adv_delta_norm_text"} <= set(train)
    valid = [r for r in records if r["split"] == "valid"][-1]
    assert {"mc_accuracy", "mc_accuracy_map", "da_accuracy"} <= set(valid)
    saved = json.loads((tmp_path / "run" / "recipe.json").read_text())
    assert saved["adv"]["modalities"] == ["text", "image"] and saved["adv"]["steps"] == 2
    out = tmp_path / "aok_pred.json"
    assert main(["predict", "aokvqa", "--data", str(world), "--checkpoint", str(tmp_path / "run" / "best"),
                 "--split", "val", "--out", str(out)]) == 0
    preds = json.loads(out.read_text())
    val = {e["question_id"]: e for e in json.loads((world / "aokvqa" / "val.json").read_text())}
    assert set(preds) == set(val)
    assert all(p["multiple_choice"] in val[q]["choices"] for q, p in preds.items())


def test_finetune_vizwiz_reports_answerability(world, tmp_path):
    records = _finetune("vizwiz", world, tmp_path / "run")
    valid = [r for r in records if r["split"] == "valid"][-1]
    assert {"accuracy", "unanswerable_ap", "answerable_ap"} <= set(valid)
    answers = json.loads((tmp_path / "run" / "best" / "answers.json").read_text())
    assert answers[-1] == "<answerable>" and "unanswerable" in answers
    out = tmp_path / "viz.json"
    assert main(["predict", "vizwiz", "--data", str(world), "--checkpoint", str(tmp_path / "run" / "best"),
                 "--split", "val", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert all(0.0 <= r["answerable"] <= 1.0 and r["answer"] != "<answerable>" for r in rows)


def test_finetune_classify_binary_and_evaluate(world, tmp_path, capsys):
    records = _finetune("classify", world, tmp_path / "run", "--adv", "image", "--adv-steps", "1")
    valid = [r for r in records if r["split"] == "valid"][-1]
    assert {"auroc", "accuracy", "macro_f1"} <= set(valid)
    from lxmert.modeling import LxmertForClassification

    model = LxmertForClassification.from_pretrained(tmp_path / "run" / "best")
    assert model.labels == ["1"] and model.multi_label  # binary: one sigmoid logit
    capsys.readouterr()
    assert main(["evaluate", "classify", "--data", str(world), "--checkpoint", str(tmp_path / "run" / "best"),
                 "--split", "val", "--predictions", str(tmp_path / "p.jsonl")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0.0 <= metrics["auroc"] <= 1.0
    first = json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])
    assert first["label"] in (0, 1) and 0.0 <= first["scores"] <= 1.0


def test_attention_maps_cli_and_rows_sum_to_one(world, tmp_path, capsys):
    from lxmert import LxmertForQuestionAnswering
    from lxmert.config import LxmertConfig
    from lxmert.features.store import FeatureStore
    from lxmert.text import LxmertTokenizer
    from lxmert.viz.attention import compute_attention

    store = world / "features" / "store"
    cfg = LxmertConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64, l_layers=2, x_layers=2,
                       r_layers=1, visual_feat_dim=16, num_qa_labels=3)
    ckpt = LxmertForQuestionAnswering(cfg, answers=["a", "b", "c"]).save_pretrained(tmp_path / "ckpt")
    image = FeatureStore.open(store).ids[0]
    rec = FeatureStore.open(store).get(image)
    maps = compute_attention(LxmertForQuestionAnswering.from_pretrained(ckpt), LxmertTokenizer.from_vocab(
        world / "vocab.txt"), "is the ball red?", rec)
    n_obj = int(rec["mask"].sum())
    assert maps.tokens[0] == "[CLS]" and maps.tokens[-1] == "[SEP]"
    assert maps.maps["lang"].shape == (2, 2, len(maps.tokens), len(maps.tokens))
    assert maps.maps["lang2obj"].shape == (2, 2, len(maps.tokens), n_obj)
    assert maps.maps["obj2lang"].shape == (2, 2, n_obj, len(maps.tokens))
    for kind in ("lang", "obj", "lang2obj", "obj2lang"):
        np.testing.assert_allclose(maps.maps[kind].sum(-1), 1.0, rtol=1e-4)
    out = tmp_path / "att"
    assert main(["attention", str(ckpt), "--features", str(store), "--image", image, "--text", "is the ball red?",
                 "--out", str(out), "--layers", "0,-1", "--heads", "mean,1".split(",")[0], "--object-vocab",
                 "synth", "--attr-vocab", "synth"]) == 0
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "boxes.png" in pngs and "lang2obj_layer1_mean.png" in pngs and "obj_layer0_mean.png" in pngs
    assert len(pngs) == 1 + 2 + 1 + 2 + 2  # boxes; lang 0,1; obj 0 (one layer); cross 0,1 both ways
    assert all((out / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert main(["attention", str(ckpt), "--features", str(store), "--image", image, "--text", "x",
                 "--out", str(out), "--layers", "5"]) == 1  # out of range: a clear error
    assert "out of range" in capsys.readouterr().err


def test_lottery_round_through_the_cli_keeps_the_zeros(world, tmp_path):
    """prune the trained run with --rewind to its first checkpoint, retrain with --keep-sparsity."""
    from safetensors.torch import load_file

    run = tmp_path / "run"
    _finetune("classify", world, run, "--save-every", "1")
    early = sorted((run / "checkpoints").iterdir())[0]
    assert main(["prune", str(run / "best"), "--sparsity", "0.5", "--scope", "layer", "--keep-embeddings",
                 "--out", str(tmp_path / "ticket"), "--rewind", str(early)]) == 0
    _finetune("classify", world, tmp_path / "retrain", "--init", str(tmp_path / "ticket"), "--keep-sparsity")
    before = load_file(str(tmp_path / "ticket" / "model.safetensors"))
    from lxmert.training.checkpointing import latest_checkpoint

    after = load_file(str(latest_checkpoint(tmp_path / "retrain") / "model.safetensors"))
    checked = changed = 0
    for key, w in before.items():
        if key.startswith("lxmert.encoder.") and key.endswith(".weight") and w.dim() == 2:
            zero = w == 0
            assert bool((after[key][zero] == 0).all()), key  # pruned weights stayed pruned
            changed += not torch.equal(after[key][~zero], w[~zero])
            checked += 1
    assert checked > 0 and changed > 0  # the surviving weights did train
