"""The generated world is pinned: two small worlds' files have fixed sha256 digests.

The demo's published figures (docs, report.json) were computed on generated worlds, so any
change to what a config generates - a reordered draw, a new random call, a changed
template - must be deliberate. These digests were taken from the world code before it was
split into `lxmert.data.synth.*` modules (and match it); a failure lists the files that
changed. If a change of the world is intended, regenerate the figures that depend on it
and update the digests (the assertion message prints the new ones).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import pytest

from lxmert.data.synth import SynthConfig, generate_world, render_world_image

CONFIGS = {
    "dense": dict(images=12, seed=5, feat_dim=4, num_boxes=20, max_objects=4, val_fraction=0.25,
                  test_fraction=0.25, nlvr2_per_image=2.0),
    "channels": dict(images=9, seed=11, feat_dim=8, min_objects=2, max_objects=6, feature_code="channels",
                     nlvr2_kinds=("side", "count"), nlvr2_pairs_per_sentence=3, captions_per_image=2,
                     vqa_per_image=3),
}

# First 16 hex digits of each file's sha256 (synth.json is left out: it records the run's
# duration and directory).
DIGESTS = {
    "dense": {
        "features/test_obj36.tsv": "62c5f004ad9d1fd0",
        "features/train_obj36.tsv": "a99ffc962e2ef51a",
        "features/val_obj36.tsv": "ee40bf3888cd2f43",
        "gqa/testdev.json": "4854e173dfae4e83",
        "gqa/train.json": "42be024b6331232c",
        "gqa/trainval_ans2label.json": "f018c525025b9318",
        "gqa/trainval_label2ans.json": "4c32cf889b4579a5",
        "gqa/valid.json": "fbb853332245bf88",
        "lxmert/all_ans.json": "b834d4b883197a34",
        "lxmert/mscoco_minival.json": "2ba0885f2857c302",
        "lxmert/mscoco_train.json": "7e8ac4636a8270c2",
        "nlvr2/test.json": "ed31ea9b103ef0e7",
        "nlvr2/train.json": "fd5dee7400cae8ae",
        "nlvr2/valid.json": "4eda799e0aee02ed",
        "retrieval/dataset_world.json": "d1f80482bf594bbe",
        "vocab.txt": "07eced375cec144d",
        "vqa/minival.json": "f8ccea6ad2d46dcb",
        "vqa/test.json": "a99f3d017d942c50",
        "vqa/train.json": "5bc27359ffd4cbd1",
        "vqa/trainval_ans2label.json": "2e1973e1278c6784",
        "vqa/trainval_label2ans.json": "bc0ac707f3f63262",
    },
    "channels": {
        "features/test_obj36.tsv": "d2f67866bda80e18",
        "features/train_obj36.tsv": "9ce749fb77c0399e",
        "features/val_obj36.tsv": "6eb48d6f808e1c1f",
        "gqa/testdev.json": "0e559f5769b0f0a5",
        "gqa/train.json": "3d326c4aa8511fca",
        "gqa/trainval_ans2label.json": "f018c525025b9318",
        "gqa/trainval_label2ans.json": "4c32cf889b4579a5",
        "gqa/valid.json": "90524ec14bb6b317",
        "lxmert/all_ans.json": "b834d4b883197a34",
        "lxmert/mscoco_minival.json": "0e0ba17f0392b671",
        "lxmert/mscoco_train.json": "f5d861e45db664a4",
        "nlvr2/test.json": "37517e5f3dc66819",
        "nlvr2/train.json": "988d445170ff4a62",
        "nlvr2/valid.json": "37517e5f3dc66819",
        "retrieval/dataset_world.json": "094ccd6387c71285",
        "vocab.txt": "07eced375cec144d",
        "vqa/minival.json": "fef1defe48796729",
        "vqa/test.json": "7c76ce1d06082b23",
        "vqa/train.json": "ac88c2fbef055d3a",
        "vqa/trainval_ans2label.json": "2e1973e1278c6784",
        "vqa/trainval_label2ans.json": "bc0ac707f3f63262",
    },
}


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "synth.json"}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_world_files_are_pinned(tmp_path: Path, name: str):
    generate_world(tmp_path / "w", SynthConfig(**CONFIGS[name]), progress=False)
    got = digests(tmp_path / "w")
    want = DIGESTS[name]
    changed = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))
    assert not changed, f"world {name!r} changed in {changed}; its digests now: {got}"


def test_generation_draws_nothing_from_the_global_generators(tmp_path: Path):
    """Every draw comes from an explicit generator: the process-wide `random` and numpy
    states are untouched by generating (with pictures) and rendering."""
    before = random.getstate(), np.random.get_state()
    generate_world(tmp_path / "w", SynthConfig(**CONFIGS["dense"], pictures="test"), progress=False)
    render_world_image(tmp_path / "w", "synth_train_000000")
    after = random.getstate(), np.random.get_state()
    assert before[0] == after[0]
    assert all(np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b for a, b in zip(before[1], after[1]))
