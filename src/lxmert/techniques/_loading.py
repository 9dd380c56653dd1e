"""Load whatever model a checkpoint holds, classification heads included.

`lxmert.checkpoints.load_any` knows the release's heads; the classifier head
(`classifier.*`, :class:`lxmert.tasks.classification.LxmertForClassification`) is
recognised here until the checkpoint module learns it.
"""

from __future__ import annotations

import os
from typing import Any

import torch


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", **overrides: Any):
    """The model of `path` (class chosen from its heads), in eval mode."""
    from lxmert.checkpoints import load_any, load_canonical
    from lxmert.tasks.classification import LxmertForClassification

    state, _, _ = load_canonical(path, map_location, **overrides)
    if any(k.startswith("classifier.") for k in state):
        return LxmertForClassification.from_pretrained(path, map_location=map_location, **overrides)
    return load_any(path, map_location, **overrides)
