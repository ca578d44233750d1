"""The pca representation: whitened principal components of the training occupancy.

With the N training volumes flattened to rows of X (N, D), D = R^3, mean m
and centred data X_c = X - 1 m^T = U S V^T (economy SVD), the first k right
singular vectors V_k are the components and S_k^2 / (N - 1) their variances.
Encoding whitens, so that every latent has unit variance on the training set:

    z = (x - m) V_k diag(S_k)^-1 sqrt(N - 1)                           (encode)
    x_hat = m + z diag(S_k) V_k^T / sqrt(N - 1),  volume = x_hat > 0.5  (decode)

Fitting uses the Gram route rather than an SVD of X_c. The Gram matrix X X^T of
binary rows holds voxel counts, which float32 adds exactly (below 2^24) when
accumulated over blocks of columns; it is centred as H (X X^T) H with
H = I - 1 1^T / N and eigendecomposed in float64 as U S^2 U^T, then
V_k = X_c^T U_k S_k^-1 in a second pass over the blocks. The data are never
held as one float matrix. Measured on 2 CPU cores, N = 800, D = 64^3: Gram and
eigendecomposition 2.3 s against 23 s for torch.linalg.svd of the centred
float32 matrix (random binary rows, idle machine); on the synthskull train
split under shared load, the whole fit took 4 to 17 s and the SVD alone 63 to
85 s. The SVD also holds the float32 matrix and its right singular vectors
(1.7 GB more at this size).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bench.core.errors import BenchError
from bench.core.volumes import as_binary_volumes
from bench.representations.base import (BATCH_BYTES, Representation, State, as_encoded,
                                        batch_rows, register_representation, tensor_state)

RANK_RTOL = 1e-10
"""Eigenvalues of the centred Gram matrix below RANK_RTOL times the largest are zero.

The Gram matrix is exact and float64 eigenvalues are accurate to about
N * 1e-16 of the largest, so this keeps a wide margin for N up to ~10^4.
"""


@register_representation("pca")
class PCARepresentation(Representation):
    """Whitened PCA of flattened occupancy; latents (N, k) have unit variance on train.

    Components beyond the rank of the training data (possible only when the
    training volumes span fewer than k directions) carry no variance: they are
    zero vectors, encode to 0 and are ignored by decode.

    Args:
        n_components: number of components k; at most N - 1 for N training volumes.

    Attributes:
        resolution_: grid size R of the training volumes.
        n_samples_: number N of training volumes.
        mean_: float32 tensor (D,), mean training occupancy per voxel.
        components_: float32 tensor (k, D), orthonormal rows in decreasing
            order of variance; the largest-magnitude entry of each is positive.
        explained_variance_: float64 tensor (k,), variance of the training data
            along each component (unbiased, divided by N - 1).
        explained_variance_ratio_: float64 tensor (k,), each component's share of
            the total training variance.
    """

    def __init__(self, *, n_components: int = 64) -> None:
        self.n_components = n_components

    def fit(self, volumes: np.ndarray | torch.Tensor, **_: Any) -> "PCARepresentation":
        """Fit the components to training volumes (N, R, R, R); return ``self``. The fit
        options of :meth:`Representation.fit` do not apply: it is one eigendecomposition."""
        volumes = as_binary_volumes(volumes)
        n = len(volumes)
        self._check_n_components(n)
        flat = torch.from_numpy(volumes.reshape(n, -1))
        gram, mean = _gram_and_mean(flat)
        row_means = gram.mean(0)
        centred = gram - row_means[None, :] - row_means[:, None] + row_means.mean()
        eigenvalues, eigenvectors = torch.linalg.eigh(centred)
        top = torch.arange(n - 1, n - 1 - self.n_components, -1)
        s_squared = eigenvalues[top].clamp(min=0.0)
        kept = s_squared > RANK_RTOL * s_squared[0]
        weights = torch.where(kept, s_squared.rsqrt(), 0.0)[:, None] * eigenvectors[:, top].T
        self.resolution_ = volumes.shape[1]
        self.n_samples_ = n
        self.mean_ = mean.to(torch.float32)
        self.components_ = _fix_signs(_components(flat, mean, weights))
        self.explained_variance_ = torch.where(kept, s_squared, 0.0) / (n - 1)
        total = centred.trace().clamp(min=torch.finfo(torch.float64).tiny)
        self.explained_variance_ratio_ = torch.where(kept, s_squared, 0.0) / total
        return self

    def _check_n_components(self, n_samples: int) -> None:
        k = self.n_components
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise BenchError(f"representation 'pca': n_components must be a positive integer, "
                             f"got {k!r}")
        if k > n_samples - 1:
            raise BenchError(f"representation 'pca': n_components={k} needs at least {k + 1} "
                             f"training volumes, got {n_samples}; set n_components to at most "
                             f"{max(n_samples - 1, 0)} or use more training data")

    @property
    def encoded_shape(self) -> tuple[int, ...]:
        """(k,): one whitened coefficient per component."""
        self._check_fitted()
        return (self.components_.shape[0],)

    def _latent_scale(self) -> torch.Tensor:
        """Standard deviation of the training data along each component, float32 (k,)."""
        return self.explained_variance_.sqrt().to(torch.float32)

    def encode(self, volumes: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Binary volumes (N, R, R, R) to whitened latents, float32 (N, k)."""
        self._check_fitted()
        volumes = as_binary_volumes(volumes, self.resolution_)
        flat = torch.from_numpy(volumes.reshape(len(volumes), -1))
        scale = self._latent_scale()
        divisor = torch.where(scale > 0, scale, 1.0)
        latents = torch.empty(len(flat), len(scale))
        rows = batch_rows(flat.shape[1])
        for start in range(0, len(flat), rows):
            block = flat[start:start + rows].to(torch.float32) - self.mean_
            latents[start:start + rows] = block @ self.components_.T
        return latents / divisor

    def decode(self, encoded: torch.Tensor) -> np.ndarray:
        """Latents (N, k) on any device to bool volumes (N, R, R, R), occupancy > 0.5."""
        self._check_fitted()
        coefficients = as_encoded(encoded, self.encoded_shape) * self._latent_scale()
        volumes = np.empty((len(coefficients), self.mean_.numel()), dtype=bool)
        rows = batch_rows(self.mean_.numel())
        for start in range(0, len(coefficients), rows):
            occupancy = torch.addmm(self.mean_, coefficients[start:start + rows], self.components_)
            volumes[start:start + rows] = (occupancy > 0.5).numpy()
        return volumes.reshape((-1,) + (self.resolution_,) * 3)

    def _get_state(self) -> State:
        return {"resolution": self.resolution_, "n_samples": self.n_samples_,
                "mean": self.mean_, "components": self.components_,
                "explained_variance": self.explained_variance_,
                "explained_variance_ratio": self.explained_variance_ratio_}

    def _set_state(self, state: State) -> None:
        self.resolution_ = int(state["resolution"])
        self.n_samples_ = int(state["n_samples"])
        self.mean_ = tensor_state(state, "mean", self.name)
        self.components_ = tensor_state(state, "components", self.name)
        self.explained_variance_ = tensor_state(state, "explained_variance", self.name)
        self.explained_variance_ratio_ = tensor_state(state, "explained_variance_ratio", self.name)


def _gram_and_mean(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Uncentred Gram matrix X X^T, float64 (N, N), and column means, float64 (D,).

    Args:
        flat: bool tensor (N, D), the training volumes as rows.
    """
    n, d = flat.shape
    gram = torch.zeros(n, n, dtype=torch.float64)
    mean = torch.empty(d, dtype=torch.float64)
    for cols in _column_blocks(n, d):
        block = flat[:, cols].to(torch.float32)
        gram += (block @ block.T).to(torch.float64)
        mean[cols] = block.sum(0).to(torch.float64) / n
    return gram, mean


def _components(flat: torch.Tensor, mean: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Components ``weights @ (X - 1 m^T)``, float32 (k, D), computed block by block.

    Args:
        flat: bool tensor (N, D), the training volumes as rows.
        mean: float64 tensor (D,), their column means m.
        weights: float64 tensor (k, N), rows U_k^T / S_k (zero for null components).
    """
    components = torch.empty(len(weights), flat.shape[1], dtype=torch.float32)
    for cols in _column_blocks(*flat.shape):
        block = flat[:, cols].to(torch.float64) - mean[cols]
        components[:, cols] = (weights @ block).to(torch.float32)
    return components


def _column_blocks(n_rows: int, n_columns: int) -> list[slice]:
    """Column slices such that a float64 block (n_rows, width) fits in BATCH_BYTES.

    Widths stay below 2^24, so float32 sums of 0/1 products within a block are exact.
    """
    width = max(1, BATCH_BYTES // (8 * n_rows))
    return [slice(start, start + width) for start in range(0, n_columns, width)]


def _fix_signs(components: torch.Tensor) -> torch.Tensor:
    """Flip each row (k, D), in place, so that its largest-magnitude entry is positive."""
    peaks = components.gather(1, components.abs().argmax(1, keepdim=True))
    return components.mul_(torch.where(peaks < 0, -1.0, 1.0))
