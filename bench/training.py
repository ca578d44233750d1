"""The one training loop every deep method shares.

AdamW, linear warm-up then cosine decay of the learning rate, gradient
clipping and an exponential moving average (EMA) of the weights, which is
what methods sample with. A loss that becomes NaN or infinite stops training
with an error naming the method, seed and step.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from bench.errors import BenchError

# loss_fn(network, batch, generator) -> scalar loss; the generator is the
# loop's own, so the noise a loss draws is seeded with the fit.
LossFn = Callable[[nn.Module, torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """Training budget and optimiser settings, the same for every deep method of a run."""

    steps: int = 2000
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    mixed_precision: bool = True
    checkpoint_every: int = 0
    progress: bool = False


@dataclass
class TrainResult:
    """Outcome of :func:`train_network`: the EMA network and the loss per step."""

    ema: nn.Module
    losses: list[float] = field(default_factory=list)
    steps: int = 0
    wall_time_s: float = 0.0
    parameter_count: int = 0


def train_network(network: nn.Module, loss_fn: LossFn, data: torch.Tensor, config: TrainConfig,
                  seed: int, device: torch.device, name: str) -> TrainResult:
    """Train ``network`` on ``data`` (N, *shape) by minimising ``loss_fn``.

    Batches are drawn with replacement by a generator seeded with ``seed``, so
    the same seed on CPU gives bitwise identical weights.

    Args:
        network: the model; trained in place.
        loss_fn: scalar loss of one batch.
        data: the training set in representation space.
        config: budget and optimiser settings.
        seed: seeds batch order, noise and initial weights drawn inside the loop.
        device: where to train.
        name: method name, for error messages.
    """
    start = time.perf_counter()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    network = network.to(device)
    data = data.to(device)
    ema = copy.deepcopy(network).requires_grad_(False)
    optimiser = torch.optim.AdamW(network.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, _warmup_cosine(config))
    losses = []
    for step in range(config.steps):
        index = torch.randint(len(data), (config.batch_size,), generator=generator)
        loss = loss_fn(network, data[index.to(device)], generator)
        if not torch.isfinite(loss):
            raise BenchError(f"method {name!r}, seed {seed}: the training loss became "
                             f"{loss.item()} at step {step}; lower the learning rate or check "
                             f"the data")
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(network.parameters(), config.grad_clip)
        optimiser.step()
        schedule.step()
        _update_ema(ema, network, config.ema_decay)
        losses.append(loss.item())
    return TrainResult(ema=ema, losses=losses, steps=config.steps,
                       wall_time_s=time.perf_counter() - start,
                       parameter_count=sum(p.numel() for p in network.parameters()
                                           if p.requires_grad))


def _warmup_cosine(config: TrainConfig) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up, then cosine decay to zero at the last step."""

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


@torch.no_grad()
def _update_ema(ema: nn.Module, network: nn.Module, decay: float) -> None:
    for averaged, current in zip(ema.parameters(), network.parameters()):
        averaged.lerp_(current, 1.0 - decay)
    for averaged, current in zip(ema.buffers(), network.buffers()):
        averaged.copy_(current)
