"""Couplings: which noise x_0 travels to which data point x_1 in a training batch.

Every coupling takes a batch of B noise rows and B data rows and returns them
re-paired, ``couple(x_0, x_1, generator) -> Pairs(x_0, x_1)``; row i of the
result is one pair (x_0^i, x_1^i) of the coupling q(x_0, x_1) that conditional
flow matching regresses on (Tong et al. 2023, arXiv:2302.00482, Sec. 3):

- :class:`IndependentCoupling`: q = q_0 q_1, the pairs as drawn (``cfm``); also
  the given deterministic pairs of reflow (``rf2``).
- :class:`ExactOTCoupling`: the minibatch 2-Wasserstein plan (``otfm``).
- :class:`SinkhornCoupling`: the minibatch entropic OT plan (``sbcfm``).

Costs are squared Euclidean distances between flattened rows, in float64;
the plans are computed on the CPU.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import NamedTuple

import lap
import numpy as np
import ot
import torch

from bench.core.errors import BenchError


class Pairs(NamedTuple):
    """(B, *shape) noise and data rows; row i of both is one coupled pair."""

    x_0: torch.Tensor
    x_1: torch.Tensor


class Coupling(ABC):
    """Re-pairs a batch of noise and data rows."""

    @abstractmethod
    def couple(self, x_0: torch.Tensor, x_1: torch.Tensor,
               generator: torch.Generator) -> Pairs:
        """Pairs drawn from the coupling of the batch's two empirical measures.

        Args:
            x_0: (B, *shape) noise.
            x_1: (B, *shape) data.
            generator: CPU generator for couplings that draw pairs at random.
        """


class IndependentCoupling(Coupling):
    """Keeps the pairs as they come: independent when x_0 was drawn apart from x_1."""

    def couple(self, x_0: torch.Tensor, x_1: torch.Tensor,
               generator: torch.Generator) -> Pairs:
        return Pairs(x_0, x_1)


@dataclass(frozen=True)
class ExactOTCoupling(Coupling):
    """Minibatch exact optimal transport for the squared Euclidean cost.

    The plan solves min_pi sum_ij pi_ij C_ij, C_ij = |x_0^i - x_1^j|^2, over
    couplings pi with both marginals uniform, 1/B. That polytope is 1/B times
    the Birkhoff polytope of doubly stochastic matrices, whose vertices are the
    permutation matrices (Birkhoff-von Neumann), and a linear programme attains
    its minimum at a vertex: an exact plan is a permutation sigma, and x_0^i is
    paired with x_1^sigma(i). Each row of both batches is used once, so pairs
    are taken from the plan without replacement.

    ``solver="assignment"`` (default) finds sigma as a linear assignment with
    the Jonker-Volgenant solver ``lapjvh`` of the ``lapx`` package (float64
    costs, exact); ``solver="emd"`` solves the transport problem with POT's
    network simplex ``ot.emd``, whose optimal basic solution is such a vertex,
    and reads sigma as the argmax of each row of the plan. Both reach the same
    minimal cost (tested against scipy's ``linear_sum_assignment``). POT is
    kept as the reference, but at B = 256 in 64 dimensions it costs a third of
    a training step, so the default is the assignment solver; figures in
    tests/performance/test_ot_coupling.py and the README.

    Args:
        solver: "assignment" or "emd".
    """

    solver: str = "assignment"

    def __post_init__(self) -> None:
        if self.solver not in ("assignment", "emd"):
            raise BenchError(f"ExactOTCoupling: solver must be 'assignment' or 'emd', "
                             f"got {self.solver!r}")

    def couple(self, x_0: torch.Tensor, x_1: torch.Tensor,
               generator: torch.Generator) -> Pairs:
        sigma = self.permutation(squared_distances(x_0, x_1))
        return Pairs(x_0, x_1[torch.as_tensor(sigma, device=x_1.device)])

    def permutation(self, cost: torch.Tensor | np.ndarray) -> np.ndarray:
        """sigma (B,) minimising sum_i cost[i, sigma(i)] for a (B, B) cost matrix."""
        cost = np.asarray(cost, dtype=np.float64)
        if self.solver == "assignment":
            _, sigma = lap.lapjvh(cost, return_cost=False)
            return np.asarray(sigma, dtype=np.int64)
        uniform = np.full(len(cost), 1.0 / len(cost))
        plan, log = ot.emd(uniform, uniform, cost, numItermax=10_000_000, log=True)
        sigma = plan.argmax(axis=1)
        if log["result_code"] != 1 or len(np.unique(sigma)) != len(sigma):
            raise RuntimeError(f"ot.emd did not return an optimal permutation plan "
                               f"({log['warning']!r}); use solver='assignment'")
        return sigma


@dataclass(frozen=True)
class SinkhornCoupling(Coupling):
    """Minibatch entropic optimal transport, pairs drawn from the plan.

    The plan solves min_pi sum_ij pi_ij C_ij - reg H(pi) over couplings with
    uniform marginals, by Sinkhorn's iterations (POT's ``ot.sinkhorn``), with
    reg = ``relative_reg`` times the mean of C so that one value suits any
    dimension and scale. Tong et al.'s SB-CFM ties reg = 2 sigma^2 to the
    bridge's sigma; here the two are separate parameters, since a
    regularisation that keeps the plan informative in 64 dimensions (mean
    cost about 128) would ask for a bridge sigma above 1.

    Every noise row x_0^i is kept once and given a partner drawn from the
    plan's row, j ~ pi(j | i) = B pi_ij, with the training loop's generator:
    the noise marginal is exact and the data marginal holds in expectation.

    Args:
        relative_reg: entropic regularisation as a fraction of the mean cost.
        max_iterations: Sinkhorn iterations at most (a stop at the limit
            still gives a usable plan: rows are renormalised before drawing).
    """

    relative_reg: float = 0.05
    max_iterations: int = 1000

    def __post_init__(self) -> None:
        if not self.relative_reg > 0:
            raise BenchError(f"SinkhornCoupling: relative_reg must be positive, got "
                             f"{self.relative_reg}")

    def couple(self, x_0: torch.Tensor, x_1: torch.Tensor,
               generator: torch.Generator) -> Pairs:
        plan = self.plan(squared_distances(x_0, x_1))
        partners = torch.multinomial(plan, 1, generator=generator).squeeze(1)
        return Pairs(x_0, x_1[partners.to(x_1.device)])

    def plan(self, cost: torch.Tensor) -> torch.Tensor:
        """The (B, B) entropic plan for a float64 cost matrix, rows summing to 1/B.

        POT runs on its torch backend here (no numpy BLAS, see
        :func:`squared_distances`).
        """
        uniform = torch.full((len(cost),), 1.0 / len(cost), dtype=torch.float64)
        reg = self.relative_reg * max(float(cost.mean()), np.finfo(float).tiny)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*(did not converge|numItermax).*")
            plan = ot.sinkhorn(uniform, uniform, cost, reg, numItermax=self.max_iterations,
                               stopThr=1e-6)
        if not torch.isfinite(plan).all() or (plan.sum(dim=1) <= 0).any():
            raise BenchError(f"Sinkhorn's plan underflowed at relative_reg="
                             f"{self.relative_reg}; raise sbcfm's entropic_reg")
        return plan


def squared_distances(x_0: torch.Tensor, x_1: torch.Tensor) -> torch.Tensor:
    """C_ij = |x_0^i - x_1^j|^2 over flattened rows: float64 (B, B) on the CPU.

    Computed with torch in float64 where the tensors are, then moved. Not with
    numpy: OpenBLAS's threads, called between torch's, fought them for the 2
    cores of the development machine (numpy's 128 x 128 cost matrix took 23 to
    28 ms inside the training loop instead of 0.3 ms, and torch's step 30 times
    its time); torch's own takes 0.2 ms there.
    """
    a = x_0.detach().reshape(len(x_0), -1).double()
    b = x_1.detach().reshape(len(x_1), -1).double()
    cost = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
    return cost.clamp_min(0.0).cpu()
