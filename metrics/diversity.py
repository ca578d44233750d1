"""Sample diversity by MS-SSIM between random pairs of volumes.

Multi-scale structural similarity (Wang, Simoncelli and Bovik 2003), as MONAI's
``compute_ms_ssim`` computes it, on binary volumes as float images with data
range 1, is 1 for identical volumes. Mean MS-SSIM over random pairs of
generated samples measures how alike they are; the diversity is

    MS-SSIM-diversity = 1 - mean over pairs of MS-SSIM(v_i, v_j)

(0 when every sample is the same volume; higher is more diverse). As a target
level, the same number over pairs of reference skulls is reported among the
run's reference facts: a method should come close to it; far above
it means noise rather than variety. The row is in group "distribution" and
dimensionless. Because the background, where both volumes are empty, is
identical in every pair, values are small (about 0.1 for synthskull at 64^3);
compare them only at one resolution.

The computation follows MONAI's ``compute_ms_ssim`` step by step (same
Gaussian window, constants k1 = 0.01 and k2 = 0.03, relu of each scale's mean
contrast-structure term, 2x average pooling, the last scale's full SSIM),
but filters with the separable window as three one-dimensional passes of
shifted slices instead of dense 3-D convolutions: 2 to 3 times faster on
CPU (side by side at 64^3 on 2 busy cores: 0.2 s against 0.5 s per pair;
0.05 to 0.25 s per pair as the load varies). The tests check it against
``compute_ms_ssim``.

Scales and kernel by grid size R. MONAI requires ``R // (S - 1)^2 > kernel -
1`` for S scales. With the five scales and weights of Wang et al. (0.0448,
0.2856, 0.3001, 0.2363, 0.1333), the Gaussian kernel is the largest odd size
up to MONAI's default 11 that passes, with sigma = 1.5 x size / 11 (the
default's shape): 3 voxels at 64^3 (12 mm), 7 at 128^3 (14 mm), 11 at 256^3
(11 mm), so the window stays near 12 mm. Below 48^3 five scales do not fit
with a 3-voxel kernel; there the first three scales are used, weights
renormalised to sum 1 (kernel 3 at 16^3, 7 at 32^3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bench.core.errors import BenchError
from bench.core.volumes import as_binary_volumes
from bench.core.values import ValueSpec
from metrics.base import Metric, Params, register_metric

WANG_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
DEFAULT_PAIRS = 100
MAX_KERNEL = 11
PAIR_BATCH = 8


def ms_ssim_settings(resolution: int) -> tuple[int, float, tuple[float, ...]]:
    """Kernel size, kernel sigma and scale weights for grid size R (see the module doc)."""
    for weights in (WANG_WEIGHTS, WANG_WEIGHTS[:3]):
        divisor = max(1, len(weights) - 1) ** 2
        largest = min(MAX_KERNEL, resolution // divisor)  # kernel - 1 < R // divisor
        kernel = largest if largest % 2 else largest - 1
        if kernel >= 3:
            total = sum(weights)
            return kernel, 1.5 * kernel / MAX_KERNEL, tuple(w / total for w in weights)
    raise BenchError(f"MS-SSIM needs volumes of at least 16^3, got {resolution}^3")


def random_pairs(n: int, n_pairs: int, seed: int) -> np.ndarray:
    """Distinct unordered pairs (i < j) of n items, int64 (P, 2), drawn with ``seed``.

    All n (n - 1) / 2 pairs when there are at most ``n_pairs``; otherwise
    ``n_pairs`` of them, distinct, uniformly at random.
    """
    if n < 2:
        raise BenchError(f"diversity needs at least 2 volumes, got {n}")
    total = n * (n - 1) // 2
    if total <= 4 * n_pairs:
        first, second = np.triu_indices(n, k=1)
        pairs = np.stack([first, second], axis=1)
        if total <= n_pairs:
            return pairs.astype(np.int64)
        rng = np.random.default_rng(seed)
        return pairs[np.sort(rng.choice(total, n_pairs, replace=False))].astype(np.int64)
    rng = np.random.default_rng(seed)
    found: dict[tuple[int, int], None] = {}
    while len(found) < n_pairs:
        i = rng.integers(0, n, size=n_pairs)
        j = (i + rng.integers(1, n, size=n_pairs)) % n
        for a, b in zip(np.minimum(i, j), np.maximum(i, j)):
            found.setdefault((int(a), int(b)), None)
    return np.array(list(found)[:n_pairs], dtype=np.int64)


def pairwise_ms_ssim(volumes: np.ndarray, pairs: np.ndarray,
                     device: str | torch.device = "cpu") -> np.ndarray:
    """MS-SSIM of each pair of bool volumes (N, R, R, R); float64 (P,).

    Args:
        volumes: bool (N, R, R, R).
        pairs: int (P, 2) indices into ``volumes``.
        device: where the filtering runs.
    """
    volumes = as_binary_volumes(volumes)
    kernel, sigma, weights = ms_ssim_settings(volumes.shape[1])
    scores = []
    for start in range(0, len(pairs), PAIR_BATCH):
        batch = pairs[start:start + PAIR_BATCH]
        a = torch.from_numpy(volumes[batch[:, 0]]).to(device).float()
        b = torch.from_numpy(volumes[batch[:, 1]]).to(device).float()
        scores.append(ms_ssim(a, b, kernel, sigma, weights).double().cpu().numpy())
    return np.concatenate(scores) if scores else np.empty(0)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, kernel_size: int, kernel_sigma: float,
            weights: tuple[float, ...], k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """MS-SSIM of image pairs (B, D, H, W) with data range 1, as MONAI's ``compute_ms_ssim``.

    Returns:
        float32 (B,).
    """
    window = _gaussian_1d(kernel_size, kernel_sigma).to(x.device)
    levels = []
    for _ in weights:
        ssim, cs = _ssim_and_cs(x, y, window, (k1 ** 2, k2 ** 2))
        levels.append(torch.relu(cs))
        x = F.avg_pool3d(x[:, None], kernel_size=2)[:, 0]
        y = F.avg_pool3d(y[:, None], kernel_size=2)[:, 0]
    levels[-1] = torch.relu(ssim)
    powers = torch.stack(levels) ** torch.tensor(weights, device=x.device)[:, None]
    return powers.prod(0)


def _ssim_and_cs(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor,
                 constants: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and mean contrast-structure term of image pairs (B, D, H, W), each (B,).

    Wang et al. 2004 with local statistics under the Gaussian window (valid
    filtering), c1 = (k1 L)^2 and c2 = (k2 L)^2 for data range L = 1.
    """
    c1, c2 = constants
    moments = _filter(torch.stack([x, y, x * x, y * y, x * y]), window)
    mu_x, mu_y, mu_xx, mu_yy, mu_xy = moments
    sigma_x, sigma_y = mu_xx - mu_x * mu_x, mu_yy - mu_y * mu_y
    sigma_xy = mu_xy - mu_x * mu_y
    cs = (2 * sigma_xy + c2) / (sigma_x + sigma_y + c2)
    ssim = (2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1) * cs
    return ssim.flatten(1).mean(1), cs.flatten(1).mean(1)


def _filter(images: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Valid correlation of (..., D, H, W) with the separable window along the last 3 axes."""
    size = len(window)
    for axis in (-3, -2, -1):
        length = images.shape[axis] - size + 1
        out = images.narrow(axis, 0, length) * window[0]
        for t in range(1, size):
            out.add_(images.narrow(axis, t, length), alpha=float(window[t]))
        images = out
    return images


def _gaussian_1d(size: int, sigma: float) -> torch.Tensor:
    """Normalised Gaussian taps at offsets (1 - size) / 2 ... (size - 1) / 2, float32 (size,)."""
    offsets = torch.arange((1 - size) / 2, (1 + size) / 2, 1.0)
    taps = torch.exp(-(offsets / sigma) ** 2 / 2)
    return taps / taps.sum()


def ms_ssim_diversity(volumes: np.ndarray, n_pairs: int = DEFAULT_PAIRS, seed: int = 0,
                      device: str | torch.device = "cpu") -> float:
    """1 - mean MS-SSIM over :func:`random_pairs` of the volumes (N, R, R, R)."""
    pairs = random_pairs(len(volumes), n_pairs, seed)
    return float(1.0 - pairwise_ms_ssim(volumes, pairs, device).mean())


@dataclass(frozen=True)
class DiversityParams(Params):
    """Random pairs of samples whose MS-SSIM is averaged."""

    pairs: int = DEFAULT_PAIRS


@register_metric("ms-ssim-diversity")
class MSSSIMDiversity(Metric):
    """1 - mean MS-SSIM over random pairs of samples (see the module notes)."""

    description = ("1 - mean MS-SSIM over random pairs of samples (the real level is in the "
                   "run's reference facts)")
    group = "distribution"
    inputs = ("volumes",)
    outputs = (ValueSpec("MS-SSIM-diversity", True, ""),)
    Params = DiversityParams
    params: DiversityParams

    def compute(self, reference: Any, generated: Any) -> dict[str, float]:
        return {"MS-SSIM-diversity": ms_ssim_diversity(generated.volumes, self.params.pairs,
                                                       seed=generated.seed)}
