"""move_to, padding and the batch type (length bucketing: tests/training/test_sampler.py)."""

from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest
import torch

from lxmert.data.collate import Batch, move_to, pad_1d, stack_objects, text_batch


def test_move_to_walks_nested_batches():
    Pair = namedtuple("Pair", "a b")
    batch = {"x": torch.zeros(2), "obj": {"feat": (torch.ones(1), torch.ones(1))}, "ids": [1, 2],
             "nt": Pair(torch.ones(1), 3)}
    moved = move_to(batch, torch.device("cpu"))
    assert isinstance(moved["obj"]["feat"], tuple) and isinstance(moved["nt"], Pair)
    assert moved["ids"] == [1, 2] and moved["nt"].b == 3
    if torch.cuda.is_available():  # pragma: no cover - only on GPU machines
        assert move_to(batch, "cuda")["x"].is_cuda


def test_padding_helpers():
    t = text_batch([np.asarray([101, 5, 102]), np.asarray([101, 102])], pad_id=0)
    assert t["input_ids"].tolist() == [[101, 5, 102], [101, 102, 0]]
    assert t["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert pad_1d([[1], [2, 3]], -100).tolist() == [[1, -100], [2, 3]]
    with pytest.raises(ValueError, match="shorter than the longest"):
        pad_1d([[1, 2, 3]], 0, length=2)
    s = stack_objects([np.ones((2, 3), np.float32), np.ones((1, 3), np.float32)])
    assert s.shape == (2, 2, 3) and s[1, 1].eq(0).all()


def test_batch_size_from_inputs_or_meta():
    batch = Batch({"input_ids": torch.zeros(3, 5, dtype=torch.long)}, {"question_id": [1, 2, 3]})
    assert batch.size == 3
    # evaluation outputs put back in file order carry only meta
    assert Batch({}, {"question_id": [4, 5]}).size == 2
    assert Batch({}, {}).size == 0
