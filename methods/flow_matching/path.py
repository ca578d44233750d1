"""Gaussian probability paths between paired noise x_0 and data x_1.

Both paths here are the linear interpolant of Tong et al. 2023 ("Improving and
generalizing flow-based generative models with minibatch optimal transport",
arXiv:2302.00482) with a time-dependent noise level sigma_t:

    mu_t = t x_1 + (1 - t) x_0,    x_t = mu_t + sigma_t eps,    eps ~ N(0, I)
    u_t  = x_1 - x_0 + sigma_t' eps                                  (velocity target)

- :class:`ConstantNoisePath`: sigma_t = sigma_min, so u_t = x_1 - x_0
  (I-CFM and OT-CFM, Tong et al. Eqs. 14-15); used by ``otfm``, ``cfm`` and ``rf2``.
- :class:`BrownianBridgePath`: sigma_t = sigma sqrt(t (1 - t)), the Brownian
  bridge of SB-CFM (Tong et al. Eqs. 20-21); used by ``sbcfm``.

With x_t - mu_t = sigma_t eps, Tong et al.'s Eq. 21,
u_t = (1 - 2t) / (2t(1 - t)) (x_t - mu_t) + x_1 - x_0, is the same target as
x_1 - x_0 + sigma_t' eps with sigma_t' = sigma (1 - 2t) / (2 sqrt(t (1 - t))).
Lipman et al. 2023's OT path, x_t = (1 - (1 - sigma_min) t) x_0 + t x_1, would
serve ``otfm`` and ``cfm`` as well; one family for all four methods keeps them
comparable, the bridge being the only change that ``sbcfm`` makes to the path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

T_MARGIN = 1e-4
"""The bridge's sigma_t' diverges like t^(-1/2) at t = 0 and 1; it is evaluated
at t clamped to [T_MARGIN, 1 - T_MARGIN] (x_t itself uses the exact t)."""


@dataclass(frozen=True)
class PathSample:
    """A point on the conditional path and the velocity that regresses onto it.

    Attributes:
        x_t: (B, *shape) point at time t.
        t: (B,) times in [0, 1].
        velocity: (B, *shape) conditional velocity target u_t(x_t | x_0, x_1).
    """

    x_t: torch.Tensor
    t: torch.Tensor
    velocity: torch.Tensor


class GaussianPath(ABC):
    """x_t = t x_1 + (1 - t) x_0 + sigma_t eps with target x_1 - x_0 + sigma_t' eps."""

    @abstractmethod
    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """sigma_t, shaped like t."""

    @abstractmethod
    def sigma_derivative(self, t: torch.Tensor) -> torch.Tensor:
        """d sigma_t / dt, shaped like t."""

    def sample(self, x_0: torch.Tensor, x_1: torch.Tensor, t: torch.Tensor,
               eps: torch.Tensor) -> PathSample:
        """The path point and velocity target for pairs (x_0, x_1) at times t.

        Args:
            x_0: (B, *shape) noise ends.
            x_1: (B, *shape) data ends, paired row by row with x_0.
            t: (B,) times in [0, 1].
            eps: (B, *shape) standard normal noise of the path.
        """
        t_ = t.reshape(-1, *([1] * (x_0.ndim - 1))).to(x_0.dtype)
        mu_t = t_ * x_1 + (1 - t_) * x_0
        x_t = mu_t + self.sigma(t_) * eps
        velocity = x_1 - x_0 + self.sigma_derivative(t_) * eps
        return PathSample(x_t=x_t, t=t, velocity=velocity)


@dataclass(frozen=True)
class ConstantNoisePath(GaussianPath):
    """sigma_t = sigma_min: N(t x_1 + (1 - t) x_0, sigma_min^2 I), target x_1 - x_0.

    Tong et al. 2023, Eqs. 14-15 (I-CFM; OT-CFM with the OT coupling).
    """

    sigma_min: float = 1e-3

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.full_like(t, self.sigma_min)

    def sigma_derivative(self, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(t)


@dataclass(frozen=True)
class BrownianBridgePath(GaussianPath):
    """sigma_t = sigma sqrt(t (1 - t)), the Brownian bridge between x_0 and x_1.

    Tong et al. 2023, Eqs. 20-21 (SB-CFM).
    """

    sigma_bridge: float = 0.1

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_bridge * torch.sqrt(t * (1 - t))

    def sigma_derivative(self, t: torch.Tensor) -> torch.Tensor:
        t = t.clamp(T_MARGIN, 1 - T_MARGIN)
        return self.sigma_bridge * (1 - 2 * t) / (2 * torch.sqrt(t * (1 - t)))
