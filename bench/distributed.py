"""Training one cell on several processes: torchrun and DistributedDataParallel.

Nothing here starts processes. ``torchrun`` starts one process per GPU (or per
CPU slot) and describes the group in environment variables (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). A script
joins the group with :func:`init_from_env` and then calls a method's ``fit``
exactly as on one process: :func:`bench.training.train_network` sees the
initialised group, wraps the network in DistributedDataParallel, gives each
rank its share of every batch, and lets only rank 0 write checkpoints.

Check that a machine (or a cluster allocation) trains correctly under torchrun:

    torchrun --standalone --nproc_per_node=2 -m bench.distributed --out /tmp/ddp-check

Every rank trains a small residual MLP for a few steps, writes its final
weights to ``OUT/rank<r>.pt``, and rank 0 prints whether all ranks ended with
bitwise identical weights (exit status 1 if not). ``--checkpoint-dir DIR``
also exercises checkpointing (rank 0 writes, every rank resumes).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from bench.errors import BenchError
from bench.io import atomic_path


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


def _check_run(out: Path, steps: int, checkpoint_dir: Path | None) -> int:
    """Train a small MLP on this process's rank; return an exit status (0: ranks agree)."""
    from bench.training import TrainConfig, train_network
    from methods.backbones import BackboneConfig, build_backbone

    device = init_from_env("cpu" if not torch.cuda.is_available() else None)
    group = current_group()
    data = torch.randn(512, 8, generator=torch.Generator().manual_seed(0)) * 0.5 + 1.0
    network = build_backbone((8,), BackboneConfig(width=32, depth=2, time_embedding=16), seed=0)
    config = TrainConfig(steps=steps, batch_size=64, learning_rate=3e-3, warmup_steps=2,
                         ema_decay=0.9, checkpoint_every=10 if checkpoint_dir else 0)
    result = train_network(network, _denoising_loss, data, config, seed=0, device=device,
                           name="ddp-check", checkpoint_dir=checkpoint_dir)
    weights = torch.cat([p.detach().flatten().cpu() for p in network.parameters()])
    with atomic_path(out / f"rank{group.rank}.pt") as tmp:
        torch.save({"rank": group.rank, "world_size": group.size, "losses": result.losses,
                    "network": {k: v.cpu() for k, v in network.state_dict().items()},
                    "ema": {k: v.cpu() for k, v in result.ema.state_dict().items()}}, tmp)
    sums = gather_rows(torch.stack([weights.double().sum(), weights.double().square().sum()]),
                       group, device)
    agree = bool((sums == sums[0]).all())
    if group.is_main:
        print(f"ranks: {group.size}; loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}; "
              f"weights identical on all ranks: {'yes' if agree else 'NO'}")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0 if agree else 1


def _denoising_loss(network: torch.nn.Module, batch: torch.Tensor,
                    generator: torch.Generator) -> torch.Tensor:
    """A flow-matching loss on a straight path from noise to ``batch``."""
    noise = torch.randn(batch.shape, generator=generator).to(batch.device)
    t = torch.rand(len(batch), generator=generator).to(batch.device)
    x_t = (1 - t[:, None]) * noise + t[:, None] * batch
    return (network(x_t, t) - (batch - noise)).square().mean()


def main(argv: list[str] | None = None) -> int:
    """Command line of ``python -m bench.distributed`` (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bench.distributed",
                                     description="Check training under torchrun.")
    parser.add_argument("--out", type=Path, required=True, help="folder for rank<r>.pt files")
    parser.add_argument("--steps", type=int, default=20, help="training steps (default 20)")
    parser.add_argument("--checkpoint-dir", type=Path, default=None,
                        help="also write (and resume from) a checkpoint every 10 steps here")
    args = parser.parse_args(argv)
    return _check_run(args.out, args.steps, args.checkpoint_dir)


if __name__ == "__main__":
    sys.exit(main())
