"""Shared helper for the data tests: a small generated world with a feature store."""

from __future__ import annotations

from pathlib import Path

from lxmert.data.synth import SynthConfig, generate_world

FEAT_DIM = 16


def make_world(root: Path, images: int = 40, seed: int = 0, store: bool = True, **overrides) -> Path:
    out = root / f"world-{images}-{seed}"
    if not (out / "synth.json").exists():
        settings = {"feat_dim": FEAT_DIM, "val_fraction": 0.2, "test_fraction": 0.2, **overrides}
        cfg = SynthConfig(images=images, seed=seed, **settings)
        generate_world(out, cfg, build_store=store, progress=False)
    return out
