"""DDP plumbing: one process per device, started by `torchrun` (or by a test's spawner).

`torchrun --nproc_per_node N [--nnodes M --node_rank R --master_addr A]` sets RANK,
LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT; we read them, pick gloo on CPU and
nccl on CUDA, and give each rank `global_batch / world_size` examples per step. Everything
that writes (logs, metrics, checkpoints) happens on rank 0 only; the others wait at a
barrier so that no rank races ahead of a checkpoint being written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init_distributed", "cleanup_distributed", "all_reduce_sum", "barrier"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank, world size and the device it owns."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _pick_device(requested: str, local_rank: int) -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {requested!r} requested but CUDA is not available")
        index = local_rank if requested == "cuda" else torch.device(requested).index
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    if requested == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("device 'mps' requested but MPS is not available")
    return torch.device(requested)


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group described by torchrun's env vars (a no-op for one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _pick_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world, device=dev)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (identity for one process); used for metric counts."""
    if dist.is_available() and dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values
