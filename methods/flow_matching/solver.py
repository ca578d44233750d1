"""Sampling by integrating the learned ODE dx/dt = v(x, t) from noise (t=0) to data (t=1).

Integration is torchdiffeq's ``odeint``. Fixed-grid solvers take ``steps``
equal steps of 1/steps and make a known number of network evaluations per step
(``STAGES``); ``dopri5`` chooses its own steps to meet the tolerances atol and
rtol and ignores ``steps``. Either way the number of function evaluations
(NFE) reported is the number of network calls actually made, counted by
:class:`VelocityField`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torchdiffeq import odeint

from bench.core.errors import BenchError

STAGES: dict[str, int | None] = {"euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4,
                                 "dopri5": None}
"""Network evaluations per step of each solver; None: adaptive (counted)."""

MAX_ADAPTIVE_STEPS = 10_000


def check_solver(name: str) -> str:
    """``name`` if it is a solver of :data:`STAGES`, else a :class:`BenchError` listing them."""
    if name not in STAGES:
        raise BenchError(f"unknown ODE solver {name!r} (parameter solver); allowed: "
                         f"{', '.join(STAGES)}")
    return name


class VelocityField(nn.Module):
    """v(t, x) = network(x, t) in torchdiffeq's argument order, counting its calls.

    Args:
        network: net(x (B, *shape), t (B,)) -> (B, *shape).
        record: keep every evaluated velocity in ``velocities`` (for straightness).

    Attributes:
        nfe: network evaluations so far.
        velocities: the evaluated velocities, when ``record``.
    """

    def __init__(self, network: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 record: bool = False) -> None:
        super().__init__()
        self.network = network
        self.record = record
        self.nfe = 0
        self.velocities: list[torch.Tensor] = []

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        velocity = self.network(x, t.to(x.dtype).expand(len(x))).to(x.dtype)
        if self.record:
            self.velocities.append(velocity)
        return velocity


@dataclass(frozen=True)
class FlowSolution:
    """End of the integration: x_1 (B, *shape) and the network evaluations made."""

    x_1: torch.Tensor
    nfe: int


@torch.no_grad()
def integrate(field: VelocityField, x_0: torch.Tensor, steps: int, solver: str = "euler",
              atol: float = 1e-5, rtol: float = 1e-5) -> FlowSolution:
    """Solve dx/dt = v(x, t) on [0, 1] from x(0) = x_0.

    Args:
        field: the velocity; its ``nfe`` counter is read before and after.
        x_0: (B, *shape) noise.
        steps: equal steps of a fixed-grid solver; ignored by ``dopri5``.
        solver: a name of :data:`STAGES`.
        atol, rtol: tolerances of ``dopri5``. Its error norm is the largest
            per-sample root mean square, so that every sample meets them; the
            step sizes are shared by the batch, hence a ``dopri5`` sample moves
            (within tolerance) when the other samples of its batch change.
    """
    check_solver(solver)
    start_nfe = field.nfe
    ends = torch.tensor([0.0, 1.0], dtype=x_0.dtype, device=x_0.device)
    if STAGES[solver] is None:
        options = {"norm": _largest_sample_rms, "max_num_steps": MAX_ADAPTIVE_STEPS}
        try:
            path = odeint(field, x_0, ends, method=solver, atol=atol, rtol=rtol, options=options)
        except AssertionError as error:  # torchdiffeq's way of reporting max_num_steps
            raise BenchError(f"{solver}: more than {MAX_ADAPTIVE_STEPS} steps at atol={atol}, "
                             f"rtol={rtol} ({error}); raise the tolerances or use a fixed-grid "
                             f"solver") from error
    else:
        grid = torch.linspace(0.0, 1.0, steps + 1, dtype=x_0.dtype, device=x_0.device)
        path = odeint(field, x_0, ends, method=solver,
                      options={"grid_constructor": lambda *_: grid})
    return FlowSolution(x_1=path[-1], nfe=field.nfe - start_nfe)


def _largest_sample_rms(error_ratio: torch.Tensor) -> torch.Tensor:
    return error_ratio.reshape(len(error_ratio), -1).pow(2).mean(1).sqrt().max()


@torch.no_grad()
def straightness(network: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 x_0: torch.Tensor, steps: int = 100) -> float:
    """Liu et al. 2022's straightness S = int_0^1 E|(x_1 - x_0) - v(x_t, t)|^2 dt.

    S is 0 exactly when every trajectory is a straight line travelled at
    constant speed (then one Euler step is exact); lower is straighter. The
    trajectories are Euler's on ``steps`` equal steps and the integral their
    left Riemann sum, with x_1 the end they reach (Rectified flow, "Flow
    straight and fast", arXiv:2209.03003).

    Args:
        network: net(x, t) -> velocity.
        x_0: (B, *shape) noise.
        steps: Euler steps.
    """
    field = VelocityField(network, record=True)
    x_1 = integrate(field, x_0, steps, "euler").x_1
    displacement = (x_1 - x_0).reshape(len(x_0), -1)
    dt = 1.0 / steps
    total = sum(((displacement - velocity.reshape(len(x_0), -1)) ** 2).sum(1).mean() * dt
                for velocity in field.velocities)
    return float(total)
