"""`lxmert.pipeline`: the same answers as the evaluation path, every input form, attention,
NLVR2 and matching, and one clear error per bad input."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from support.serving import (picture, save_nlvr2, save_pretraining, save_qa, store_of, tiny_detector_config)

import lxmert
from lxmert.api import ask, load_for_inference, predict
from lxmert.errors import CheckpointError
from lxmert.features.store import FeatureStore
from lxmert.pipeline import MatchingPipeline, NLVR2Pipeline, RegionFeatures, VQAPipeline, pipeline
from lxmert.text import LxmertTokenizer


@pytest.fixture(scope="module")
def vqa(qa, world) -> VQAPipeline:
    pipe = lxmert.pipeline("vqa", model=qa, features=store_of(world))
    assert isinstance(pipe, VQAPipeline)
    return pipe


def test_answers_and_scores_equal_the_evaluation_path(vqa, qa, world, tmp_path):
    """Every test question of the world: the pipeline's scores equal the model's on the
    task's own batches (what `lxmert evaluate` scores), its top answers equal the
    answers `lxmert predict` writes."""
    adapter, model, device = load_for_inference("vqa", world, qa, device="cpu", config="demo-vqa")
    dataset = adapter.make_dataset("test", train=False)
    reference = {}
    with torch.no_grad():
        for batch, out in adapter.outputs(model, dataset, device):
            for qid, row in zip(batch.meta["question_id"], torch.sigmoid(out.question_answering_score)):
                reference[qid] = row.numpy()
    entries = dataset.entries
    results = vqa([e.img_id for e in entries], [e.sent for e in entries], top_k=len(vqa.answers), batch_size=7)
    answers = vqa.answers
    for entry, ranked in zip(entries, results):
        scores = np.zeros(len(answers))
        for row in ranked:
            scores[answers.index(row["answer"])] = row["score"]
        np.testing.assert_allclose(scores, reference[entry.question_id], rtol=1e-4, atol=1e-5)

    out = predict("vqa", world, qa, tmp_path / "test_predict.json", split="test", config="demo-vqa", device="cpu")
    written = {row["question_id"]: row["answer"] for row in json.loads(Path(out).read_text())}
    top = {e.question_id: r[0]["answer"] for e, r in zip(entries, results)}
    assert top == written
    assert len(set(top.values())) > 1  # the comparison is not met by a constant answer


def test_every_image_form_gives_the_same_answers(vqa, world):
    store = FeatureStore.open(store_of(world))
    img_id, question = "synth_test_000002", "what color is the cube?"
    record = store.get(img_id)
    regions = RegionFeatures.from_store(store, img_id)
    forms = [img_id, record, regions,
             {"features": record["features"][record["mask"]], "boxes": record["boxes"][record["mask"]],
              "image_size": (record["img_h"], record["img_w"])}]
    results = [vqa(form, question, top_k=3) for form in forms]
    results.append(vqa({"image": img_id, "question": question}, top_k=3))
    results.append(vqa([{"image": img_id, "question": question}], top_k=3)[0])
    for got in results[1:]:
        assert [r["answer"] for r in got] == [r["answer"] for r in results[0]]
        np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in results[0]], rtol=1e-6)
    assert len(results[0]) == 3 and results[0][0]["score"] >= results[0][1]["score"] >= results[0][2]["score"]


def test_lists_batch_and_broadcast(vqa):
    ids = ["synth_test_000000", "synth_test_000001", "synth_test_000003"]
    one_by_one = [vqa(i, "how many objects are there?", top_k=2) for i in ids]
    batched = vqa(ids, "how many objects are there?", top_k=2, batch_size=2)
    assert len(batched) == 3
    for a, b in zip(one_by_one, batched):
        assert [r["answer"] for r in a] == [r["answer"] for r in b]
        np.testing.assert_allclose([r["score"] for r in a], [r["score"] for r in b], rtol=1e-4, atol=1e-6)
    questions = ["is there a ball?", "what color is the cube?"]
    per_question = vqa(ids[0], questions, top_k=1)
    assert [r[0]["answer"] for r in per_question] == [vqa(ids[0], q, top_k=1)[0]["answer"] for q in questions]


def test_attention_is_the_last_cross_layers_cls_row(vqa, world):
    """return_attention: the [CLS] row of the last language->object map, mean over heads,
    as `lxmert attention` (viz.compute_attention) computes it; it sums to 1 over the boxes."""
    from lxmert.viz.attention import compute_attention

    store = FeatureStore.open(store_of(world))
    img_id, question = "synth_test_000004", "is there a red ball?"
    got = vqa(img_id, question, top_k=2, return_attention=True)
    record = store.get(img_id)
    n = int(record["num_boxes"])
    assert got["image_id"] == img_id and got["image_size"] == [record["img_h"], record["img_w"]]
    np.testing.assert_allclose(got["boxes"], record["boxes"][:n])
    maps = compute_attention(vqa.model, vqa.tokenizer, question, record)
    expected = maps.maps["lang2obj"][-1, :, 0, :].mean(axis=0)
    np.testing.assert_allclose(got["attention"], expected, rtol=1e-4, atol=1e-6)
    assert abs(sum(got["attention"]) - 1.0) < 1e-4
    assert [a["answer"] for a in got["answers"]] == [a["answer"] for a in vqa(img_id, question, top_k=2)]


def test_padded_regions_get_no_attention(vqa, world):
    """Images with different box counts in one batch: padding is masked, each image's
    result equals its result alone."""
    store = FeatureStore.open(store_of(world))
    full = RegionFeatures.from_store(store, "synth_test_000005")
    short = RegionFeatures(full.features[:7], full.boxes[:7], full.image_size, image_id="short")
    batch = vqa([full, short], "what color is the ball?", top_k=3, return_attention=True)
    alone = vqa(short, "what color is the ball?", top_k=3, return_attention=True)
    assert len(batch[1]["attention"]) == 7
    np.testing.assert_allclose(batch[1]["attention"], alone["attention"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose([a["score"] for a in batch[1]["answers"]], [a["score"] for a in alone["answers"]],
                               rtol=1e-4, atol=1e-6)


def test_nlvr2_pipeline_agrees_with_predict(world, tmp_path):
    ckpt = save_nlvr2(tmp_path / "nlvr2", world)
    nlvr2 = pipeline("nlvr2", model=ckpt, features=store_of(world))
    assert isinstance(nlvr2, NLVR2Pipeline)
    out = predict("nlvr2", world, ckpt, tmp_path / "test_predict.csv", split="test", config="demo-nlvr2",
                  device="cpu")
    with open(out, newline="") as handle:
        written = {row[0]: row[1] == "True" for row in csv.reader(handle)}
    raw = json.loads((world / "nlvr2" / "test.json").read_text())
    results = nlvr2([(r["img0"], r["img1"]) for r in raw], [r["sent"] for r in raw], batch_size=5)
    assert {r["identifier"]: res["answer"] for r, res in zip(raw, results)} == written
    assert {res["answer"] for res in results} == {True, False}  # not met by a constant answer
    assert all(0.5 <= res["score"] <= 1.0 for res in results)
    one = nlvr2((raw[0]["img0"], raw[0]["img1"]), raw[0]["sent"], return_attention=True)
    assert one["answer"] == results[0]["answer"] and abs(one["score"] - results[0]["score"]) < 1e-5
    assert [im["image_id"] for im in one["images"]] == [raw[0]["img0"], raw[0]["img1"]]
    assert all(abs(sum(im["attention"]) - 1) < 1e-4 for im in one["images"])


def test_matching_reads_the_pretraining_matching_head(world, tmp_path):
    ckpt = save_pretraining(tmp_path / "pre", world)
    match = pipeline("matching", model=ckpt, features=store_of(world))
    assert isinstance(match, MatchingPipeline)
    store = FeatureStore.open(store_of(world))
    sentence = "a red ball is next to a cube."
    got = match("synth_test_000001", sentence)
    record = store.get("synth_test_000001")
    tokens = LxmertTokenizer.from_vocab(ckpt)([sentence])
    with torch.no_grad():
        out = match.model(**tokens, visual_feats=torch.from_numpy(record["features"])[None],
                          visual_pos=torch.from_numpy(record["boxes_norm"])[None])
    p = float(torch.softmax(out.cross_relationship_score, -1)[0, 1])
    assert got == {"score": pytest.approx(p, abs=1e-5), "match": p >= 0.5}


def test_pixels_through_the_detector(world, tmp_path):
    """Path, PIL image and array give one answer; `api.ask` (what `lxmert ask` runs) too."""
    cfg = tiny_detector_config(tmp_path / "det.json")
    qa = save_qa(tmp_path / "qa2048", ["yes", "no", "red", "two"], visual_feat_dim=2048)
    vqa = pipeline("vqa", model=qa, detector_config=cfg, random_init_detector=True)
    array = picture(90, 120, seed=3)
    path = tmp_path / "photo.png"
    Image.fromarray(array).save(path)
    results = [vqa(str(path), "what color is it?"), vqa(path, "what color is it?"),
               vqa(Image.open(path), "what color is it?"), vqa(array, "what color is it?")]
    for got in results[1:]:
        assert got == results[0]
    regions = vqa.regions(array)
    assert regions.source == "detector" and len(regions) == 36 and regions.feat_dim == 2048
    assert regions.image_size == (90, 120)
    asked = ask(path, "what color is it?", model=qa, detector_config=cfg, random_init_detector=True)
    assert asked["answers"] == results[0] and asked["random_detector"] is True
    assert asked["record"]["num_boxes"] == 36


def test_ask_takes_a_store_id(vqa, qa, world, capsys):
    from lxmert.cli import main

    expected = vqa("synth_test_000003", "is there a cube?", top_k=3)
    assert main(["ask", "synth_test_000003", "is there a cube?", "--model", str(qa), "--features",
                 str(store_of(world)), "--top", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[1] for ln in lines[1:4]] == [r["answer"] for r in expected]


def _mismatch_detector_args(tmp_path: Path, qa: Path) -> dict:
    # a 16-d model and the 2048-d detector: refused before the (absent) weights are read
    return {"model": qa, "detector": tmp_path / "absent.bin"}


@pytest.mark.parametrize("call, error, message", [
    (lambda p, w, t: pipeline("captioning", model=p), ValueError, "unknown pipeline task"),
    (lambda p, w, t: pipeline("vqa", model=t / "nope"), FileNotFoundError, "does not exist"),
    (lambda p, w, t: pipeline("nlvr2", model=p), CheckpointError, "needs a LxmertForNLVR2"),
    (lambda p, w, t: pipeline("vqa", **_mismatch_detector_args(t, p)), CheckpointError, "2048-d"),
    (lambda p, w, t: pipeline("vqa", model=p)("synth_test_000001", "q?"), FileNotFoundError,
     "pass features=STORE"),
], ids=["task", "checkpoint", "class", "detector-dims", "id-without-store"])
def test_bad_construction(qa, world, tmp_path, call, error, message):
    with pytest.raises(error, match=message):
        call(qa, world, tmp_path)


@pytest.mark.parametrize("args, kwargs, error, message", [
    (("synth_test_000001", "   "), {}, ValueError, "question is empty"),
    (("synth_test_000001", 7), {}, ValueError, "string or a non-empty list"),
    (("synth_test_000001", []), {}, ValueError, "string or a non-empty list"),
    (("synth_test_000001", "q?"), {"top_k": 0}, ValueError, "top_k"),
    (("synth_test_000001", "q?"), {"batch_size": 0}, ValueError, "batch_size"),
    ((["synth_test_000001", "synth_test_000002"], ["a?", "b?", "c?"]), {}, ValueError, "2 images for 3"),
    (("no_such_image", "q?"), {}, KeyError, "neither an image id of feature store"),
    ((np.zeros((36, 16), dtype=np.float32), "q?"), {}, ValueError, "2-d array is ambiguous"),
    ((np.zeros((40, 40, 3), dtype=np.uint8), "q?"), {}, ValueError, "no detector"),
    (({"features": np.zeros((4, 16))}, "q?"), {}, KeyError, "boxes"),
    (({"features": np.zeros((4, 16)), "boxes": np.zeros((4, 4))}, "q?"), {}, KeyError, "image size"),
    (({"features": np.zeros((4, 16)), "boxes": np.zeros((3, 4)), "img_h": 5, "img_w": 5}, "q?"), {}, ValueError,
     r"'boxes' must be \[4, 4\]"),
    (({"features": np.zeros((4, 8)), "boxes": np.zeros((4, 4)), "img_h": 5, "img_w": 5}, "q?"), {}, ValueError,
     "8-d features, the model reads 16-d"),
    (({"features": np.full((4, 16), np.nan), "boxes": np.zeros((4, 4)), "img_h": 5, "img_w": 5}, "q?"), {},
     ValueError, "finite"),
    ((object(), "q?"), {}, TypeError, "cannot read an image from a object"),
    (({"image": "synth_test_000001"},), {}, KeyError, "has no 'question'"),
], ids=["empty", "not-text", "no-texts", "top-k", "batch-size", "lengths", "unknown-id", "2d", "pixels",
        "no-boxes", "no-size", "box-count", "feat-dim", "nan", "type", "dict-without-question"])
def test_bad_calls(vqa, args, kwargs, error, message):
    with pytest.raises(error, match=message):
        vqa(*args, **kwargs)


@pytest.mark.parametrize("image", ["synth_test_000001", ("synth_test_000001",), ["a", "b", "c"]])
def test_nlvr2_needs_pairs(world, tmp_path, image):
    nlvr2 = pipeline("nlvr2", model=save_nlvr2(tmp_path / "n", world), features=store_of(world))
    with pytest.raises(ValueError, match="pair of images"):
        nlvr2(image, "the left image has a ball.")


def test_lxmert_pipeline_is_callable_however_it_was_imported():
    """`lxmert.pipeline(...)` works before and after `import lxmert.pipeline` (which makes
    the package attribute the module), and `import lxmert` alone still imports no torch."""
    env = {**os.environ, "PYTHONPATH": str(Path(lxmert.__file__).parents[1])}
    snippets = [
        # the function first (lxmert.__getattr__), the module's names after
        "import sys, lxmert; assert 'torch' not in sys.modules; f = lxmert.pipeline; "
        "from lxmert.pipeline import pipeline as g, VQAPipeline; assert f is g and callable(lxmert.pipeline)",
        # the module first (as `lxmert.api` imports it): the package attribute is the module, and calls
        "import lxmert.pipeline, lxmert, types; assert isinstance(lxmert.pipeline, types.ModuleType); "
        "lxmert.pipeline('captioning', model='x')",
    ]
    first = subprocess.run([sys.executable, "-c", snippets[0]], capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    second = subprocess.run([sys.executable, "-c", snippets[1]], capture_output=True, text=True, env=env, timeout=120)
    assert "unknown pipeline task 'captioning'" in second.stderr  # it reached pipeline()
    # this process imported the module by name (above); the package attribute still calls
    assert callable(lxmert.pipeline)
