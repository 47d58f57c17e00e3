"""torch.distributed, as torchrun sets it up: rank, world size, barriers."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank); starts the process group on first use
    under torchrun (NCCL with CUDA, gloo otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
