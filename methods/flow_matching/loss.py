"""The conditional flow matching loss, as a ``loss_fn`` for the shared training loop."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from methods.flow_matching.coupling import Coupling, Pairs
from methods.flow_matching.path import GaussianPath


@dataclass
class CouplingStats:
    """Running totals of what the coupling did during training.

    The costs stay tensors where the batches are, so that recording them
    never makes the host wait for an accelerator.

    Attributes:
        batches: batches coupled.
        seconds: time spent in ``Coupling.couple``.
        independent_cost: sum over batches of the mean |x_0 - x_1|^2 as drawn.
        coupled_cost: the same after coupling.
    """

    batches: int = 0
    seconds: float = 0.0
    independent_cost: torch.Tensor | float = 0.0
    coupled_cost: torch.Tensor | float = 0.0

    def add(self, drawn: Pairs, coupled: Pairs, seconds: float) -> None:
        self.batches += 1
        self.seconds += seconds
        self.independent_cost = self.independent_cost + _mean_squared_distance(drawn)
        self.coupled_cost = self.coupled_cost + _mean_squared_distance(coupled)

    def summary(self) -> dict[str, Any]:
        """Means per batch, for ``FitReport.extra``."""
        count = max(self.batches, 1)
        return {"coupling_seconds": self.seconds,
                "coupling_ms_per_batch": 1000 * self.seconds / count,
                "mean_independent_cost": float(self.independent_cost) / count,
                "mean_coupled_cost": float(self.coupled_cost) / count}


@dataclass
class FlowMatchingLoss:
    """L_CFM = E_{t, (x_0, x_1) ~ q, eps} |v_theta(x_t, t) - u_t(x_t | x_0, x_1)|^2.

    Lipman et al. 2023 ("Flow matching for generative modeling", Eq. 9), with
    the pairs drawn from a coupling q as in Tong et al. 2023 (arXiv:2302.00482);
    the squared norm is averaged over elements. For each batch, line by line:

        x_1 ~ data batch;  x_0 ~ N(0, I)            (or given pairs (x_0, x_1))
        (x_0, x_1) <- coupling(x_0, x_1)
        t ~ U[0, 1];  eps ~ N(0, I)
        x_t, u_t <- path(x_0, x_1, t, eps)
        loss = mean |v_theta(x_t, t) - u_t|^2

    All noise comes from the training loop's CPU generator.

    Args:
        path: the conditional probability path.
        coupling: how noise and data rows are paired.
        paired: the batch holds given pairs (B, 2, *shape) (x_0 = batch[:, 0],
            x_1 = batch[:, 1]) instead of data rows (B, *shape).
    """

    path: GaussianPath
    coupling: Coupling
    paired: bool = False
    stats: CouplingStats = field(default_factory=CouplingStats)

    def __call__(self, network: nn.Module, batch: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
        drawn = self.draw_pairs(batch, generator)
        start = time.perf_counter()
        x_0, x_1 = self.coupling.couple(drawn.x_0, drawn.x_1, generator)
        self.stats.add(drawn, Pairs(x_0, x_1), time.perf_counter() - start)
        t = torch.rand(len(x_1), generator=generator).to(x_1.device)
        eps = _standard_normal_like(x_1, generator)
        sample = self.path.sample(x_0, x_1, t, eps)
        prediction = network(sample.x_t, sample.t)
        return (prediction.float() - sample.velocity.float()).pow(2).mean()

    def draw_pairs(self, batch: torch.Tensor, generator: torch.Generator) -> Pairs:
        """The pairs before coupling: given ones, or fresh noise beside the data."""
        if self.paired:
            return Pairs(batch[:, 0], batch[:, 1])
        return Pairs(_standard_normal_like(batch, generator), batch)


def _standard_normal_like(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=generator, dtype=torch.float32)
    return noise.to(device=x.device, dtype=x.dtype)


def _mean_squared_distance(pairs: Pairs) -> torch.Tensor:
    difference = (pairs.x_1 - pairs.x_0).detach().reshape(len(pairs.x_0), -1)
    return difference.double().pow(2).sum(1).mean()
