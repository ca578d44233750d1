"""The common voxel grid: one fixed physical field of view, cubic, centred on the origin.

The field of view is 256 mm: large adult skulls with the mandible measure up to
about 240 mm from vertex to menton, so 256 mm keeps a margin around them and
gives round voxel sizes (4 mm at 64^3, 2 mm at 128^3, 1 mm at 256^3).

Axes follow RAS: array axis 0 is x (towards the subject's right), axis 1 is y
(anterior), axis 2 is z (superior). Voxel (i, j, k) has its centre at
``(index + 0.5) * voxel_size - field_of_view / 2`` millimetres on each axis.
"""

from __future__ import annotations

import numpy as np

FIELD_OF_VIEW_MM = 256.0
MIN_RESOLUTION = 16
MAX_RESOLUTION = 256


def voxel_size_mm(resolution: int, field_of_view_mm: float = FIELD_OF_VIEW_MM) -> float:
    """Edge length of one voxel in millimetres."""
    return field_of_view_mm / resolution


def axis_centers_mm(resolution: int, field_of_view_mm: float = FIELD_OF_VIEW_MM) -> np.ndarray:
    """Voxel centre coordinates along one axis, shape (R,), in millimetres (float32)."""
    size = voxel_size_mm(resolution, field_of_view_mm)
    return ((np.arange(resolution) + 0.5) * size - field_of_view_mm / 2).astype(np.float32)


def index_to_mm(index: np.ndarray, resolution: int,
                field_of_view_mm: float = FIELD_OF_VIEW_MM) -> np.ndarray:
    """Voxel indices (..., 3) to millimetre coordinates of their centres (..., 3)."""
    size = voxel_size_mm(resolution, field_of_view_mm)
    return (np.asarray(index, dtype=np.float64) + 0.5) * size - field_of_view_mm / 2


def mm_to_index(points_mm: np.ndarray, resolution: int,
                field_of_view_mm: float = FIELD_OF_VIEW_MM) -> np.ndarray:
    """Millimetre coordinates (..., 3) to continuous voxel indices (..., 3)."""
    size = voxel_size_mm(resolution, field_of_view_mm)
    return (np.asarray(points_mm, dtype=np.float64) + field_of_view_mm / 2) / size - 0.5
