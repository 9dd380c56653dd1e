"""The grounding toy's world mode asks about the world's own detector records, truthfully."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import grounding_toy  # noqa: E402


def test_world_batches_are_truthful_balanced_and_split():
    world = grounding_toy.WorldImages("dense", n=60, train=50)
    assert world.feats.shape == (60, 20, 64) and world.pos.shape == (60, 20, 4)
    assert float(world.pos.min()) >= 0.0 and float(world.pos.max()) <= 1.0
    gen = torch.Generator().manual_seed(0)
    for held_out in (False, True):
        ids, feats, pos, y = world.batch(200, gen, held_out=held_out)
        assert ids.shape == (200, 4) and feats.shape == (200, 20, 64)
        assert 0.35 < float(y.float().mean()) < 0.65
        for row, f, label in zip(ids.tolist(), feats, y.tolist()):
            image = next(i for i in range(60) if torch.equal(world.feats[i], f))
            assert (image >= 50) == held_out
            colour = world.colours[row[1] - grounding_toy.COLOUR_IDS]
            shape = world.shapes[row[2] - grounding_toy.SHAPE_IDS]
            assert bool(world.scenes[image].count(colour=colour, shape=shape)) == bool(label)


def test_world_mode_runs_through_the_training_loop():
    """Wiring only (the learning itself is measured in docs/training.md, not timed here)."""
    world = grounding_toy.WorldImages("channels", n=40, train=30)
    curve = grounding_toy.train(0.1, steps=250, boxes=20, lr=3e-4, features="world-channels", world=world)
    assert [step for step, _ in curve] == [250] and 0.0 <= curve[0][1] <= 1.0
