"""Reference generators: what a perfect generator, and what the floors, score.

They are registered like methods but marked ``reference = True``, so reports
show them in a band of their own and never rank them. None of them learns:

- ``oracle``: fresh real skulls from the run's ground truth (synthskull
  subjects that no split of the dataset holds; on an imported dataset, the
  held-out validation skulls). What a perfect generator returns; its samples
  are volumes, not representation-space tensors (``space = "volumes"``).
- ``oracle-rep``: the same skulls through the run's representation (encoded
  here, decoded by the run): the best any method in that representation can
  reach.
- ``mean-skull``: the mean training latent, repeated: decoded, the mean
  skull, the null floor of diversity.

``gaussian`` and ``train-copy`` (:mod:`methods.baselines`) are references too.
The oracles draw from the ground truth the run passes in
``FitConfig.truth``; they are rebuilt for every run rather than saved.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.core.errors import BenchError
from methods.base import FitConfig, FitReport, GroundTruth, Method, Params, SampleResult
from methods.registry import register_method


class _Oracle(Method):
    """Base of the two oracles: the ground truth of the fit, used at sampling time."""

    reference = True
    saveable = False
    Params = Params

    def _fit(self, train: torch.Tensor, val: torch.Tensor | None, config: FitConfig, seed: int,
             device: torch.device) -> FitReport:
        if config.truth is None:
            raise BenchError(f"reference {self.name!r} draws real skulls from the run's ground "
                             f"truth (FitConfig.truth), and none was given; run it with "
                             f"`bench run`, which passes the dataset's")
        self.truth_: GroundTruth = config.truth
        return FitReport(method=self.name, seed=seed)

    def _state(self) -> dict[str, Any]:
        raise BenchError(f"reference {self.name!r} samples the run's ground truth and is not "
                         f"saved; rerun the cell instead")

    def _restore(self, state: dict[str, Any], device: torch.device) -> None:
        raise BenchError(f"reference {self.name!r} cannot be loaded from a file")


@register_method("oracle")
class Oracle(_Oracle):
    """Fresh real skulls: what a perfect generator returns."""

    description = "reference: fresh real skulls of the ground truth (a perfect generator)"
    space = "volumes"

    def _sample(self, n: int, steps: int, seed: int, device: torch.device) -> SampleResult:
        return SampleResult(torch.from_numpy(self.truth_.subjects(n, seed)), nfe=0)


@register_method("oracle-rep")
class OracleThroughRepresentation(_Oracle):
    """The oracle's skulls, encoded by the run's representation (decoded by the run)."""

    description = "reference: the oracle's skulls through the run's representation (ceiling)"

    def _sample(self, n: int, steps: int, seed: int, device: torch.device) -> SampleResult:
        return SampleResult(self.truth_.encode(self.truth_.subjects(n, seed)).to(device), nfe=0)


@register_method("mean-skull")
class MeanSkull(Method):
    """The mean training latent, repeated: decoded, the mean skull (the null floor)."""

    description = "reference: the mean training latent repeated (the mean skull, a null floor)"
    reference = True
    Params = Params

    def _fit(self, train: torch.Tensor, val: torch.Tensor | None, config: FitConfig, seed: int,
             device: torch.device) -> FitReport:
        self.mean_ = train.mean(dim=0).cpu()
        return FitReport(method=self.name, seed=seed)

    def _sample(self, n: int, steps: int, seed: int, device: torch.device) -> SampleResult:
        return SampleResult(self.mean_.expand(n, *self.mean_.shape).clone().to(device), nfe=0)

    def _state(self) -> dict[str, Any]:
        return {"mean": self.mean_}

    def _restore(self, state: dict[str, Any], device: torch.device) -> None:
        self.mean_ = state["mean"]
