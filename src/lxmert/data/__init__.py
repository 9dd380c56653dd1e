"""The data layer: generated worlds, datasets, masking and batches.

- `synth`: `generate_world` / `lxmert synth`, a world of simple scenes written in the
  release's file formats (features TSV, pre-training / VQA / GQA / NLVR2 json, a Karpathy
  retrieval split, optionally pictures).
- `karpathy`: `read_karpathy`, the Karpathy-split caption files of retrieval papers.
- `pretraining.PretrainingDataset`: (image, sentence) examples with the five tasks' targets.
- `qa.VQADataset`, `qa.GQADataset` (and the `qa.QADataset` base), `nlvr2.NLVR2Dataset`.
- `jsonl`: a general image-text JSONL format for your own pre-training data.
- `masking`: the paper's word and object masking, as pure functions.
- `collate`: `move_to`, padding helpers and the `Batch` type (length-aware batching is
  the trainer's: `lxmert.training.sampler.GlobalBatchSampler`).

Every dataset has `.collate` (pass it to `DataLoader(collate_fn=...)`), `.lengths` (for
length bucketing) and produces `Batch(inputs, meta)`: the models' keyword arguments and
the examples' ids.

The names below are imported on first use, so that `lxmert.data.synth` (numpy only) does
not pay for torch and the datasets.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Batch": "collate", "move_to": "collate",
    "read_jsonl": "jsonl", "write_jsonl": "jsonl",
    "CaptionSplit": "karpathy", "read_karpathy": "karpathy",
    "IGNORE_INDEX": "masking", "mask_objects": "masking", "mask_tokens": "masking",
    "NLVR2Dataset": "nlvr2", "collate_nlvr2": "nlvr2",
    "PretrainingDataset": "pretraining", "collate_pretraining": "pretraining",
    "GQADataset": "qa", "QADataset": "qa", "QAEntry": "qa", "VQADataset": "qa", "collate_qa": "qa",
    "DataFormatError": "sources", "TextExample": "sources", "read_pretrain_json": "sources",
    "split_paths": "splits",
    "SynthConfig": "synth", "generate_world": "synth",
}

__all__ = sorted([*_EXPORTS, "ImageFeatures"])


def __getattr__(name: str) -> Any:
    if name == "ImageFeatures":  # it lives with the feature stores
        value = importlib.import_module("lxmert.features.union").ImageFeatures
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    else:
        raise AttributeError(f"module 'lxmert.data' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
