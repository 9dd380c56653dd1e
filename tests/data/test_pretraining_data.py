"""PretrainingDataset: the world end to end, mismatch rate, answer sampling, determinism, errors."""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from lxmert.data import PretrainingDataset, move_to
from lxmert.data.jsonl import convert_pretrain_json
from lxmert.data.masking import IGNORE_INDEX
from lxmert.data.sources import DataFormatError
from lxmert.text import AnswerTable

from support.world import FEAT_DIM, make_world


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return make_world(tmp_path_factory.mktemp("pre"), images=30)


def dataset(world: Path, **kwargs) -> PretrainingDataset:
    return PretrainingDataset(world / "lxmert/mscoco_train.json", world / "features/store",
                              answer_table=world / "lxmert/all_ans.json", **kwargs)


def test_reads_world_and_batches_follow_the_contract(world: Path):
    ds = dataset(world)
    entries = json.loads((world / "lxmert/mscoco_train.json").read_text())
    expected = sum(len(v) for e in entries for v in e["sentf"].values())
    assert len(ds) == expected and ds.stats.images == len(entries)
    assert ds.stats.per_source.keys() == {"mscoco", "vg", "vqa", "gqa"}
    assert ds.stats.answers_dropped == 0
    batch, meta = ds.collate([ds[i] for i in range(0, len(ds), max(1, len(ds) // 16))])
    assert meta == {}, "every pre-training field is a model input"
    b, length = batch["input_ids"].shape
    assert length == int(batch["attention_mask"].sum(1).max()), "padded to the longest sentence only"
    assert batch["labels"].shape == (b, length) and batch["token_type_ids"].eq(0).all()
    assert batch["visual_feats"].shape == (b, 36, FEAT_DIM) and batch["visual_feats"].dtype == torch.float32
    assert batch["visual_pos"].shape == (b, 36, 4)
    assert 0.0 <= float(batch["visual_pos"].min()) and float(batch["visual_pos"].max()) <= 1.0
    assert "visual_attention_mask" not in batch, "36 real boxes everywhere: no mask, as the release"
    obj_ids, obj_conf = batch["obj_labels"]["obj"]
    feats, chosen = batch["obj_labels"]["feat"]
    assert obj_ids.dtype == torch.long and obj_conf.shape == (b, 36)
    assert batch["obj_labels"]["attr"][0].shape == (b, 36) and feats.shape == (b, 36, FEAT_DIM)
    # masked objects: zeroed / swapped / kept, all others identical to the target features
    keep = chosen == 0
    assert torch.equal(batch["visual_feats"][keep], feats[keep])
    assert batch["matched_label"].dtype == torch.long and batch["ans"].dtype == torch.long
    assert move_to(batch, "cpu")["obj_labels"]["obj"][0] is not None


def test_mismatch_rate_and_qa_targets(world: Path):
    ds = dataset(world, seed=5)
    n = len(ds)
    items = [ds[i] for i in range(n)]
    matched = np.asarray([it["matched_label"] for it in items])
    rate = 1 - matched.mean()
    assert abs(rate - 0.5) <= 5 * math.sqrt(0.25 / n), rate
    own = [ds.tokens[i] for i in range(n)]
    for i, it in enumerate(items):
        # unmasked positions show whose sentence it is: the example's own iff matched
        text = np.where(it["labels"] != IGNORE_INDEX, it["labels"], it["input_ids"])
        same = len(text) == len(own[i]) and (text == own[i]).all()
        if it["matched_label"] == 1:
            assert same
        else:
            other_img = [j for j in range(n) if len(own[j]) == len(text) and (own[j] == text).all()]
            assert any(ds.example_image[j] != ds.example_image[i] for j in other_img)
        lo, hi = ds.label_offsets[i], ds.label_offsets[i + 1]
        if it["matched_label"] == 0 or hi == lo:
            assert it["ans"] == IGNORE_INDEX
        else:
            assert it["ans"] in set(ds.label_ids[lo:hi].tolist())
    assert (np.asarray([it["ans"] for it in items]) != IGNORE_INDEX).any()
    off = dataset(world, match_prob=0.0, word_mask_prob=0.0, obj_mask_prob=0.0, qa=False)
    it = off[3]
    assert it["matched_label"] == 1 and (it["labels"] == IGNORE_INDEX).all() and it["ans"] == IGNORE_INDEX
    assert (it["feat_mask"] == 0).all() and np.array_equal(it["visual_feats"], it["orig_feats"])


def test_match_sources_restrict_matching_examples_and_negatives(world: Path):
    ds = dataset(world, seed=5, word_mask_prob=0.0, match_sources={"vg"})
    n = len(ds)
    own = [ds.tokens[i] for i in range(n)]
    source = [ds.source_names[k] for k in ds.example_source]
    labels = []
    for i in range(n):
        it = ds[i]
        text = it["input_ids"]
        same = len(text) == len(own[i]) and (text == own[i]).all()
        if source[i] != "vg":
            assert it["matched_label"] == IGNORE_INDEX and same  # own sentence, no matching loss
            lo, hi = ds.label_offsets[i], ds.label_offsets[i + 1]
            assert (it["ans"] != IGNORE_INDEX) == (hi > lo)  # QA targets are kept
            continue
        labels.append(it["matched_label"])
        if it["matched_label"] == 0:
            donors = [j for j in range(n) if len(own[j]) == len(text) and (own[j] == text).all()]
            assert any(source[j] == "vg" and ds.example_image[j] != ds.example_image[i] for j in donors)
        else:
            assert it["matched_label"] == 1 and same
    assert 0.25 < 1 - np.mean(labels) < 0.75
    with pytest.raises(ValueError, match=r"match_sources \['vgg'\] not among the sources"):
        dataset(world, match_sources={"vgg"})


def write_jsonl(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_answer_sampling_is_proportional_and_unknown_answers_are_reported(world: Path, tmp_path: Path, caplog):
    img = "synth_train_000000"
    lines = [{"img_id": img, "text": "what color is the ball?", "answers": {"red": 0.9, "blue": 0.3, "zzz": 1.0}}]
    lines += [{"img_id": img, "text": "a ball.", "answers": {"qqq": 1.0}}]
    path = write_jsonl(tmp_path / "qa.jsonl", lines * 200)
    with caplog.at_level(logging.WARNING, logger="lxmert.data.pretraining"):
        ds = PretrainingDataset(path, world / "features/store", answer_table=world / "lxmert/all_ans.json",
                                match_prob=0.0)
    assert ds.stats.answers_dropped == 400 and ds.stats.labels_emptied == 200
    assert ds.stats.dropped_examples == Counter({"zzz": 200, "qqq": 200})
    assert "not in the answer table" in caplog.text and "'zzz'" in caplog.text
    table = ds.answer_table
    answers = Counter()
    for epoch in range(10):
        ds.set_epoch(epoch)
        answers.update(ds[i]["ans"] for i in range(0, len(ds), 2))
    assert ds[1]["ans"] == IGNORE_INDEX, "every answer of that label is unknown"
    total = sum(answers.values())
    red = answers[table.index("red")]
    assert set(answers) == {table.index("red"), table.index("blue")}
    assert abs(red / total - 0.75) <= 5 * math.sqrt(0.75 * 0.25 / total), red / total


def test_jsonl_gives_the_same_examples_as_release_json(world: Path, tmp_path: Path):
    jsonl = tmp_path / "train.jsonl"
    convert_pretrain_json(world / "lxmert/mscoco_train.json", jsonl)
    a, b = dataset(world), PretrainingDataset(jsonl, world / "features/store", answer_table=world / "lxmert/all_ans.json")
    assert len(a) == len(b)
    for i in (0, 7, len(a) - 1):
        x, y = a[i], b[i]
        for key in ("input_ids", "labels", "visual_feats", "feat_mask"):
            assert np.array_equal(x[key], y[key]), key
        assert (x["matched_label"], x["ans"]) == (y["matched_label"], y["ans"])
    sub = PretrainingDataset(jsonl, world / "features/store", answer_table=world / "lxmert/all_ans.json",
                             sources={"vqa"})
    assert sub.stats.per_source.keys() == {"vqa"}


def test_identical_batches_for_0_and_2_workers_and_epochs_differ(world: Path):
    ds = dataset(world, seed=11)
    zero = _batches_subset(ds, 0, epoch=1)
    two = _batches_subset(ds, 2, epoch=1)
    assert len(zero) == len(two) == 6
    for x, y in zip(zero, two):
        assert torch.equal(x["input_ids"], y["input_ids"]) and torch.equal(x["labels"], y["labels"])
        assert torch.equal(x["visual_feats"], y["visual_feats"]) and torch.equal(x["ans"], y["ans"])
        assert torch.equal(x["matched_label"], y["matched_label"])
    other = _batches_subset(ds, 0, epoch=2)
    assert any(not torch.equal(x["labels"], y["labels"]) for x, y in zip(zero, other))
    # (epoch, index) addressing equals set_epoch addressing
    ds.set_epoch(0)
    a = ds[(1, 3)]
    ds.set_epoch(1)
    assert np.array_equal(a["input_ids"], ds[3]["input_ids"]) and np.array_equal(a["visual_feats"], ds[3]["visual_feats"])


def _batches_subset(ds: PretrainingDataset, workers: int, epoch: int) -> list[dict]:
    ds.set_epoch(epoch)
    loader = DataLoader(torch.utils.data.Subset(ds, range(48)), batch_size=8, num_workers=workers,
                        collate_fn=ds.collate, multiprocessing_context="fork" if workers else None)
    return [batch.inputs for batch in loader]


def test_errors_name_file_and_entry(world: Path, tmp_path: Path):
    entries = json.loads((world / "lxmert/mscoco_train.json").read_text())[:3]
    bad = [dict(e) for e in entries]
    bad[2]["img_id"] = "no_such_image"
    path = tmp_path / "bad_img.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(KeyError, match=r"bad_img\.json: entry 2 .*'no_such_image' is not in the feature store"):
        PretrainingDataset(path, world / "features/store", answer_table=world / "lxmert/all_ans.json")
    bad = [dict(e) for e in entries]
    del bad[1]["sentf"]
    path.write_text(json.dumps(bad))
    with pytest.raises(DataFormatError, match=r"bad_img\.json: entry 1 .*missing key 'sentf'"):
        PretrainingDataset(path, world / "features/store", answer_table=world / "lxmert/all_ans.json")
    bad = [dict(e) for e in entries]
    bad[0]["labelf"] = {"vqa": [{"x": 1.0}]}
    path.write_text(json.dumps(bad))
    with pytest.raises(DataFormatError, match=r"entry 0 .*labelf\['vqa'\] must be a list aligned"):
        PretrainingDataset(path, world / "features/store", answer_table=world / "lxmert/all_ans.json")
    lines = tmp_path / "bad.jsonl"
    lines.write_text('{"img_id": "synth_train_000000", "text": "ok"}\n\n{"img_id": "synth_train_000000"}\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:3: missing key 'text'"):
        PretrainingDataset(lines, world / "features/store", answer_table=world / "lxmert/all_ans.json")
    lines.write_text('{"img_id": "synth_train_000000", "text": "ok"\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:1: not valid JSON"):
        PretrainingDataset(lines, world / "features/store", answer_table=world / "lxmert/all_ans.json")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        PretrainingDataset(tmp_path / "nope.json", world / "features/store", answer_table=AnswerTable(["a"]))


def test_token_cache_is_reused_and_keyed_on_the_inputs(world: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    src = tmp_path / "train.json"
    src.write_bytes((world / "lxmert/mscoco_train.json").read_bytes())
    first = PretrainingDataset(src, world / "features/store", answer_table=world / "lxmert/all_ans.json",
                               token_cache=cache)
    files = list(cache.glob("*.npz"))
    assert len(files) == 1
    second = PretrainingDataset(src, world / "features/store", answer_table=world / "lxmert/all_ans.json",
                                token_cache=cache)
    assert np.array_equal(first.tokens.ids, second.tokens.ids) and np.array_equal(first[4]["input_ids"], second[4]["input_ids"])
    PretrainingDataset(src, world / "features/store", answer_table=world / "lxmert/all_ans.json",
                       token_cache=cache, sources={"vqa"})
    assert len(list(cache.glob("*.npz"))) == 2, "other sources, other key"
    entries = json.loads(src.read_text())
    entries[0]["sentf"]["mscoco"][0] = "a completely different caption ."
    src.write_text(json.dumps(entries))
    third = PretrainingDataset(src, world / "features/store", answer_table=world / "lxmert/all_ans.json",
                               token_cache=cache)
    assert not np.array_equal(third.tokens[0], first.tokens[0]), "edited file, fresh tokens"


def test_split_paths(world: Path):
    from lxmert.data.splits import split_paths

    assert split_paths(world / "lxmert", "mscoco_train, mscoco_minival") == [
        world / "lxmert/mscoco_train.json", world / "lxmert/mscoco_minival.json"]
    with pytest.raises(FileNotFoundError, match=r"'vgnococo'.*splits in .*mscoco_minival"):
        split_paths(world / "lxmert", "mscoco_train,vgnococo")


@pytest.mark.parametrize("kwargs", [{}, {"match_sources": ["vg"]}])
def test_epoch_lengths_are_the_lengths_the_examples_carry(world: Path, kwargs):
    ds = dataset(world, **kwargs)
    for epoch in (0, 3):
        lengths = ds.epoch_lengths(epoch)
        assert lengths.shape == (len(ds),) and lengths.dtype == np.int64
        carried = [len(ds[(epoch, i)]["input_ids"]) for i in range(len(ds))]
        assert lengths.tolist() == carried, "the sentence draw replayed, mismatched ones included"
    mismatched = [i for i in range(len(ds)) if ds[(0, i)]["matched_label"] == 0]
    assert mismatched and not np.array_equal(ds.epoch_lengths(0), ds.lengths), "not the own sentences'"
    assert not np.array_equal(ds.epoch_lengths(0), ds.epoch_lengths(1))


def test_length_buckets_of_pretraining_carry_no_matching_cue(world: Path):
    """Bucketed by the carried lengths, matched and mismatched examples of a batch have the
    same length spread (bucketing by the OWN lengths would sort the mismatched ones apart)."""
    from lxmert.training.sampler import GlobalBatchSampler

    ds = dataset(world)
    lengths = ds.epoch_lengths(0)
    spreads = []
    for batch in GlobalBatchSampler(len(ds), 32, 0, 0, lengths=lengths, window_batches=8):
        items = [ds[(0, int(i))] for i in batch]
        carried = {int(e["matched_label"]): [] for e in items}
        for e in items:
            carried[int(e["matched_label"])].append(len(e["input_ids"]))
        if len(carried.get(0, [])) and len(carried.get(1, [])):
            spreads.append(abs(np.mean(carried[0]) - np.mean(carried[1])))
    assert spreads and float(np.mean(spreads)) < 1.0, spreads
