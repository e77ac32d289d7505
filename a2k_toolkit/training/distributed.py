"""Process-group set-up for ``torchrun`` (or any launcher that sets ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` and
``MASTER_ADDR`` / ``MASTER_PORT``): NCCL on CUDA, gloo on CPU. A plain ``a2k train`` is a world of one."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..device import resolve_device
from ..errors import ConfigError


@dataclass
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    owns_group: bool = False  # this process created the group and destroys it at the end

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def setup(device: str = "auto") -> DistEnv:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv(device=resolve_device(device))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    dev = resolve_device(device)
    head = dev.split(":")[0]
    if head == "mps":
        raise ConfigError("multi-process training on Apple MPS is not supported; use device: cpu, or one process")
    if head == "cuda":
        if torch.cuda.device_count() <= local:
            raise ConfigError(
                f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA devices; start at most "
                "that many processes per node (torchrun --nproc_per_node)"
            )
        dev = f"cuda:{local}"
        torch.cuda.set_device(local)
    backend = "nccl" if head == "cuda" else "gloo"
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        owns = True
    return DistEnv(rank=rank, world_size=world, local_rank=local, device=dev, owns_group=owns)


def wrap(module: torch.nn.Module, env: DistEnv) -> torch.nn.Module:
    """``module`` in DistributedDataParallel (on this process's CUDA device, if any) when the world has several
    processes, else ``module`` itself."""
    if not env.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(module, device_ids=[env.local_rank] if env.device.startswith("cuda") else None)
