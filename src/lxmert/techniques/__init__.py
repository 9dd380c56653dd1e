"""Techniques later work built on LXMERT, each usable from the one training pipeline.

- :mod:`lxmert.techniques.adversarial`: VILLA-style adversarial fine-tuning in embedding
  space (`adversarial_step`, wired into the training loop by `--adv`).
- :mod:`lxmert.techniques.pruning`: magnitude pruning (global / per tensor), masks kept
  after every optimiser step, lottery-ticket rewinding, sparsity reports (`lxmert prune`).
"""

from lxmert.techniques.adversarial import AdvConfig, adversarial_step, symmetric_kl
from lxmert.techniques.pruning import (
    PruningMasks,
    format_report,
    lottery_ticket,
    magnitude_masks,
    masks_from_zeros,
    prunable_parameters,
    prune_model,
    sparsity_report,
)

__all__ = [
    "AdvConfig", "adversarial_step", "symmetric_kl", "PruningMasks", "format_report", "lottery_ticket",
    "magnitude_masks", "masks_from_zeros", "prunable_parameters", "prune_model", "sparsity_report",
]
