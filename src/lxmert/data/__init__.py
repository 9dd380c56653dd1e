"""The data layer: generated worlds, datasets, masking and batches.

- `synth`: `generate_world` / `lxmert synth`, a world of simple scenes written in the
  release's file formats (features TSV, pre-training / VQA / GQA / NLVR2 json, a Karpathy
  retrieval split, optionally pictures).
- `karpathy`: `read_karpathy`, the Karpathy-split caption files of retrieval papers.
- `pretraining.PretrainingDataset`: (image, sentence) examples with the five tasks' targets.
- `qa.VQADataset`, `qa.GQADataset` (and the `qa.QADataset` base), `nlvr2.NLVR2Dataset`.
- `jsonl`: a general image-text JSONL format for your own pre-training data.
- `masking`: the paper's word and object masking, as pure functions.
- `collate`: `move_to`, padding helpers and `LengthBucketBatchSampler`.

Every dataset has `.collate` (pass it to `DataLoader(collate_fn=...)`), `.lengths` (for
length bucketing) and produces batches whose tensors are the models' keyword arguments.
"""

from lxmert.data.collate import Batch, LengthBucketBatchSampler, move_to
from lxmert.data.jsonl import read_jsonl, write_jsonl
from lxmert.data.karpathy import CaptionSplit, read_karpathy
from lxmert.data.masking import IGNORE_INDEX, mask_objects, mask_tokens
from lxmert.data.nlvr2 import NLVR2Dataset, collate_nlvr2
from lxmert.data.pretraining import PretrainingDataset, collate_pretraining
from lxmert.data.qa import GQADataset, QADataset, QAEntry, VQADataset, collate_qa
from lxmert.data.sources import DataFormatError, TextExample, read_pretrain_json
from lxmert.data.splits import split_paths
from lxmert.features.union import ImageFeatures
from lxmert.data.synth import SynthConfig, generate_world

__all__ = [
    "Batch", "CaptionSplit", "DataFormatError", "GQADataset", "IGNORE_INDEX", "ImageFeatures",
    "LengthBucketBatchSampler", "NLVR2Dataset", "PretrainingDataset", "QADataset", "QAEntry", "SynthConfig",
    "TextExample", "VQADataset", "collate_nlvr2", "collate_pretraining", "collate_qa", "generate_world",
    "mask_objects", "mask_tokens", "move_to", "read_jsonl", "read_karpathy", "read_pretrain_json", "split_paths",
    "write_jsonl",
]
