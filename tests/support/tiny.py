"""A tiny feature store and a tiny config, for the tests of the tasks and techniques beyond the paper."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from lxmert.config import LxmertConfig

FEAT = 16


def tiny_store(root: Path, ids: Sequence[str], boxes: int = 5, seed: int = 0) -> Path:
    """A float32 feature store with `boxes` objects per image, features ~ N(0, 1)."""
    from lxmert.features.build import build_store
    from lxmert.features.tsv import write_tsv

    rng = np.random.default_rng(seed)
    records = []
    for img in ids:
        xy = rng.uniform(0, 50, size=(boxes, 2)).astype(np.float32)
        wh = rng.uniform(5, 40, size=(boxes, 2)).astype(np.float32)
        records.append({
            "img_id": img, "img_h": 100, "img_w": 120, "num_boxes": boxes,
            "objects_id": rng.integers(0, 1600, boxes).astype(np.int64),
            "objects_conf": rng.uniform(0.2, 1, boxes).astype(np.float32),
            "attrs_id": rng.integers(0, 400, boxes).astype(np.int64),
            "attrs_conf": rng.uniform(0.2, 1, boxes).astype(np.float32),
            "boxes": np.concatenate([xy, xy + wh], axis=1),
            "features": rng.standard_normal((boxes, FEAT)).astype(np.float32),
        })
    tsv = root / "feats.tsv"
    write_tsv(tsv, records)
    out = root / "store"
    build_store(tsv, out, dtype="float32", progress=False)
    return out


def tiny_config(**overrides) -> LxmertConfig:
    values = dict(vocab_size=30522, hidden_size=32, num_attention_heads=2, intermediate_size=64, l_layers=2,
                  x_layers=1, r_layers=1, visual_feat_dim=FEAT, num_qa_labels=7, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0)
    values.update(overrides)
    return LxmertConfig(**values)
