"""The generated world: formats, determinism, disjoint splits, balanced answers, informative features."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from lxmert.cli import main as cli_main
from lxmert.data.synth import (COLOURS, DETECTOR_ATTRIBUTE_IDS, DETECTOR_OBJECT_IDS, SynthConfig,
                               generate_world, text_prior_baseline, vqa_soft_label)
from lxmert.features.tsv import read_tsv
from lxmert.text import AnswerTable, LxmertTokenizer

from support.world import FEAT_DIM, make_world


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return make_world(tmp_path_factory.mktemp("synth"), images=40, store=False)


@pytest.fixture(scope="module")
def big_text_world(tmp_path_factory) -> Path:
    """Many images, tiny features: for statistics of the language side."""
    out = tmp_path_factory.mktemp("synth-big") / "w"
    generate_world(out, SynthConfig(images=600, feat_dim=2, seed=3, val_fraction=0.2, test_fraction=0.1),
                   progress=False)
    return out


def load(path: Path):
    return json.loads(path.read_text())


def test_layout_and_formats(world: Path):
    for rel in ["features/train_obj36.tsv", "features/val_obj36.tsv", "features/test_obj36.tsv",
                "lxmert/mscoco_train.json", "lxmert/mscoco_minival.json", "lxmert/all_ans.json",
                "vqa/train.json", "vqa/minival.json", "vqa/test.json", "vqa/trainval_ans2label.json",
                "vqa/trainval_label2ans.json", "gqa/train.json", "gqa/valid.json", "gqa/testdev.json",
                "gqa/trainval_ans2label.json", "nlvr2/train.json", "nlvr2/valid.json", "nlvr2/test.json",
                "vocab.txt", "synth.json"]:
        assert (world / rel).is_file(), rel
    assert not (world / "features" / "store").exists(), "the store is built only on request"
    records = list(read_tsv(world / "features/train_obj36.tsv"))
    assert len(records) == 24
    for r in records:
        assert r["num_boxes"] == 36 and r["features"].shape == (36, FEAT_DIM)
        assert (r["objects_id"] < 1600).all() and (r["attrs_id"] < 400).all()
        assert set(r["objects_id"]) <= set(DETECTOR_OBJECT_IDS.values())
        assert set(r["attrs_id"]) <= set(DETECTOR_ATTRIBUTE_IDS.values())
        b = r["boxes"]
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= r["img_w"]).all() and (b[:, 3] <= r["img_h"]).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        assert ((0 < r["objects_conf"]) & (r["objects_conf"] < 1)).all()
        assert (r["features"] >= 0).all(), "ReLU-like features, as pool5"

    vqa = load(world / "vqa/train.json")
    for e in vqa:
        assert isinstance(e["question_id"], int)
        assert {"img_id", "sent", "label", "answer_type", "question_type", "answers"} <= e.keys()
        raw = [a["answer"] for a in e["answers"]]
        assert len(raw) == 10 and e["label"] == vqa_soft_label(raw)
    assert all(isinstance(e["question_id"], str) and list(e["label"].values()) == [1.0]
               for e in load(world / "gqa/train.json"))
    for e in load(world / "nlvr2/train.json"):
        assert e.keys() == {"identifier", "img0", "img1", "label", "sent", "uid"} and e["label"] in (0, 1)
    # answer tables are readable by AnswerTable and cover every label
    vqa_table = AnswerTable.from_file(world / "vqa/trainval_ans2label.json")
    assert vqa_table.answers == AnswerTable.from_file(world / "vqa/trainval_label2ans.json").answers
    assert all(a in vqa_table for e in vqa for a in e["label"])
    pretrain_table = AnswerTable.from_file(world / "lxmert/all_ans.json")
    assert set(vqa_table.answers) <= set(pretrain_table.answers)
    # pre-training json: labels aligned with question sources, and every word known to BERT
    tok = LxmertTokenizer.from_vocab(world / "vocab.txt")
    for entry in load(world / "lxmert/mscoco_train.json"):
        assert set(entry["sentf"]) == {"mscoco", "vg", "vqa", "gqa"}
        for src, labels in entry["labelf"].items():
            assert len(labels) == len(entry["sentf"][src])
        for sents in entry["sentf"].values():
            for s in sents:
                assert tok.unk_id not in tok.encode(s, max_length=None), s


def test_deterministic_and_splits_disjoint(world: Path, tmp_path: Path):
    again = make_world(tmp_path, images=40, store=False)
    for rel in ["features/train_obj36.tsv", "vqa/test.json", "lxmert/mscoco_train.json", "nlvr2/valid.json"]:
        assert hashlib.sha256((world / rel).read_bytes()).digest() == hashlib.sha256((again / rel).read_bytes()).digest()
    other = make_world(tmp_path, images=40, seed=1, store=False)
    assert (other / "vqa/train.json").read_bytes() != (world / "vqa/train.json").read_bytes()

    ids = {s: {r["img_id"] for r in read_tsv(world / f"features/{s}_obj36.tsv")} for s in ("train", "val", "test")}
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    pretrain_imgs = {e["img_id"] for f in ("mscoco_train", "mscoco_minival") for e in load(world / f"lxmert/{f}.json")}
    assert not pretrain_imgs & ids["test"], "test images never appear in pre-training"
    pretrain_sents = {(e["img_id"], s) for f in ("mscoco_train", "mscoco_minival")
                      for e in load(world / f"lxmert/{f}.json") for v in e["sentf"].values() for s in v}
    for f in ("vqa/test.json", "gqa/testdev.json"):
        assert all((e["img_id"], e["sent"]) not in pretrain_sents for e in load(world / f))
    assert {e["img_id"] for e in load(world / "vqa/train.json")} <= ids["train"]
    assert {e["img0"] for e in load(world / "nlvr2/test.json")} <= ids["test"]
    # the pre-training vqa source carries exactly the VQA training questions, as in the release
    pre = [(s, lab) for e in load(world / "lxmert/mscoco_train.json")
           for s, lab in zip(e["sentf"]["vqa"], e["labelf"]["vqa"])]
    assert pre == [(e["sent"], e["label"]) for e in load(world / "vqa/train.json")]


def test_answers_are_balanced_so_text_alone_is_not_enough(big_text_world: Path):
    w = big_text_world
    by_family: dict[str, Counter] = defaultdict(Counter)
    for e in load(w / "vqa/train.json"):
        top = max(e["label"].items(), key=lambda kv: kv[1])[0]
        by_family[" ".join(e["sent"].split()[:2])][top] += 1
    colours = by_family["what color"]
    assert set(colours) == set(COLOURS) and max(colours.values()) - min(colours.values()) <= 0.1 * sum(colours.values())
    for fam in ("is there", "are there"):
        yes, no = by_family[fam]["yes"], by_family[fam]["no"]
        assert abs(yes - no) <= 0.1 * (yes + no), (fam, yes, no)
    counts = by_family["how many"]
    assert max(counts.values()) <= 0.35 * sum(counts.values()), counts
    for task, train, held in (("vqa", "train", "minival"), ("gqa", "train", "valid")):
        base = text_prior_baseline(load(w / f"{task}/{train}.json"), load(w / f"{task}/{held}.json"))
        assert base["question"] < 0.45, (task, base)  # binary families cap it near 0.5 on those
        assert base["majority"] < 0.2, (task, base)
    nlvr2 = load(w / "nlvr2/train.json")
    labels = Counter(e["label"] for e in nlvr2)
    assert abs(labels[0] - labels[1]) <= 0.1 * sum(labels.values()), labels
    per_sentence: dict[str, list[int]] = defaultdict(list)
    for e in nlvr2:
        per_sentence[e["identifier"].rsplit("-", 2)[0]].append(e["label"])
    balanced = sum(sorted(v) == [0, 1] for v in per_sentence.values())
    assert balanced >= 0.95 * len(per_sentence), "each sentence is true of one pair and false of the other"


def test_features_carry_the_label(tmp_path: Path):
    """Nearest-centroid on features recovers the detector label of confident object boxes.

    (In a wide feature space the random directions are nearly orthogonal, so a linear
    read-out works; in the 16-d worlds of the other tests a model has to learn it.)
    """
    world = make_world(tmp_path, images=20, store=False, feat_dim=256)
    feats, labels = [], []
    for r in read_tsv(world / "features/train_obj36.tsv"):
        keep = r["objects_conf"] > 0.55
        feats.append(r["features"][keep])
        labels.append(r["objects_id"][keep])
    x, y = np.concatenate(feats), np.concatenate(labels)
    half = len(x) // 2
    classes = np.unique(y[:half])
    centroids = np.stack([x[:half][y[:half] == c].mean(0) for c in classes])
    test = np.isin(y[half:], classes)
    pred = classes[np.argmin(((x[half:][test, None, :] - centroids[None]) ** 2).sum(-1), axis=1)]
    assert (pred == y[half:][test]).mean() > 0.8


def test_cli_and_overwrite(tmp_path: Path, capsys):
    out = tmp_path / "w"
    args = ["synth", str(out), "--images", "6", "--feat-dim", "4", "--quiet", "--store"]
    assert cli_main(args) == 0
    assert "wrote a world of 6 images" in capsys.readouterr().out
    assert (out / "features/store").is_dir()
    from lxmert.features.store import FeatureStore
    assert len(FeatureStore.open(out / "features/store")) == 6
    assert cli_main(args) == 1, "refuses to overwrite an existing world"
    assert "already holds a generated world" in capsys.readouterr().err
    assert cli_main(args + ["--overwrite"]) == 0
    assert cli_main(args + ["--overwrite", "--feature-code", "channels"]) == 0
    assert json.loads((out / "synth.json").read_text())["config"]["feature_code"] == "channels"


def test_config_validation():
    with pytest.raises(ValueError, match="images must be"):
        SynthConfig(images=2).validate()
    with pytest.raises(ValueError, match="num_boxes"):
        SynthConfig(num_boxes=10).validate()


def test_channel_code_gives_each_concept_its_own_channels():
    """`feature_code="channels"`: disjoint blocks per concept, same norm as the dense codes,
    and the default (dense) world is unchanged by the knob's existence."""
    from lxmert.data.synth import FeatureFunction

    ff = FeatureFunction(64, 9595, noise=0.0, code="channels")
    codes = [*ff.obj.values(), *ff.attr.values()]
    support = np.stack([c > 0 for c in codes])
    assert support.sum(1).min() >= 1
    assert support.sum(0).max() == 1, "two concepts share a channel"
    assert np.allclose([np.linalg.norm(c) for c in codes], 8.0)  # sqrt(feat_dim) like a Gaussian code
    dense = FeatureFunction(64, 9595, noise=0.0)
    assert (np.stack([*dense.obj.values()]) != 0).mean() > 0.99
    # A region of a red ball fires exactly the red and ball blocks (plus material and size).
    rng = np.random.default_rng(0)
    region = ff([[("obj", "ball", 1.0), ("attr", "red", 1.0)]], np.ones(1), rng)[0]
    assert set(np.flatnonzero(region)) == set(np.flatnonzero(ff.obj["ball"])) | set(np.flatnonzero(ff.attr["red"]))
    with pytest.raises(ValueError, match="feature_code"):
        SynthConfig(feature_code="sparse").validate()
