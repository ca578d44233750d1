"""Point sets from binary volumes: the input of the Chamfer and earth mover's distances.

Protocol
--------
Each volume becomes a set of ``P`` points (default 2048) on its surface:

1. The surface is the set of bone voxels with at least one 6-neighbour that is
   background. Voxels on the edge of the grid count as surface (outside the
   field of view is background), so a shape touching the border keeps its
   boundary there.
2. Each surface voxel stands for its centre in millimetres in the common frame
   of :mod:`bench.data.grid` (256 mm cubic field of view centred at the origin).
3. ``P`` of the ``K`` surface voxels are drawn by a random generator seeded by
   ``(seed, i)`` only, where ``i`` is the position of the volume in its set:
   shape ``i``'s points do not change when other shapes are added, removed or
   reordered around it. With ``K >= P`` the draw is without replacement, and
   in random order, so the first ``n`` points of a set are themselves a
   uniform sample of ``n`` surface voxels without replacement (the earth
   mover's distance uses this to subsample). With ``0 < K < P`` every surface
   voxel appears once (in random order), followed by ``P - K`` voxels drawn
   uniformly with replacement; ``PointSets.n_surface`` records ``K`` so that a
   report can flag such shapes.
4. An empty volume (``K = 0``) raises :class:`~bench.core.errors.BenchError` naming
   its index. With ``allow_empty=True`` (for generated sets, where an empty
   sample is a failure of the method, not of the data) it is kept as a marker:
   ``n_surface`` is 0, its indices are -1 and its coordinates NaN; the distance
   engine gives it an infinite distance to every shape, so it never scores as
   a good sample.

Coordinates are never rescaled. PointFlow (Yang et al. 2019) normalises all
shapes of a category together (one global shift and scale); later work such as
Luo & Hu (2021, diffusion probabilistic models for point clouds) and Zhou et al.
(2021, PVD) normalises each shape to its own bounding box. Both remove
information that is anatomy here: the size of a skull differs with sex, age and
population, and a generator that gets sizes wrong must be penalised. Shapes are
already in a canonical pose in one physical field of view, so the distances are
in physical units: millimetres squared for the Chamfer distance, millimetres
for the earth mover's distance, comparable across resolutions and datasets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.data.grid import FIELD_OF_VIEW_MM, index_to_mm, voxel_size_mm
from bench.core.errors import BenchError

DEFAULT_POINTS = 2048
# Keeps this sampler's random streams apart from other users of (seed, i) seeds.
_SAMPLER_STREAM = 0x50_17_5E_75


@dataclass(frozen=True)
class PointSets:
    """``N`` sets of ``P`` surface points, stored as voxel indices of one grid.

    Attributes:
        indices: int16 array (N, P, 3) of voxel indices (x, y, z); -1 for the
            points of an empty shape.
        n_surface: int64 array (N,), the number of surface voxels ``K`` of each
            shape; 0 marks an empty shape, ``0 < K < P`` a shape sampled with
            replacement.
        resolution: grid size R of the volumes the points came from.
        field_of_view_mm: edge of the cubic field of view.
        seed: the sampler seed.
    """

    indices: np.ndarray
    n_surface: np.ndarray
    resolution: int
    field_of_view_mm: float = FIELD_OF_VIEW_MM
    seed: int = 0

    def __post_init__(self) -> None:
        if self.indices.ndim != 3 or self.indices.shape[2] != 3:
            raise BenchError(f"point sets: indices must have shape (N, P, 3), "
                             f"got {self.indices.shape}")
        if self.n_surface.shape != (len(self.indices),):
            raise BenchError(f"point sets: n_surface must have shape ({len(self.indices)},), "
                             f"got {self.n_surface.shape}")

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def n_points(self) -> int:
        """Points per shape, P."""
        return int(self.indices.shape[1])

    @property
    def voxel_size_mm(self) -> float:
        """Edge length of one voxel in millimetres."""
        return voxel_size_mm(self.resolution, self.field_of_view_mm)

    @property
    def empty(self) -> np.ndarray:
        """Bool array (N,): True for shapes without a single surface voxel."""
        return self.n_surface == 0

    def points_mm(self, index: int | None = None) -> np.ndarray:
        """Voxel-centre coordinates in mm: (P, 3) for one shape, else (N, P, 3); NaN if empty."""
        indices = self.indices if index is None else self.indices[index]
        points = index_to_mm(indices, self.resolution, self.field_of_view_mm)
        points[np.any(indices < 0, axis=-1)] = np.nan
        return points

    def first(self, n: int) -> "PointSets":
        """The first ``n`` points of every shape: a uniform subsample without replacement.

        (Exactly so when a shape has at least ``n`` surface voxels; see the module notes.)
        """
        if not 1 <= n <= self.n_points:
            raise BenchError(f"point sets: cannot take the first {n} of {self.n_points} points; "
                             f"choose 1 <= n <= {self.n_points}")
        return PointSets(self.indices[:, :n], self.n_surface, self.resolution,
                         self.field_of_view_mm, self.seed)


def surface_mask(volume: np.ndarray) -> np.ndarray:
    """Bone voxels with at least one 6-neighbour that is background (bool, same shape).

    Args:
        volume: bool array (R, R, R).
    """
    bone = np.asarray(volume, dtype=bool)
    interior = np.zeros_like(bone)
    core = (slice(1, -1),) * 3
    inner = bone[core].copy()
    for axis in range(3):
        before = [slice(1, -1)] * 3
        after = [slice(1, -1)] * 3
        before[axis] = slice(None, -2)
        after[axis] = slice(2, None)
        inner &= bone[tuple(before)]
        inner &= bone[tuple(after)]
    interior[core] = inner
    return bone & ~interior


def sample_surface_points(volumes: np.ndarray, n_points: int = DEFAULT_POINTS, seed: int = 0,
                          *, field_of_view_mm: float = FIELD_OF_VIEW_MM,
                          allow_empty: bool = False) -> PointSets:
    """Draw ``n_points`` surface voxels of each volume (the protocol of the module notes).

    Args:
        volumes: bool or uint8 array (N, R, R, R) in the common grid.
        n_points: points per shape, P.
        seed: sampler seed; shape i's points depend only on (seed, i) and its volume.
        field_of_view_mm: edge of the field of view the volumes cover.
        allow_empty: keep empty volumes as markers instead of raising.

    Returns:
        :class:`PointSets` with indices (N, P, 3).

    Raises:
        BenchError: bad arguments, or an empty volume when ``allow_empty`` is False.
    """
    volumes = np.asarray(volumes)
    if volumes.ndim != 4 or len(set(volumes.shape[1:])) != 1:
        raise BenchError(f"point sets: volumes must have shape (N, R, R, R), got {volumes.shape}")
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or n_points < 1:
        raise BenchError(f"point sets: n_points must be a positive integer, got {n_points!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise BenchError(f"point sets: seed must be a non-negative integer, got {seed!r}")
    resolution = volumes.shape[1]
    indices = np.full((len(volumes), n_points, 3), -1, dtype=np.int16)
    n_surface = np.zeros(len(volumes), dtype=np.int64)
    for i, volume in enumerate(volumes):
        flat = np.flatnonzero(surface_mask(volume))
        n_surface[i] = len(flat)
        if len(flat) == 0:
            if allow_empty:
                continue
            raise BenchError(f"point sets: volume {i} has no bone voxels, so it has no surface "
                             f"points; remove it, or pass allow_empty=True for generated sets "
                             f"(an empty shape then counts as infinitely far from every shape)")
        chosen = flat[_draw(len(flat), n_points, seed, i)]
        indices[i] = np.stack(np.unravel_index(chosen, volume.shape), axis=-1)
    return PointSets(indices, n_surface, int(resolution), float(field_of_view_mm), int(seed))


def _draw(n_surface: int, n_points: int, seed: int, index: int) -> np.ndarray:
    """Positions of the drawn points among ``n_surface`` candidates, for shape ``index``."""
    rng = np.random.default_rng([_SAMPLER_STREAM, seed, index])
    if n_surface >= n_points:
        return rng.choice(n_surface, n_points, replace=False)
    return np.concatenate([rng.permutation(n_surface),
                           rng.integers(0, n_surface, n_points - n_surface)])
