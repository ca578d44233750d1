"""The voxel representation: occupancy grids as one-channel images in [-1, 1]."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bench.core.volumes import as_binary_volumes
from bench.representations.base import (Representation, State, as_encoded,
                                        register_representation)


@register_representation("voxel")
class VoxelRepresentation(Representation):
    """Occupancy ``o`` in {0, 1} to the image ``x = 2 o - 1`` in {-1, 1}; decode is ``x > 0``.

    Nothing is learned: ``fit`` records the grid size R so that encode and
    decode can check their inputs and methods can read ``encoded_shape``.

    Attributes:
        resolution_: grid size R of the training volumes.
    """

    def fit(self, volumes: np.ndarray | torch.Tensor, **_: Any) -> "VoxelRepresentation":
        """Record the grid size of the training volumes (N, R, R, R); return ``self``."""
        self.resolution_ = as_binary_volumes(volumes).shape[1]
        return self

    @property
    def encoded_shape(self) -> tuple[int, ...]:
        """(1, R, R, R): one channel per sample."""
        self._check_fitted()
        return (1,) + (self.resolution_,) * 3

    def encode(self, volumes: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Binary volumes (N, R, R, R) to float32 images (N, 1, R, R, R) with values -1 and 1."""
        self._check_fitted()
        occupancy = torch.from_numpy(as_binary_volumes(volumes, self.resolution_))
        return occupancy.to(torch.float32).mul_(2.0).sub_(1.0).unsqueeze(1)

    def decode(self, encoded: torch.Tensor) -> np.ndarray:
        """Images (N, 1, R, R, R) on any device to bool volumes (N, R, R, R) by ``x > 0``."""
        self._check_fitted()
        return (as_encoded(encoded, self.encoded_shape)[:, 0] > 0).numpy()

    def _get_state(self) -> State:
        return {"resolution": self.resolution_}

    def _set_state(self, state: State) -> None:
        self.resolution_ = int(state["resolution"])
