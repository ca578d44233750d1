"""Binary skull volumes as every part of the benchmark takes them, bool (N, R, R, R), and
their bit-packed files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.core.errors import BenchError
from bench.core.io import atomic_path


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


def save_volumes(path: Path, volumes: np.ndarray, nfe: int = 0) -> None:
    """Bool volumes (N, R, R, R), bit-packed, and the NFE that made them, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, packed=np.packbits(volumes.reshape(len(volumes), -1),
                                                           axis=1),
                                shape=np.array(volumes.shape), nfe=np.array(nfe))


def load_volumes(path: Path) -> tuple[np.ndarray, int]:
    """Volumes written by :func:`save_volumes`: bool (N, R, R, R) and their NFE."""
    with np.load(path) as data:
        shape = tuple(int(s) for s in data["shape"])
        flat = np.unpackbits(data["packed"], axis=1, count=int(np.prod(shape[1:])))
        return flat.reshape(shape).astype(bool), int(data["nfe"])
