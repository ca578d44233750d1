"""The pairwise distance engine: Chamfer and earth mover's distances between point sets.

Definitions (PointFlow, Yang et al. 2019; Achlioptas et al. 2018), for point sets
X and Y in millimetres:

- Chamfer distance, squared Euclidean nearest-neighbour distances, the two
  directional means summed (mm^2)::

      CD(X, Y) = mean_{x in X} min_{y in Y} |x - y|^2 + mean_{y in Y} min_{x in X} |x - y|^2

- Earth mover's distance between two sets of equal size n, the mean Euclidean
  distance under the optimal bijection phi: X -> Y (mm)::

      EMD(X, Y) = min_phi (1/n) sum_{x in X} |x - phi(x)|

  solved exactly (scipy's ``linear_sum_assignment``; POT's ``ot.emd`` gives the
  same value and was slower here) on the first ``emd_points`` points of each
  set, default 512 (a uniform subsample without replacement, see
  :mod:`metrics.pointsets`). PointFlow used an approximate matching on the GPU.
  The exact assignment costs O(n^3) and holds the GIL: measured on skulls at
  64^3, about 45 ms per pair at n = 512 (22 pairs/s per core) and 0.2 s at
  n = 1024 (5 pairs/s), against 8 microseconds per pair for the Chamfer engine.
  So the EMD is off by default, runs in ``workers`` processes, and refuses more
  than ``emd_max_pairs`` = 20,000 distinct pairs (about 7 minutes on 2 cores,
  e.g. 100 generated against 100 reference shapes) unless raised.

:func:`compute_distance_matrices` computes the reference x generated,
reference x reference and generated x generated matrices once, for every
metric to share. Orientation: **rows are reference shapes, columns generated
shapes** in the cross matrices (``cd_ref_gen[i, j] = CD(reference_i,
generated_j)``), as in PointFlow's ``_pairwise_EMD_CD_(ref_pcs, sample_pcs)``.

How the Chamfer matrices are fast and exact. Every point is a voxel centre, so
the nearest-neighbour term ``min_y |x - y|^2`` for all x at once is a lookup in
the Euclidean distance transform ``D_m`` of shape m's points rasterised on the
grid, an integer in units of voxel_size^2. The engine

1. boxes all points of both sets (the box holds every nearest point, so the
   transform on the box is exact) and lists the union of sampled voxels;
2. computes ``D_m`` on the box for up to 8 shapes at a time with torch: the
   separable transform (Saito & Toriwaki 1994), each 1-D pass restricted to
   offsets of at most ``TRUNCATION_RADIUS`` voxels. That is exact wherever
   ``D_m <= radius^2``; the few union voxels farther from shape m than the
   radius get their exact value from a k-d tree query (or scipy's exact
   feature transform when there are many);
3. keeps ``D_m`` on the union only, and for every ordered pair sums it over
   the other shape's points, ``S[s, m] = sum_{x in X_s} D_m(x)``: one fused
   gather-and-sum (``embedding_bag``) per block of maps, exact because integer
   sums below 2^24 are exact in float32 (a block with larger values takes an
   int64 path);
4. returns ``CD(s, m) = voxel_size^2 * (S[s, m] / P_s + S[m, s] / P_m)``.

Blocks of maps (up to 64) run in ``workers`` threads (torch, scipy and numpy
release the GIL; torch's own intra-op threads are set to 1 for the duration of
the call and restored after), so memory is bounded by the block size
(``block_bytes``) times the workers, and the integers make the result
independent of threads and blocks and equal to a k-d tree computation up to
float64 rounding. Measured figures are in ``tests/performance/test_distance_engine.py``.
"""

from __future__ import annotations

import contextlib
import math
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from bench.core.errors import BenchError
from metrics.pointsets import PointSets

DEFAULT_EMD_POINTS = 512
DEFAULT_EMD_MAX_PAIRS = 20_000
DEFAULT_BLOCK_BYTES = 64 * 2**20
# Chamfer engine: distances up to this many voxels come from the windowed transform,
# larger ones from an exact fallback; maps per block; maps per transform batch.
TRUNCATION_RADIUS = 10
MAX_BLOCK_MAPS = 64
EDT_BATCH = 8
EDT_BATCH_BYTES = 32 * 2**20
_FAR = 20_000  # "farther than the window", in voxel^2
_MAX_RADIUS = 100  # so that _FAR + radius^2 fits in int16


def chamfer_distance(reference: np.ndarray, generated: np.ndarray) -> float:
    """Chamfer distance between two point sets (P, 3) and (Q, 3) in mm, in mm^2 (k-d trees)."""
    reference, generated = _points(reference, "reference"), _points(generated, "generated")
    to_generated, _ = cKDTree(generated).query(reference)
    to_reference, _ = cKDTree(reference).query(generated)
    return float(np.mean(to_generated ** 2) + np.mean(to_reference ** 2))


def earth_movers_distance(reference: np.ndarray, generated: np.ndarray) -> float:
    """Earth mover's distance between two point sets (n, 3) of equal size in mm, in mm."""
    reference, generated = _points(reference, "reference"), _points(generated, "generated")
    if len(reference) != len(generated):
        raise BenchError(f"earth mover's distance needs sets of equal size, got "
                         f"{len(reference)} and {len(generated)} points; subsample the larger")
    cost = cdist(reference, generated)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


@dataclass(frozen=True)
class DistanceMatrices:
    """The distance matrices every metric shares; rows reference, columns generated.

    Attributes:
        cd_ref_gen: (N_r, N_g) Chamfer distances in mm^2, ``[i, j] = CD(ref_i, gen_j)``.
        cd_ref_ref: (N_r, N_r), symmetric, zero diagonal.
        cd_gen_gen: (N_g, N_g), symmetric, zero diagonal.
        emd_ref_gen, emd_ref_ref, emd_gen_gen: the same for the earth mover's
            distance in mm, or all None when it was not computed.
        n_points: points per shape used for the Chamfer distance (P).
        emd_points: points per shape used for the EMD, or None.

    A generated shape that was empty (see :mod:`metrics.pointsets`) has an
    infinite distance to every shape, itself included.
    """

    cd_ref_gen: np.ndarray
    cd_ref_ref: np.ndarray
    cd_gen_gen: np.ndarray
    emd_ref_gen: np.ndarray | None = None
    emd_ref_ref: np.ndarray | None = None
    emd_gen_gen: np.ndarray | None = None
    n_points: int | None = None
    emd_points: int | None = None

    def __post_init__(self) -> None:
        _check_triplet("cd", self.cd_ref_gen, self.cd_ref_ref, self.cd_gen_gen)
        ref_gen, ref_ref, gen_gen = self.emd_ref_gen, self.emd_ref_ref, self.emd_gen_gen
        if ref_gen is not None or ref_ref is not None or gen_gen is not None:
            if ref_gen is None or ref_ref is None or gen_gen is None:
                raise BenchError("distance matrices: give all three EMD matrices or none")
            _check_triplet("emd", ref_gen, ref_ref, gen_gen)
            if ref_gen.shape != self.cd_ref_gen.shape:
                raise BenchError(f"distance matrices: EMD cross matrix {ref_gen.shape} and "
                                 f"Chamfer cross matrix {self.cd_ref_gen.shape} differ")

    @property
    def has_emd(self) -> bool:
        """Whether the EMD matrices were computed."""
        return self.emd_ref_gen is not None


def compute_distance_matrices(reference: PointSets, generated: PointSets, *, emd: bool = False,
                              emd_points: int = DEFAULT_EMD_POINTS,
                              emd_max_pairs: int = DEFAULT_EMD_MAX_PAIRS,
                              workers: int | None = None,
                              block_bytes: int = DEFAULT_BLOCK_BYTES) -> DistanceMatrices:
    """Chamfer (and optionally EMD) matrices between and within two point sets, once.

    Args:
        reference: reference shapes, N_r sets of P points; none may be empty.
        generated: generated shapes, N_g sets of P points in the same grid; empty
            ones (``allow_empty=True`` when sampling) get infinite distances.
        emd: also compute the earth mover's distance matrices.
        emd_points: points per shape for the EMD (the first ones of each set).
        emd_max_pairs: refuse an EMD computation over more distinct pairs than
            this (about ``pairs * 45 ms / workers`` at 512 points).
        workers: threads for the Chamfer engine and processes for the EMD;
            None uses every core this process may run on.
        block_bytes: memory for one block of distance maps (per worker).

    Returns:
        :class:`DistanceMatrices`, rows reference and columns generated.
    """
    _check_compatible(reference, generated)
    empty_ref = np.flatnonzero(reference.empty)
    if len(empty_ref):
        raise BenchError(f"distance matrices: reference shape {int(empty_ref[0])} is empty; "
                         f"a reference set must contain real shapes")
    workers = _workers(workers)
    keep = np.flatnonzero(~generated.empty)
    groups = [reference.indices, generated.indices[keep]]
    cd = _scatter(_chamfer_all(groups, reference.voxel_size_mm, workers, block_bytes),
                  len(reference), len(generated), keep)
    if not emd:
        return DistanceMatrices(*cd, n_points=reference.n_points)
    sub = [_points_subsample(reference, emd_points), _points_subsample(generated, emd_points)]
    points = np.concatenate([sub[0], sub[1][keep]])
    emd_matrices = _scatter(_emd_all(points, emd_max_pairs, workers),
                            len(reference), len(generated), keep)
    return DistanceMatrices(*cd, *emd_matrices, n_points=reference.n_points,
                            emd_points=emd_points)


def _chamfer_all(groups: list[np.ndarray], voxel_size: float, workers: int,
                 block_bytes: int) -> np.ndarray:
    """(M, M) Chamfer distances in mm^2 between all shapes of the groups, in order.

    Each group is an int array (N_g, P_g, 3) of voxel indices.
    """
    lattice = _Lattice(groups)
    n_shapes = lattice.n_shapes
    width = max(1, min(block_bytes // (4 * lattice.n_union), MAX_BLOCK_MAPS,
                       math.ceil(n_shapes / (2 * workers))))
    sums = np.zeros((n_shapes, n_shapes), dtype=np.int64)
    blocks = [(start, min(start + width, n_shapes)) for start in range(0, n_shapes, width)]

    def fill(block: tuple[int, int]) -> None:
        sums[:, block[0]:block[1]] = lattice.block_sums(*block)

    with _torch_threads(1):
        if workers == 1:
            for block in blocks:
                fill(block)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(fill, blocks))
    means = sums / lattice.n_points[:, None]
    return voxel_size ** 2 * (means + means.T)


class _Lattice:
    """All sampled voxels of all shapes, in the bounding box that holds them.

    Distances are integers in units of voxel^2 throughout. A map ``D_m`` (the
    squared distance to shape m's nearest point) is kept only on the union of
    sampled voxels, and ``positions[g]`` (N_g, P_g) gives each point's row in
    that union.
    """

    def __init__(self, groups: list[np.ndarray], radius: int | None = None) -> None:
        points = [np.asarray(g, dtype=np.int64) for g in groups]
        stacked = np.concatenate([p.reshape(-1, 3) for p in points])
        low = stacked.min(axis=0)
        self.box = tuple(int(b) for b in stacked.max(axis=0) - low + 1)
        self.shape_points = [shape - low for p in points for shape in p]
        flat = [np.ravel_multi_index(np.moveaxis(p - low, -1, 0), self.box) for p in points]
        occupied = np.zeros(int(np.prod(self.box)), dtype=bool)
        for f in flat:
            occupied[f] = True
        self.union = np.flatnonzero(occupied)
        self.union_coords = np.stack(np.unravel_index(self.union, self.box), axis=1)
        row = np.cumsum(occupied, dtype=np.int64) - 1
        self.positions = [torch.from_numpy(row[f]) for f in flat]
        self.shape_flat = [torch.from_numpy(f) for group in flat for f in group]
        self.n_points = np.concatenate([np.full(len(p), p.shape[1]) for p in points])
        radius = TRUNCATION_RADIUS if radius is None else radius
        self.radius = min(radius, max(self.box) - 1, _MAX_RADIUS)
        # Three int16 fields of the box per shape in a transform batch.
        self.batch = int(np.clip(EDT_BATCH_BYTES // (6 * np.prod(self.box)), 1, EDT_BATCH))

    @property
    def n_shapes(self) -> int:
        return len(self.n_points)

    @property
    def n_union(self) -> int:
        return len(self.union)

    def block_sums(self, start: int, stop: int) -> np.ndarray:
        """(M, stop - start): ``[s, k] = sum of D_{start+k} over shape s's points``."""
        table = np.concatenate([self.squared_distances(range(first, min(first + self.batch, stop)))
                                for first in range(start, stop, self.batch)]).T
        if int(table.max()) * int(self.n_points.max()) < 2**24:
            # Integer sums below 2^24 are exact in float32, whatever the order of summation.
            weight = torch.from_numpy(np.ascontiguousarray(table, dtype=np.float32))
            sums = [torch.nn.functional.embedding_bag(p, weight, mode="sum").numpy()
                    for p in self.positions]
            return np.rint(np.concatenate(sums)).astype(np.int64)
        table = np.ascontiguousarray(table)
        return np.concatenate([table[p.numpy()].sum(axis=1, dtype=np.int64)
                               for p in self.positions])

    def squared_distances(self, shapes: range) -> np.ndarray:
        """(len(shapes), U) exact squared distances from union voxels to each shape."""
        values = self._truncated_edt(shapes).astype(np.int32)
        limit = self.radius ** 2
        for k, shape in enumerate(shapes):
            far = np.flatnonzero(values[k] > limit)
            if len(far):
                values[k, far] = self._exact(shape, far)
        return values

    def _truncated_edt(self, shapes: range) -> np.ndarray:
        """(len(shapes), U) int16 squared distances, exact where <= radius^2.

        The separable transform (Saito & Toriwaki 1994) with each 1-D pass
        restricted to offsets |d| <= radius. A value <= radius^2 is exact: its
        minimiser lies within the window in every pass, and windowed passes
        never underestimate. A value above radius^2 only says the distance is
        larger than radius.
        """
        size = int(np.prod(self.box))
        field = torch.full((len(shapes), size), _FAR, dtype=torch.int16)
        for k, shape in enumerate(shapes):
            field[k, self.shape_flat[shape]] = 0
        field = field.view(len(shapes), *self.box)
        scratch = torch.empty_like(field)
        for dim in (1, 2, 3):
            field = _windowed_pass(field, dim, self.radius, scratch)
        return field.view(len(shapes), size)[:, torch.from_numpy(self.union)].numpy()

    def _exact(self, shape: int, rows: np.ndarray) -> np.ndarray:
        """Exact squared distances from union voxels ``rows`` to ``shape``'s points."""
        points = self.shape_points[shape]
        targets = self.union_coords[rows]
        if len(rows) > self.n_union // 4:
            image = np.ones(self.box, dtype=bool)
            image[tuple(points.T)] = False
            nearest = ndimage.distance_transform_edt(image, return_distances=False,
                                                     return_indices=True)
            offset = nearest[(slice(None), *targets.T)].T - targets
        else:
            _, index = cKDTree(points).query(targets)
            offset = points[index] - targets
        return np.einsum("ij,ij->i", offset, offset)


def _windowed_pass(field: torch.Tensor, dim: int, radius: int,
                   scratch: torch.Tensor) -> torch.Tensor:
    """``out[i] = min_{|d| <= radius} field[i + d] + d^2`` along ``dim``, capped at _FAR."""
    out = field.clone()
    length = field.shape[dim]
    for d in range(1, min(radius, length - 1) + 1):
        for target, source in ((d, 0), (0, d)):
            view = out.narrow(dim, target, length - d)
            shifted = scratch.narrow(dim, target, length - d)
            torch.add(field.narrow(dim, source, length - d), d * d, out=shifted)
            torch.minimum(view, shifted, out=view)
    return out.clamp_(max=_FAR)


@contextlib.contextmanager
def _torch_threads(n: int):
    """Run torch with ``n`` intra-op threads, then restore the setting.

    The engine parallelises over blocks of maps in its own threads; torch's
    own threads on top of them only oversubscribe the cores.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _emd_all(points: np.ndarray, max_pairs: int, workers: int) -> np.ndarray:
    """(M, M) EMD in mm between all shapes of ``points`` (M, n, 3) in mm; zero diagonal."""
    n_shapes = len(points)
    pairs = [(a, b) for a in range(n_shapes) for b in range(a + 1, n_shapes)]
    if len(pairs) > max_pairs:
        raise BenchError(
            f"EMD over {len(pairs)} distinct pairs exceeds emd_max_pairs={max_pairs} (about "
            f"45 ms per pair per worker at 512 points, so ~{len(pairs) * 0.045 / workers / 60:.0f} "
            f"min here); evaluate fewer shapes, lower emd_points, raise emd_max_pairs, or "
            f"pass emd=False")
    chunks = [pairs[i:i + 64] for i in range(0, len(pairs), 64)]
    if workers == 1 or len(chunks) == 1:
        values = [_emd_pairs(points, chunk) for chunk in chunks]
    else:
        with ProcessPoolExecutor(max_workers=workers, initializer=_emd_worker_init,
                                 initargs=(points,)) as pool:
            values = list(pool.map(_emd_chunk, chunks))
    matrix = np.zeros((n_shapes, n_shapes))
    if pairs:
        first, second = np.array(pairs).T
        flat_values = np.concatenate(values)
        matrix[first, second] = flat_values
        matrix[second, first] = flat_values
    return matrix


def _emd_pairs(points: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    return np.array([earth_movers_distance(points[a], points[b]) for a, b in pairs])


# Set once in each EMD worker process by its initializer, so that the points travel once.
_WORKER_POINTS: np.ndarray | None = None


def _emd_worker_init(points: np.ndarray) -> None:
    global _WORKER_POINTS
    _WORKER_POINTS = points


def _emd_chunk(pairs: list[tuple[int, int]]) -> np.ndarray:
    if _WORKER_POINTS is None:
        raise BenchError("EMD worker: no points; _emd_worker_init must run first")
    return _emd_pairs(_WORKER_POINTS, pairs)


def _scatter(full: np.ndarray, n_reference: int, n_generated: int,
             keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split the (M, M) matrix of [reference, kept generated] into the three matrices.

    Generated shapes not in ``keep`` (empty ones) get infinite distances.
    """
    ref = slice(0, n_reference)
    gen = slice(n_reference, None)
    cross = np.full((n_reference, n_generated), np.inf)
    cross[:, keep] = full[ref, gen]
    gen_gen = np.full((n_generated, n_generated), np.inf)
    gen_gen[np.ix_(keep, keep)] = full[gen, gen]
    return cross, np.array(full[ref, ref]), gen_gen


def _points_subsample(sets: PointSets, n: int) -> np.ndarray:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise BenchError(f"emd_points must be a positive integer, got {n!r}")
    if n > sets.n_points:
        raise BenchError(f"emd_points={n} exceeds the {sets.n_points} points per shape; "
                         f"choose emd_points <= {sets.n_points}")
    return sets.first(n).points_mm()


def _check_compatible(reference: PointSets, generated: PointSets) -> None:
    if len(reference) == 0 or len(generated) == 0:
        raise BenchError(f"distance matrices need at least one shape per set, got "
                         f"{len(reference)} reference and {len(generated)} generated")
    if reference.n_points != generated.n_points:
        raise BenchError(f"reference and generated point sets have {reference.n_points} and "
                         f"{generated.n_points} points per shape; sample both with the same "
                         f"n_points")
    if (reference.resolution != generated.resolution
            or not math.isclose(reference.field_of_view_mm, generated.field_of_view_mm)):
        raise BenchError(f"reference ({reference.resolution}^3, {reference.field_of_view_mm} mm) "
                         f"and generated ({generated.resolution}^3, "
                         f"{generated.field_of_view_mm} mm) point sets come from different "
                         f"grids; resample both into the common grid")


def _check_triplet(name: str, cross: np.ndarray, ref_ref: np.ndarray,
                   gen_gen: np.ndarray) -> None:
    if cross.ndim != 2:
        raise BenchError(f"distance matrices: {name} cross matrix must be 2-D, got {cross.shape}")
    n_ref, n_gen = cross.shape
    if ref_ref.shape != (n_ref, n_ref) or gen_gen.shape != (n_gen, n_gen):
        raise BenchError(f"distance matrices: {name} cross matrix {cross.shape} (rows reference, "
                         f"columns generated) needs reference x reference ({n_ref}, {n_ref}) "
                         f"and generated x generated ({n_gen}, {n_gen}), got {ref_ref.shape} "
                         f"and {gen_gen.shape}")


def _points(points: np.ndarray, name: str) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise BenchError(f"{name} points must have shape (n, 3) with n >= 1, got {points.shape}")
    if not np.all(np.isfinite(points)):
        raise BenchError(f"{name} points contain NaN or infinity (an empty shape?)")
    return points


def _workers(workers: int | None) -> int:
    if workers is None:
        return max(1, len(os.sched_getaffinity(0)))
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise BenchError(f"workers must be a positive integer or None, got {workers!r}")
    return int(workers)
