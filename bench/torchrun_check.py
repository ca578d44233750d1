"""Check that a machine (or a cluster allocation) trains correctly under torchrun.

    torchrun --standalone --nproc_per_node=2 -m bench.torchrun_check --out /tmp/ddp-check

Every rank trains a small residual MLP for a few steps, writes its final
weights to ``OUT/rank<r>.pt``, and rank 0 prints whether all ranks ended with
bitwise identical weights (exit status 1 if not). ``--checkpoint-dir DIR``
also exercises checkpointing (rank 0 writes, every rank resumes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from bench.core.distributed import current_group, gather_rows, init_from_env
from bench.core.io import atomic_path
from bench.core.training import TrainConfig, train_network
from methods.backbones import BackboneConfig, build_backbone


def _check_run(out: Path, steps: int, checkpoint_dir: Path | None) -> int:
    """Train a small MLP on this process's rank; return an exit status (0: ranks agree)."""
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
    """Command line of ``python -m bench.torchrun_check`` (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bench.torchrun_check",
                                     description="Check training under torchrun.")
    parser.add_argument("--out", type=Path, required=True, help="folder for rank<r>.pt files")
    parser.add_argument("--steps", type=int, default=20, help="training steps (default 20)")
    parser.add_argument("--checkpoint-dir", type=Path, default=None,
                        help="also write (and resume from) a checkpoint every 10 steps here")
    args = parser.parse_args(argv)
    return _check_run(args.out, args.steps, args.checkpoint_dir)


if __name__ == "__main__":
    sys.exit(main())
