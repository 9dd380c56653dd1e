"""Answer heads across answer tables: remap a head's rows by answer text, as the release did.

A QA head's last layer has one row per answer. Fine-tuning VQA from the pre-trained model
(9500 answers) or moving a head to another table copies each target answer's row from
the source row of the same (normalised) answer; answers the source lacks start at zero.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from lxmert.checkpoint.layouts import ANSWER_BIAS_KEY, ANSWER_WEIGHT_KEY
from lxmert.errors import CheckpointError
from lxmert.text import AnswerTable, normalize_answer

__all__ = ["remap_answer_head", "release_answers"]

_RELEASE_TABLES = {9500: "pretrain", 3129: "vqa", 1842: "gqa"}


def release_answers(rows: int) -> list[str] | None:
    """The release's table of that size (9500 pre-training, 3129 VQA, 1842 GQA), else None.

    The authors' `.pth` files carry no answer list; their head sizes identify the table."""
    name = _RELEASE_TABLES.get(rows)
    return AnswerTable.from_name(name).answers if name else None


def remap_answer_head(state: Mapping[str, torch.Tensor], source: Sequence[str], target: Sequence[str]
                      ) -> tuple[dict[str, torch.Tensor], int]:
    """Rebuild the last answer layer row by row for `target` (see the module docstring).

    Each target answer is looked up normalised, then as given, in `source` (the release's
    order: a table holding both forms takes the normalised one's row); found rows are
    copied, unknown answers get zero weight and bias. Returns (new state, rows copied).
    """
    weight, bias = state[ANSWER_WEIGHT_KEY], state[ANSWER_BIAS_KEY]
    if weight.shape[0] != len(source):
        raise CheckpointError(f"answer head has {weight.shape[0]} rows but the source answer list "
                              f"has {len(source)}")
    index = {ans: i for i, ans in enumerate(source)}
    new_w = weight.new_zeros(len(target), weight.shape[1])
    new_b = bias.new_zeros(len(target))
    copied = 0
    for row, ans in enumerate(target):
        src = index.get(normalize_answer(ans), index.get(ans))
        if src is not None:
            new_w[row], new_b[row] = weight[src], bias[src]
            copied += 1
    out = dict(state)
    out[ANSWER_WEIGHT_KEY], out[ANSWER_BIAS_KEY] = new_w, new_b
    return out, copied
