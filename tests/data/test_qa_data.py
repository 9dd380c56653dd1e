"""VQA / GQA / NLVR2 datasets over a generated world: targets, batches, unlabeled splits, errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from lxmert.data import GQADataset, NLVR2Dataset, VQADataset
from lxmert.data.masking import IGNORE_INDEX
from lxmert.data.sources import DataFormatError
from lxmert.text import AnswerTable

from support.world import FEAT_DIM, make_world


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return make_world(tmp_path_factory.mktemp("qa"), images=30)


def store(world: Path) -> Path:
    return world / "features/store"


def test_vqa_soft_targets_and_batch(world: Path):
    table = AnswerTable.from_file(world / "vqa/trainval_label2ans.json")
    ds = VQADataset(world / "vqa/train.json", store(world), answer_table=table)
    raw = json.loads((world / "vqa/train.json").read_text())
    assert len(ds) == len(raw) and ds.has_labels and ds.stats.answers_dropped == 0
    for i in (0, 5, len(ds) - 1):
        target = ds[i]["target"]
        assert target.shape == (len(table),) and target.dtype == np.float32
        assert {table.answers[k]: float(v) for k, v in enumerate(target) if v} == pytest.approx(raw[i]["label"])
    batch, meta = ds.collate([ds[i] for i in range(6)])
    assert batch["labels"].shape == (6, len(table)) and batch["labels"].dtype == torch.float32
    assert meta["question_id"] == [e["question_id"] for e in raw[:6]] and "question_id" not in batch
    assert all(isinstance(q, int) for q in meta["question_id"])
    assert batch["visual_feats"].shape == (6, 36, FEAT_DIM) and batch["input_ids"].shape[0] == 6
    assert ds.raw[0]["answers"] == raw[0]["answers"], "raw entries kept for the official metric"


def test_gqa_index_targets_and_unlabelled_test_split(world: Path, tmp_path: Path):
    table = AnswerTable.from_file(world / "gqa/trainval_ans2label.json")
    ds = GQADataset(world / "gqa/valid.json", store(world), answer_table=table, target="index")
    raw = json.loads((world / "gqa/valid.json").read_text())
    batch, meta = ds.collate([ds[i] for i in range(4)])
    assert batch["labels"].dtype == torch.long
    assert [table.answers[k] for k in batch["labels"]] == [next(iter(e["label"])) for e in raw[:4]]
    assert meta["question_id"] == [e["question_id"] for e in raw[:4]]
    unlabelled = [{k: v for k, v in e.items() if k != "label"} for e in raw]
    path = tmp_path / "submit.json"
    path.write_text(json.dumps(unlabelled))
    test = GQADataset(path, store(world), answer_table=table)
    assert not test.has_labels and "labels" not in test.collate([test[0], test[1]]).inputs
    mixed = unlabelled[:2] + raw[2:4]
    path.write_text(json.dumps(mixed))
    with pytest.raises(DataFormatError, match="some entries have a 'label' and some do not"):
        GQADataset(path, store(world), answer_table=table)


def test_unknown_answers_dropped_counted_and_reported(world: Path, caplog):
    small = AnswerTable(["yes", "no"])
    with caplog.at_level(logging.WARNING, logger="lxmert.data.qa"):
        ds = VQADataset(world / "vqa/train.json", store(world), answer_table=small)
    assert ds.stats.answers_dropped > 0 and ds.stats.labels_emptied > 0
    assert "not in the answer table were dropped" in caplog.text
    emptied = next(i for i in range(len(ds)) if not ({"yes", "no"} & set(ds.entries[i].label)))
    assert not ds[emptied]["target"].any()
    idx = VQADataset(world / "vqa/train.json", store(world), answer_table=small, target="index")
    assert idx[emptied]["target"] == IGNORE_INDEX


def test_nlvr2_pairs(world: Path):
    ds = NLVR2Dataset(world / "nlvr2/train.json", store(world))
    raw = json.loads((world / "nlvr2/train.json").read_text())
    batch, meta = ds.collate([ds[i] for i in range(5)])
    assert batch["visual_feats"].shape == (5, 2, 36, FEAT_DIM) and batch["visual_pos"].shape == (5, 2, 36, 4)
    assert batch["labels"].tolist() == [e["label"] for e in raw[:5]]
    assert meta["identifier"] == [e["identifier"] for e in raw[:5]] and meta["sent"] == [e["sent"] for e in raw[:5]]
    left = ds.images.get(raw[0]["img0"])["features"]
    right = ds.images.get(raw[0]["img1"])["features"]
    assert np.array_equal(batch["visual_feats"][0, 0].numpy(), left)
    assert np.array_equal(batch["visual_feats"][0, 1].numpy(), right)


def test_errors_name_file_and_entry(world: Path, tmp_path: Path):
    raw = json.loads((world / "vqa/train.json").read_text())[:4]
    path = tmp_path / "vqa_bad.json"
    bad = [dict(e) for e in raw]
    bad[3]["img_id"] = "missing_img"
    path.write_text(json.dumps(bad))
    with pytest.raises(KeyError, match=r"vqa_bad\.json: entry 3 \(question_id \d+\): image 'missing_img'"):
        VQADataset(path, store(world), answer_table=world / "vqa/trainval_label2ans.json")
    bad = [dict(e) for e in raw]
    del bad[2]["sent"]
    path.write_text(json.dumps(bad))
    with pytest.raises(DataFormatError, match=r"vqa_bad\.json: entry 2: missing key 'sent'"):
        VQADataset(path, store(world), answer_table=world / "vqa/trainval_label2ans.json")
    bad = [dict(e) for e in raw]
    bad[1]["question_id"] = "q-one"
    path.write_text(json.dumps(bad))
    with pytest.raises(DataFormatError, match=r"entry 1: question_id 'q-one' is not a valid int"):
        VQADataset(path, store(world), answer_table=world / "vqa/trainval_label2ans.json")
    pairs = json.loads((world / "nlvr2/valid.json").read_text())[:3]
    pairs[1]["img1"] = "gone"
    path = tmp_path / "nlvr2_bad.json"
    path.write_text(json.dumps(pairs))
    with pytest.raises(KeyError, match=r"nlvr2_bad\.json: entry 1 \(identifier '.*'\): img1 'gone'"):
        NLVR2Dataset(path, store(world))
    pairs[1]["img1"] = pairs[0]["img1"]
    pairs[2]["label"] = 3
    path.write_text(json.dumps(pairs))
    with pytest.raises(DataFormatError, match=r"entry 2 .*label must be 0 or 1"):
        NLVR2Dataset(path, store(world))
