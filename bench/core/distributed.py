"""Process groups for training one cell on several processes (torchrun, DDP).

Nothing here starts processes. ``torchrun`` starts one process per GPU (or per
CPU slot) and describes the group in environment variables (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). A script
joins the group with :func:`init_from_env` and then calls a method's ``fit``
exactly as on one process: :func:`bench.core.training.train_network` sees the
initialised group, wraps the network in DistributedDataParallel, gives each
rank its share of every batch, and lets only rank 0 write checkpoints.
``python -m bench.torchrun_check`` checks a machine with it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from bench.core.errors import BenchError

T = TypeVar("T")


@dataclass(frozen=True)
class ProcessGroup:
    """Where this process stands in its group; ``size`` 1 means a plain single process."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and shows progress (rank 0)."""
        return self.rank == 0


def current_group() -> ProcessGroup:
    """The initialised default process group, or a group of one when there is none."""
    if dist.is_available() and dist.is_initialized():
        return ProcessGroup(dist.get_rank(), dist.get_world_size())
    return ProcessGroup()


def launched_by_torchrun() -> bool:
    """True when the environment describes a group of more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str | torch.device | None = None) -> torch.device:
    """Join the process group that torchrun describes; return this process's device.

    Without torchrun's variables (or with ``WORLD_SIZE=1``) nothing is initialised
    and the requested device is returned unchanged. With them, CUDA processes use
    ``cuda:LOCAL_RANK`` and the NCCL backend; CPU processes use gloo.

    Args:
        device: "cpu", "cuda" or None (CUDA when available).
    """
    wanted = torch.device(device if device is not None else
                          ("cuda" if torch.cuda.is_available() else "cpu"))
    if not launched_by_torchrun():
        return wanted
    if wanted.type == "cuda":
        wanted = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(wanted)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if wanted.type == "cuda" else "gloo")
    return wanted


def rank_seed(seed: int, rank: int) -> int:
    """Seed of rank ``rank``'s generator: ``seed`` itself on rank 0, a hash of both otherwise."""
    if rank == 0:
        return seed
    digest = hashlib.sha256(f"skull-bench:{seed}:{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def local_batch_size(batch_size: int, group: ProcessGroup) -> int:
    """Each rank's share of a global batch; the batch must split evenly."""
    if batch_size % group.size:
        raise BenchError(f"train.batch_size={batch_size} does not split evenly over "
                         f"{group.size} processes; choose a multiple of {group.size}")
    return batch_size // group.size


def mean_over_ranks(tensor: torch.Tensor, group: ProcessGroup) -> torch.Tensor:
    """The element-wise mean of ``tensor`` over all ranks (the tensor itself on one process)."""
    if group.size == 1:
        return tensor
    total = tensor.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / group.size


def gather_rows(tensor: torch.Tensor, group: ProcessGroup, device: torch.device) -> torch.Tensor:
    """Every rank's ``tensor`` stacked into (size, *tensor.shape) on the CPU, in rank order.

    ``device`` is where the collective runs (the training device: NCCL needs CUDA).
    """
    if group.size == 1:
        return tensor.unsqueeze(0).cpu()
    local = tensor.to(device)
    rows = [torch.empty_like(local) for _ in range(group.size)]
    dist.all_gather(rows, local)
    return torch.stack(rows).cpu()


def main_rank_value(value: T, group: ProcessGroup) -> T:
    """Rank 0's ``value`` (any picklable object) on every rank: one decision for the group.

    On one process the value itself; otherwise a collective that every rank must call.
    """
    if group.size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
