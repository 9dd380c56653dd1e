"""Training: the release's optimiser, recipes, the one loop, DDP, checkpoints and resume.

Entry points: `pretrain(...)`, `finetune(...)` (in `lxmert.training.run`), or `Trainer`
with your own `TaskAdapter`.
"""

from lxmert.training.optim import BertAdam, build_optimizer, build_scheduler, warmup_linear
from lxmert.training.recipe import Recipe, load_recipe
from lxmert.training.state import latest_checkpoint
from lxmert.training.trainer import FitResult, NonFiniteLossError, TaskAdapter, Trainer

__all__ = [
    "BertAdam", "build_optimizer", "build_scheduler", "warmup_linear", "Recipe", "load_recipe",
    "latest_checkpoint", "FitResult", "NonFiniteLossError", "TaskAdapter", "Trainer",
]
