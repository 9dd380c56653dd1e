"""Retrieval end to end on a small generated world, through the API and the CLI: fine-tune
from a pre-training checkpoint with mined hard negatives, evaluate every pair of the test
split, write rankings; the reported recall is recomputed here from one full forward per
pair (not the cached path), independently of the task's metric code."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import lxmert.api as lx
from lxmert.cli import main
from lxmert.config import LxmertConfig
from lxmert.data.karpathy import read_karpathy
from lxmert.data.retrieval import same_text
from lxmert.errors import RecipeError
from lxmert.features.union import ImageFeatures
from lxmert.modeling import LxmertForImageTextMatching, LxmertForPreTraining
from lxmert.text import LxmertTokenizer

from support.world import FEAT_DIM, make_world

SIZES = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, l_layers=1, x_layers=1, r_layers=1)
TINY = [f"model.{k}={v}" for k, v in SIZES.items()] + [
    "train.progress=false", "train.batch_size=16", "train.epochs=2", "data.train_limit=0",
    "retrieval.hard_pool=3", "retrieval.hard_from_epoch=0"]


@contextlib.contextmanager
def one_thread():
    """The tiny model's matrices are small: one thread (two spin-wait on a loaded machine)."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


@pytest.fixture(autouse=True)
def _threads():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return make_world(tmp_path_factory.mktemp("retrieval-e2e"), images=40)


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory) -> Path:
    """A run fine-tuned through the API from a (random, tiny) pre-training checkpoint."""
    root = tmp_path_factory.mktemp("retrieval-run")
    torch.manual_seed(0)
    vocab = LxmertTokenizer.from_vocab().vocab_size
    pre = LxmertForPreTraining(LxmertConfig(vocab_size=vocab, visual_feat_dim=FEAT_DIM, num_qa_labels=4, **SIZES))
    pre.save_pretrained(root / "pre")
    recipe = lx.load_recipe("demo-retrieval", [*TINY, f"model.init={json.dumps(str(root / 'pre'))}"])
    with one_thread():  # module fixtures run before the per-test `_threads`
        result = lx.train(world, root / "run", recipe)
    assert result.steps == 2 * (120 // 16) and result.best_checkpoint is not None
    log = [json.loads(x) for x in (root / "run/metrics.jsonl").read_text().splitlines()]
    train = [r for r in log if r["split"] == "train"]
    assert all(np.isfinite(r["loss"]) and "negative_score" in r for r in train)
    return root / "run"


def reference_recalls(model: LxmertForImageTextMatching, world: Path, split: str = "test",
                      fold_size: int = 0) -> dict[str, float]:
    """Recall from a full forward of every pair, ranked with numpy: the reference."""
    data = read_karpathy(world / "retrieval/dataset_world.json", split)
    store = ImageFeatures(world / "features/store", max_boxes=None)
    tok = LxmertTokenizer.from_vocab()
    n_img = len(data.image_ids)
    size = fold_size or n_img
    per_fold = []
    for lo in range(0, n_img, size):
        imgs = list(range(lo, lo + size))
        sents = [j for j, i in enumerate(data.sentence_image) if lo <= i < lo + size]
        text = tok([data.sentences[j] for j in sents], max_length=20)
        records = [store.get(data.image_ids[i]) for i in imgs]
        feats = torch.from_numpy(np.stack([r["features"] for r in records]))
        boxes = torch.from_numpy(np.stack([r["boxes_norm"] for r in records]))
        masks = torch.from_numpy(np.stack([r["mask"] for r in records])).long()
        ii, ss = np.meshgrid(np.arange(len(imgs)), np.arange(len(sents)), indexing="ij")
        ii, ss = torch.from_numpy(ii.ravel()), torch.from_numpy(ss.ravel())
        with torch.no_grad():
            scores = model(text["input_ids"][ss], feats[ii], boxes[ii], text["attention_mask"][ss],
                           masks[ii]).scores.view(len(imgs), len(sents)).numpy()
        owner = np.asarray([data.sentence_image[j] - lo for j in sents])
        keys = [same_text(data.sentences[j]) for j in sents]
        img_keys = [{keys[c] for c in range(len(sents)) if owner[c] == i} for i in range(len(imgs))]
        t2i = np.argsort(-scores, axis=0, kind="stable")  # [I, S]: images by score, per sentence
        i2t = np.argsort(-scores, axis=1, kind="stable")
        out = {}
        for k in (1, 5, 10):
            out[f"t2i_r{k}"] = np.mean([owner[c] in t2i[:k, c] for c in range(len(sents))])
            out[f"i2t_r{k}"] = np.mean([(owner[i2t[i, :k]] == i).any() for i in range(len(imgs))])
            out[f"t2i_r{k}_dup"] = np.mean([any(keys[c] in img_keys[i] for i in t2i[:k, c])
                                            for c in range(len(sents))])
            out[f"i2t_r{k}_dup"] = np.mean([any(keys[c] in img_keys[i] for c in i2t[i, :k])
                                            for i in range(len(imgs))])
        per_fold.append(out)
    return {k: float(np.mean([f[k] for f in per_fold])) for k in per_fold[0]}


def test_api_evaluate_reports_the_recall_of_the_full_forward(world, trained, tmp_path):
    metrics = lx.evaluate("retrieval", world, trained / "best", split="test",
                          predictions_out=tmp_path / "rankings.json")
    model = LxmertForImageTextMatching.from_pretrained(trained / "best").eval()
    reference = reference_recalls(model, world)
    for key, value in reference.items():
        assert metrics[key] == pytest.approx(value, abs=1e-9), key
    assert metrics["rsum"] == pytest.approx(100 * sum(reference[f"{d}_r{k}"] for d in ("t2i", "i2t")
                                                      for k in (1, 5, 10)))
    assert metrics["scored_pair_fraction"] == 1.0 and metrics["images"] == 8
    rankings = json.loads((tmp_path / "rankings.json").read_text())
    assert len(rankings["text_to_image"]) == 40 and len(rankings["image_to_text"]) == 8
    first = rankings["text_to_image"][0]
    assert len(first["images"]) == 8 and first["scores"] == sorted(first["scores"], reverse=True)


def test_folds_are_scored_apart_and_averaged(world, trained):
    metrics = lx.evaluate("retrieval", world, trained / "best", split="test", overrides=["retrieval.fold_size=4"])
    model = LxmertForImageTextMatching.from_pretrained(trained / "best").eval()
    reference = reference_recalls(model, world, fold_size=4)
    for key, value in reference.items():
        assert metrics[key] == pytest.approx(value, abs=1e-9), key
    assert metrics["folds"] == 2 and {"fold0/rsum", "fold1/rsum"} <= set(metrics)
    with pytest.raises(ValueError, match="fold_size = 3"):
        lx.evaluate("retrieval", world, trained / "best", split="test", overrides=["retrieval.fold_size=3"])


@pytest.mark.parametrize("stage", ["attention", "cosine"])
def test_two_stage_reranking(world, trained, stage):
    full = lx.evaluate("retrieval", world, trained / "best", split="test")
    every = lx.evaluate("retrieval", world, trained / "best", split="test",
                        overrides=[f"retrieval.first_stage={stage}", "retrieval.rerank_top_k=40"])
    for key in ("t2i_r1", "t2i_r5", "i2t_r1", "i2t_r5", "rsum", "rsum_dup"):  # top k = everything: exact
        assert every[key] == pytest.approx(full[key], abs=1e-9), key
    # the 24 train images x 120 sentences: each query's top 10 is a part of the pairs
    cut = lx.evaluate("retrieval", world, trained / "best", split="train",
                      overrides=[f"retrieval.first_stage={stage}", "retrieval.rerank_top_k=10"])
    assert 0 < cut["scored_pair_fraction"] < 0.6
    assert set(cut) == set(full)


def test_cli_finetune_evaluate_predict(world, tmp_path, capsys):
    sets = [a for s in TINY for a in ("--set", s)]
    assert main(["finetune", "retrieval", "--data", str(world), "--out", str(tmp_path / "run"),
                 "--config", "demo-retrieval", "--max-steps", "3", "--no-progress", *sets]) == 0
    assert main(["evaluate", "retrieval", "--data", str(world), "--checkpoint", str(tmp_path / "run/best"),
                 "--split", "test", "--out", str(tmp_path / "metrics.json")]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"t2i_r1", "i2t_r10", "rsum", "rsum_dup", "mean_recall"} <= set(metrics)
    assert main(["predict", "retrieval", "--data", str(world), "--checkpoint", str(tmp_path / "run/best"),
                 "--out", str(tmp_path / "test_rankings.json")]) == 0
    rankings = json.loads((tmp_path / "test_rankings.json").read_text())
    assert rankings["rerank_top_k"] == 0 and len(rankings["folds"]) == 1
    test = read_karpathy(world / "retrieval/dataset_world.json", "test")
    assert {r["sentid"] for r in rankings["text_to_image"]} == set(test.sentence_ids)
    capsys.readouterr()
    assert main(["evaluate", "retrieval", "--data", str(world), "--checkpoint", str(tmp_path / "run/best"),
                 "--set", "retrieval.top_k=3"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "retrieval.top_k = 3" in err[0]


@pytest.mark.parametrize("override,error,message", [
    ("retrieval.negatives=0", RecipeError, "retrieval.negatives = 0"),
    ("retrieval.negative_sides=['image','image']", RecipeError, "retrieval.negative_sides"),
    ("retrieval.negative_sides=['caption']", RecipeError, "retrieval.negative_sides"),
    ("retrieval.hard_pool=1", RecipeError, "retrieval.hard_pool = 1"),
    ("retrieval.hard_from_epoch=-1", RecipeError, "retrieval.hard_from_epoch"),
    ("retrieval.loss='hinge'", RecipeError, "retrieval.loss"),
    ("retrieval.margin=-0.1", RecipeError, "retrieval.margin"),
    ("retrieval.fold_size=-5", RecipeError, "retrieval.fold_size"),
    ("retrieval.top_k=5", RecipeError, "retrieval.top_k = 5"),
    ("retrieval.pair_batch=0", RecipeError, "retrieval.pair_batch"),
    ("retrieval.rerank_top_k=4", RecipeError, "retrieval.rerank_top_k = 4"),
    ("retrieval.first_stage='bm25'", RecipeError, "retrieval.first_stage"),
    ("retrieval.file=''", RecipeError, "retrieval.file is empty"),
    ("retrieval.colour=1", RecipeError, "unknown key.*retrieval.colour"),
])
def test_bad_recipe_values_name_the_key(override, error, message):
    with pytest.raises(error, match=message):
        lx.load_recipe("demo-retrieval", [override])


@pytest.mark.parametrize("overrides,error,message", [
    (["retrieval.file=retrieval/missing.json"], FileNotFoundError, "missing.json: no Karpathy-split file"),
    (["data.train=['training']"], ValueError, "dataset_world.json: split must be among"),
    (["retrieval.image_key='{colour}'"], ValueError, "unknown field"),
    (["retrieval.image_key='img_{imgid}'"], KeyError, "image 'img_0' .* not in the feature store"),
    (["adv.modalities=['text']"], RecipeError, r"\[adv\]"),
])
def test_bad_data_is_refused_before_training(world, tmp_path, overrides, error, message):
    recipe = lx.load_recipe("demo-retrieval", [*TINY, *overrides])
    with pytest.raises(error, match=message):
        lx.train(world, tmp_path / "run", recipe)
    assert not (tmp_path / "run" / "last").exists()
