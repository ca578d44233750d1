"""Reference points that a deep method must be compared with: ``gaussian`` and ``train-copy``.

``gaussian`` is the classic statistical shape model: one multivariate normal
in representation space (on pca latents, "PCA + Gaussian"). A deep method
that does not beat it has learned nothing beyond second moments.

``train-copy`` returns training subjects unchanged. It is the perfect
memoriser: it scores best on every fidelity metric that only compares sample
sets, and worst on privacy (its nearest-training-neighbour distance is 0) and
novelty. Its row in a leaderboard shows what each metric rewards.

Neither uses a network: NFE is 0 and ``steps`` is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bench.core.errors import BenchError
from methods.base import FitConfig, FitReport, Method, Params, SampleResult, standard_normal
from methods.diffusion import apply_in_row_blocks, block_rows
from methods.registry import register_method

_INDEX_STREAM = 0x7C0_B1E5
"""Mixed into the seeds of train-copy's draws, apart from every noise stream."""


@dataclass(frozen=True)
class GaussianParams(Params):
    """Hyperparameters of ``gaussian``.

    Attributes:
        ridge: added to the covariance's diagonal, relative to the mean variance
            tr(S) / D of the data, so that the covariance is positive definite
            when there are fewer samples than dimensions.
        max_full_dim: the largest dimension D for which the D x D covariance and
            its Cholesky factor are formed (4096: 64 MiB of float32). Above it the
            same distribution is sampled in factor form (see :class:`Gaussian`).
    """

    ridge: float = 1e-6
    max_full_dim: int = 4096

    def __post_init__(self) -> None:
        if not self.ridge >= 0:
            raise BenchError(f"method 'gaussian': ridge must be >= 0; got {self.ridge!r}")
        if not isinstance(self.max_full_dim, int) or self.max_full_dim < 1:
            raise BenchError(f"method 'gaussian': max_full_dim must be a positive integer; got "
                             f"{self.max_full_dim!r}")


@register_method("gaussian")
class Gaussian(Method):
    """Maximum-likelihood multivariate normal N(mu, S + lambda I) of the flattened data.

    With the N training samples as rows of X (N, D), mu is their mean, S =
    X_c^T X_c / N the maximum-likelihood covariance of the centred rows X_c, and
    lambda = ridge * tr(S) / D (or ridge itself when the data have no variance).

    Full form (D <= max_full_dim): x = mu + L z with L L^T = S + lambda I
    (Cholesky in float64, stored in float32) and z = ``standard_normal(n, (D,), seed)``.

    Factor form (D > max_full_dim, e.g. voxel grids): with F = X_c^T / sqrt(N),
    x = mu + F z_1 + sqrt(lambda) z_2 for z = (z_1, z_2) =
    ``standard_normal(n, (N + D,), seed)``. Its covariance F F^T + lambda I is
    the same S + lambda I, so both forms sample the same distribution, with
    O(N D) memory (the size of the training set) instead of O(D^2).

    Fitting runs on the CPU whatever ``device`` (one pass over the data and at
    most one Cholesky factorisation); sampling runs on ``device``.

    Attributes (after fit):
        mean_: float32 (D,).
        factor_: float32, (D, D) lower-triangular L in the full form, (D, N) F in
            the factor form.
        ridge_variance_: lambda.
        form_: "full" or "factor".
    """

    description = "maximum-likelihood multivariate Gaussian (the PCA + Gaussian shape model)"
    reference = True
    Params = GaussianParams
    params: GaussianParams

    def _fit(self, train: torch.Tensor, val: torch.Tensor | None, config: FitConfig, seed: int,
             device: torch.device) -> FitReport:
        full = train[0].numel() <= self.params.max_full_dim
        # Double precision for the D x D covariance; the factor form (large D) stays
        # in float32, whose N x D copy is already the size of the training set.
        x = train.detach().reshape(len(train), -1).to("cpu", torch.float64 if full else
                                                      torch.float32)
        n_rows, dim = x.shape
        mean = x.mean(dim=0, dtype=torch.float64)
        centred = x - mean.to(x.dtype)
        mean_variance = float(torch.linalg.vector_norm(centred, dtype=torch.float64)) ** 2 \
            / (n_rows * dim)
        ridge = self.params.ridge * (mean_variance if mean_variance > 0 else 1.0)
        if full:
            covariance = centred.T @ centred / n_rows
            covariance.diagonal().add_(ridge)
            factor, info = torch.linalg.cholesky_ex(covariance)
            if int(info) != 0:
                raise BenchError(f"method 'gaussian', seed {seed}: the covariance (D = {dim}, "
                                 f"N = {n_rows}) is not positive definite with ridge "
                                 f"{self.params.ridge}; raise ridge, e.g. ridge=1e-4")
            self.form_ = "full"
        else:
            factor = centred.T / np.sqrt(n_rows)
            self.form_ = "factor"
        self.mean_ = mean.float()
        self.factor_ = factor.float().contiguous()
        self.ridge_variance_ = ridge
        return FitReport(method=self.name, seed=seed,
                         extra={"form": self.form_, "ridge_variance": ridge})

    def _sample(self, n: int, steps: int, seed: int, device: torch.device) -> SampleResult:
        factor = self.factor_.to(device)
        mean = self.mean_.to(device)
        rank = factor.shape[1] if self.form_ == "factor" else 0
        z = standard_normal(n, (rank + len(mean),), seed, device)

        def transform(z: torch.Tensor) -> torch.Tensor:
            if self.form_ == "full":
                return mean + z @ factor.T
            return mean + z[:, :rank] @ factor.T + np.sqrt(self.ridge_variance_) * z[:, rank:]

        x = apply_in_row_blocks(transform, z, block_rows(z.shape[1:]))
        return SampleResult(x.reshape(n, *self._data_shape()), nfe=0)

    def _state(self) -> dict[str, Any]:
        return {"mean": self.mean_, "factor": self.factor_, "ridge_variance": self.ridge_variance_,
                "form": self.form_}

    def _restore(self, state: dict[str, Any], device: torch.device) -> None:
        self.mean_ = state["mean"].cpu()
        self.factor_ = state["factor"].cpu()
        self.ridge_variance_ = float(state["ridge_variance"])
        self.form_ = str(state["form"])


@dataclass(frozen=True)
class TrainCopyParams(Params):
    """``train-copy`` has no hyperparameters."""


@register_method("train-copy")
class TrainCopy(Method):
    """Sample i is the training row ``j_i``, drawn uniformly (with replacement) by a
    generator seeded by (seed, i) only.

    Attributes (after fit):
        train_: float32 copy of the training set (N, *shape), on the CPU.
    """

    description = "returns training subjects unchanged: the perfect memoriser"
    reference = True
    Params = TrainCopyParams
    params: TrainCopyParams

    def _fit(self, train: torch.Tensor, val: torch.Tensor | None, config: FitConfig, seed: int,
             device: torch.device) -> FitReport:
        self.train_ = train.detach().to("cpu", torch.float32).clone()
        return FitReport(method=self.name, seed=seed, extra={"train_size": len(self.train_)})

    def _sample(self, n: int, steps: int, seed: int, device: torch.device) -> SampleResult:
        index = torch.tensor(self.choices(n, seed))
        return SampleResult(self.train_[index].to(device), nfe=0)

    def choices(self, n: int, seed: int) -> list[int]:
        """The training rows that ``sample(n, steps, seed)`` returns, in order."""
        self._check_fitted()
        size = len(self.train_)
        return [int(np.random.default_rng((_INDEX_STREAM, seed % 2**64, i)).integers(size))
                for i in range(n)]

    def _state(self) -> dict[str, Any]:
        return {"train": self.train_}

    def _restore(self, state: dict[str, Any], device: torch.device) -> None:
        self.train_ = state["train"].cpu()
