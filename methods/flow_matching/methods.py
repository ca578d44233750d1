"""Flow matching methods: ``otfm``, ``cfm`` and ``sbcfm`` (``rf2`` is in reflow.py).

Each is a coupling and a path plugged into one training recipe, the
conditional flow matching loss minimised by the shared training loop, and one
sampler, the learned ODE integrated from standard normal noise at t = 0 to
data at t = 1:

    method  coupling                       path                    paper
    cfm     independent                    constant sigma_min      I-CFM = 1-rectified flow
    otfm    minibatch exact OT             constant sigma_min      OT-CFM (Tong et al. 2023)
    sbcfm   minibatch entropic OT          Brownian bridge         SB-CFM (Tong et al. 2023)
"""

from __future__ import annotations

import copy
import dataclasses
import time
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from bench.core.errors import BenchError
from bench.core.training import train_network
from methods.backbones import BackboneConfig, build_backbone
from methods.base import FitConfig, FitReport, Method, Params, SampleResult, standard_normal
from methods.flow_matching.coupling import (Coupling, ExactOTCoupling, IndependentCoupling,
                                            SinkhornCoupling)
from methods.flow_matching.loss import FlowMatchingLoss
from methods.flow_matching.path import BrownianBridgePath, ConstantNoisePath, GaussianPath
from methods.flow_matching.solver import STAGES, VelocityField, check_solver, integrate
from methods.registry import register_method


@dataclass(frozen=True)
class FlowParams(Params):
    """What every flow matching method shares: how it samples.

    Attributes:
        solver: ODE solver, one of euler, midpoint, heun2, heun3, rk4 (``steps``
            equal steps) or dopri5 (adaptive: ``steps`` is ignored).
        atol, rtol: dopri5's tolerances.
        sample_batch_size: samples integrated together (bounds memory; fixed-grid
            solvers always evaluate this many rows, padding the last batch).
    """

    solver: str = field(default="euler", metadata={"choices": tuple(STAGES)})
    atol: float = 1e-5
    rtol: float = 1e-5
    sample_batch_size: int = 512

    def __post_init__(self) -> None:
        check_solver(self.solver)
        check_positive(self, "atol", "rtol", "sample_batch_size")


@dataclass(frozen=True)
class CFMParams(FlowParams):
    """Hyperparameters of ``cfm`` and ``otfm``.

    Attributes:
        sigma_min: constant noise of the path x_t = t x_1 + (1 - t) x_0 + sigma_min eps.
    """

    sigma_min: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.sigma_min >= 0:
            raise BenchError(f"{type(self).__name__}.sigma_min must be 0 or more, got "
                             f"{self.sigma_min!r}")


@dataclass(frozen=True)
class SBCFMParams(FlowParams):
    """Hyperparameters of ``sbcfm``.

    Attributes:
        bridge_sigma: sigma of the Brownian bridge, sigma_t = sigma sqrt(t (1 - t)).
        entropic_reg: Sinkhorn's regularisation as a fraction of the batch's mean cost.
    """

    bridge_sigma: float = 0.1
    entropic_reg: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "bridge_sigma", "entropic_reg")


class FlowMatchingMethod(Method):
    """Conditional flow matching with a coupling and a path; samples by an ODE solve.

    Attributes (after fit):
        network_: the EMA network v_theta(x, t), which sampling integrates.
        backbone_: its configuration, kept for save/load.
    """

    Params: ClassVar[type[FlowParams]] = CFMParams
    params: FlowParams
    trains = True

    @abstractmethod
    def coupling(self) -> Coupling:
        """How training pairs noise with data."""

    def path(self) -> GaussianPath:
        """The conditional probability path between pairs."""
        if not isinstance(self.params, CFMParams):
            raise BenchError(f"method {self.name!r}: the constant-noise path needs the sigma_min "
                             f"of CFMParams; override path() for {type(self.params).__name__}")
        return ConstantNoisePath(self.params.sigma_min)

    def _fit(self, train: torch.Tensor, val: torch.Tensor | None, config: FitConfig, seed: int,
             device: torch.device) -> FitReport:
        start = time.perf_counter()
        loss = FlowMatchingLoss(self.path(), self.coupling())
        network = build_backbone(self._data_shape(), config.backbone, seed=seed)
        result = train_network(network, loss, train, config.train, seed, device, self.name,
                               checkpoint_dir=config.checkpoint_dir)
        self.network_, self.backbone_ = result.ema, config.backbone
        return FitReport(method=self.name, seed=seed, steps=result.steps, losses=result.losses,
                         wall_time_s=time.perf_counter() - start,
                         parameter_count=result.parameter_count,
                         extra={**loss.stats.summary(), "resumed_from": result.resumed_from})

    def _sample(self, n: int, steps: int, seed: int, device: torch.device) -> SampleResult:
        x_0 = standard_normal(n, self._data_shape(), seed, device)
        x_1, nfe = self.transport(x_0, steps, self.params.solver, device)
        return SampleResult(x_1, nfe)

    def transport(self, x_0: torch.Tensor, steps: int, solver: str,
                  device: torch.device) -> tuple[torch.Tensor, int]:
        """Integrate the learned ODE from noise x_0 (n, *shape), in batches.

        With a fixed-grid solver every batch is padded with zero rows to
        ``sample_batch_size``, so the network always sees the same shapes and
        the end of row i is bitwise the same whatever n (on CPU; matrix
        products of different shapes round differently). dopri5's steps depend
        on the whole batch anyway, and its batches are not padded.

        Returns the ends x_1 and the NFE of one trajectory: the network calls
        of one batch (for dopri5, of the batch that needed most).
        """
        network = self.network_.to(device).eval()
        size, pad = self.params.sample_batch_size, STAGES[solver] is not None
        ends, nfe = [], 0
        for chunk in x_0.to(device).split(size):
            rows = len(chunk)
            if pad and rows < size:
                chunk = torch.cat([chunk, chunk.new_zeros(size - rows, *chunk.shape[1:])])
            solution = integrate(VelocityField(network), chunk, steps, solver,
                                 atol=self.params.atol, rtol=self.params.rtol)
            ends.append(solution.x_1[:rows])
            nfe = max(nfe, solution.nfe)
        return torch.cat(ends), nfe

    def _state(self) -> dict[str, Any]:
        return {"backbone": dataclasses.asdict(self.backbone_),
                "network": self.network_.state_dict()}

    def _restore(self, state: dict[str, Any], device: torch.device) -> None:
        self.backbone_ = BackboneConfig(**state["backbone"])
        # Any seed: the saved weights replace the initial ones at once.
        network = build_backbone(self._data_shape(), self.backbone_, seed=0)
        network.load_state_dict(state["network"])
        self.network_ = network.to(device).requires_grad_(False)

    def _load_weights(self, ema: dict[str, torch.Tensor]) -> None:
        self.network_.load_state_dict(ema)


@register_method("cfm")
class ConditionalFlowMatching(FlowMatchingMethod):
    """I-CFM: independent noise-data pairs, straight conditional paths (1-rectified flow)."""

    description = "conditional flow matching, independent coupling (= 1-rectified flow)"

    def coupling(self) -> Coupling:
        return IndependentCoupling()


@register_method("otfm")
class OTFlowMatching(FlowMatchingMethod):
    """OT-CFM: pairs from the exact optimal transport plan of each training batch."""

    description = "flow matching with minibatch exact optimal-transport coupling (OT-CFM)"

    def coupling(self) -> Coupling:
        return ExactOTCoupling()


@register_method("sbcfm")
class SBFlowMatching(FlowMatchingMethod):
    """SB-CFM: pairs from the entropic OT plan, Brownian-bridge paths between them."""

    description = "Schroedinger-bridge flow matching: entropic OT coupling, Brownian bridge"
    Params = SBCFMParams
    params: SBCFMParams

    def coupling(self) -> Coupling:
        return SinkhornCoupling(relative_reg=self.params.entropic_reg)

    def path(self) -> GaussianPath:
        return BrownianBridgePath(self.params.bridge_sigma)


def warm_start(network: nn.Module) -> nn.Module:
    """A trainable copy of a fitted (EMA, frozen) network."""
    return copy.deepcopy(network).requires_grad_(True).train()


def check_positive(params: Params, *names: str) -> None:
    for name in names:
        value = getattr(params, name)
        if not value > 0:
            raise BenchError(f"{type(params).__name__}.{name} must be positive, got {value!r}")
