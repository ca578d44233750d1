"""Binary skull volumes as every part of the benchmark takes them: bool (N, R, R, R)."""

from __future__ import annotations

import numpy as np
import torch

from bench.core.errors import BenchError


def as_binary_volumes(volumes: np.ndarray | torch.Tensor, resolution: int | None = None
                      ) -> np.ndarray:
    """Check and convert binary volumes to a bool array (N, R, R, R).

    Args:
        volumes: bool or integer array or tensor (N, R, R, R) with values 0 and 1.
        resolution: the R that the volumes must have, or None to accept any.

    Returns:
        C-contiguous bool numpy array (N, R, R, R); the input itself where it already is one.
    """
    if isinstance(volumes, torch.Tensor):
        volumes = volumes.detach().cpu().numpy()
    volumes = np.asarray(volumes)
    if volumes.ndim != 4 or len(set(volumes.shape[1:])) != 1 or len(volumes) == 0:
        raise BenchError(f"volumes must be a non-empty array of shape (N, R, R, R), got "
                         f"{volumes.shape}")
    if resolution is not None and volumes.shape[1] != resolution:
        raise BenchError(f"volumes have resolution {volumes.shape[1]} but the representation "
                         f"was fitted at {resolution}; resample them or fit again")
    if volumes.dtype == bool:
        return np.ascontiguousarray(volumes)
    if not np.issubdtype(volumes.dtype, np.integer) or volumes.min() < 0 or volumes.max() > 1:
        raise BenchError(f"volumes must be binary occupancy (bool, or integers 0 and 1), got "
                         f"dtype {volumes.dtype}; threshold them first, e.g. volumes > 0.5")
    return volumes.astype(bool)
