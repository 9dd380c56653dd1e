"""Every answer a generated question can have is in the world's own answer tables.

A label answer missing from `vqa/trainval_label2ans.json` (or the GQA one) is silently
dropped by the loaders, so fine-tuning would never see those questions' answers.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from lxmert.data import GQADataset, VQADataset
from lxmert.data.synth import (COUNT_ANSWERS, GQA_ANSWERS, GQA_TEMPLATES, NLVR2_KINDS, VQA_ANSWERS,
                               VQA_TEMPLATES, SynthConfig, annotate, answer_space, generate_scene, generate_world,
                               nlvr2_statement)
from lxmert.text import AnswerTable, LxmertTokenizer


def test_every_template_answer_is_in_the_answer_spaces():
    """Enumerate the candidates of every template over many scenes (all object counts)."""
    rng = random.Random(0)
    vqa_seen: set[str] = set()
    gqa_seen: set[str] = set()
    for i in range(400):
        scene = generate_scene(f"s{i}", random.Random(i), min_objects=1 + i % 6, max_objects=1 + i % 6)
        for template in VQA_TEMPLATES:
            for _ in range(3):
                _, candidates = template(scene, rng)
                vqa_seen.update(answer for _, answer in candidates)
        for template in GQA_TEMPLATES:
            for _ in range(3):
                _, candidates = template(scene, rng)
                gqa_seen.update(answer for _, answer in candidates)
    assert vqa_seen <= set(VQA_ANSWERS), sorted(vqa_seen - set(VQA_ANSWERS))
    assert gqa_seen <= set(GQA_ANSWERS), sorted(gqa_seen - set(GQA_ANSWERS))
    # the spaces are really used (counts 0..6 with scenes of up to 6 objects, every shape, ...)
    assert set(COUNT_ANSWERS) <= vqa_seen and {"block", "pyramid", "disk"} <= vqa_seen & gqa_seen
    # simulated annotators only ever answer inside the question's answer space
    for answer in vqa_seen:
        for _ in range(20):
            assert set(annotate(answer, answer_space(answer), rng, (0.0, 0.2))) <= set(VQA_ANSWERS)


@pytest.mark.parametrize("kinds", [(), ("side", "both", "one")])
def test_world_tables_cover_every_label_and_loaders_drop_nothing(tmp_path: Path, kinds):
    out = tmp_path / "w"
    generate_world(out, SynthConfig(images=120, feat_dim=4, num_boxes=20, max_objects=4, nlvr2_kinds=kinds),
                   build_store=True, progress=False)
    tok = LxmertTokenizer.from_vocab(out / "vocab.txt")
    pretrain = {e["ans"] for e in json.loads((out / "lxmert/all_ans.json").read_text())}
    for task, cls, splits in (("vqa", VQADataset, ("train", "minival", "test")),
                              ("gqa", GQADataset, ("train", "valid", "testdev"))):
        table = AnswerTable.from_file(out / task / "trainval_label2ans.json")
        assert table.answers == AnswerTable.from_file(out / task / "trainval_ans2label.json").answers
        assert set(table.answers) <= pretrain
        for split in splits:
            entries = json.loads((out / task / f"{split}.json").read_text())
            missing = {a for e in entries for a in e["label"]} - set(table.answers)
            assert not missing, (task, split, missing)
            data = cls([out / task / f"{split}.json"], [out / "features" / "store"], tok, table)
            assert data.stats.answers_dropped == 0 and data.stats.labels_emptied == 0, data.stats.summary()


def test_nlvr2_kinds_select_statements():
    rng = random.Random(1)
    left, right = (generate_scene(n, random.Random(n), 3, 4) for n in ("l", "r"))
    starts = {"side": "the ", "both": "both images", "one": "exactly one image"}
    for _ in range(50):
        sent, truth = nlvr2_statement(left, right, rng, ("side", "both", "one"))
        assert sent.startswith(tuple(starts.values())) and "more" not in sent and "exactly" not in sent.replace(
            "exactly one image", ""), sent
        assert isinstance(truth(left, right), bool)
    with pytest.raises(ValueError, match="nlvr2_kinds"):
        SynthConfig(nlvr2_kinds=("nope",)).validate()
    assert set(NLVR2_KINDS) == {"side", "both", "one", "count", "more", "each"}

