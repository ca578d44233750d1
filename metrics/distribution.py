"""Distribution metrics of the PointFlow protocol: MMD, COV and 1-NNA.

Given reference shapes S_r, generated shapes S_g and a distance D between
shapes (the Chamfer distance CD in mm^2 or the earth mover's distance EMD in
mm, see :mod:`metrics.distances`), as defined by Achlioptas et al. (2018) and
used by PointFlow (Yang et al. 2019):

- **MMD**, minimum matching distance (fidelity; lower is better, in D's unit)::

      MMD = mean_{y in S_r} min_{x in S_g} D(x, y)

- **COV**, coverage (diversity; higher is better, %): the fraction of reference
  shapes that are the nearest reference shape of at least one generated shape::

      COV = |{ argmin_{y in S_r} D(x, y) : x in S_g }| / |S_r|

- **1-NNA**, 1-nearest-neighbour accuracy (both; %): every shape of
  S_r ∪ S_g is classified by the set of its nearest neighbour among all the
  other shapes (leave-one-out); 1-NNA is the share classified correctly.
  Reported as is, like PointFlow, with lower is better: 50 % means the sets
  cannot be told apart, 100 % that they are disjoint. Values well below 50 %
  mean generated shapes sit closer to reference shapes than reference shapes
  to each other: copies of the reference (memorisation) give 0 %.

Conventions. Every function takes the matrices in one orientation: rows
reference, columns generated (``cross[i, j] = D(reference_i, generated_j)``).
Ties go to the first index: in COV, the first reference row among equally
near ones; in 1-NNA, the first shape in the order [reference..., generated...],
so a tie between a reference and a generated neighbour counts the reference
one. An infinite distance marks a generated shape that was empty: it covers
nothing, it is nobody's nearest neighbour, and in 1-NNA it is classified
correctly (it is trivially told apart), so it only ever worsens the scores.
A NaN anywhere in the input gives NaN, never a score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.core.errors import BenchError
from bench.core.values import ValueSpec
from metrics.base import Metric, Params, register_metric
from metrics.distances import (DEFAULT_EMD_MAX_PAIRS, DEFAULT_EMD_POINTS,
                               compute_distance_matrices)

GROUP = "distribution"
_SUBSET_STREAM = 0x5E7_512E


def minimum_matching_distance(cross: np.ndarray) -> float:
    """MMD: mean over reference shapes of the distance to the nearest generated shape.

    Args:
        cross: (N_r, N_g) distances, rows reference, columns generated.

    Returns:
        MMD in the unit of ``cross``; inf if every generated shape is empty.
    """
    cross = _matrix(cross, "cross")
    if np.isnan(cross).any():
        return float("nan")
    return float(cross.min(axis=1).mean())


def coverage(cross: np.ndarray) -> float:
    """COV: percentage of reference shapes that are some generated shape's nearest.

    Args:
        cross: (N_r, N_g) distances, rows reference, columns generated.

    Returns:
        COV in %, in [0, 100].
    """
    cross = _matrix(cross, "cross")
    if np.isnan(cross).any():
        return float("nan")
    matched = np.isfinite(cross).any(axis=0)
    nearest = np.argmin(cross[:, matched], axis=0)
    return float(100.0 * len(np.unique(nearest)) / cross.shape[0])


def one_nna(cross: np.ndarray, ref_ref: np.ndarray, gen_gen: np.ndarray) -> float:
    """1-NNA: leave-one-out 1-nearest-neighbour accuracy on reference ∪ generated.

    Args:
        cross: (N_r, N_g) distances, rows reference, columns generated.
        ref_ref: (N_r, N_r) distances within the reference set (diagonal ignored).
        gen_gen: (N_g, N_g) distances within the generated set (diagonal ignored).

    Returns:
        Accuracy in %; 50 is ideal, lower is better down to 50.
    """
    cross = _matrix(cross, "cross")
    n_ref, n_gen = cross.shape
    ref_ref = _matrix(ref_ref, "ref_ref", (n_ref, n_ref))
    gen_gen = _matrix(gen_gen, "gen_gen", (n_gen, n_gen))
    joint = np.block([[ref_ref, cross], [cross.T, gen_gen]])
    np.fill_diagonal(joint, np.inf)
    if np.isnan(joint).any():
        return float("nan")
    is_generated = np.arange(n_ref + n_gen) >= n_ref
    nearest = np.argmin(joint, axis=1)
    correct = is_generated[nearest] == is_generated
    correct[~np.isfinite(joint).any(axis=1)] = True
    return float(100.0 * correct.mean())


def pointflow_scores(tag: str, cross: np.ndarray, ref_ref: np.ndarray,
                     gen_gen: np.ndarray) -> dict[str, float]:
    """``MMD-<tag>``, ``COV-<tag>`` and ``1-NNA-<tag>`` of one distance's three matrices."""
    return {f"MMD-{tag}": minimum_matching_distance(cross), f"COV-{tag}": coverage(cross),
            f"1-NNA-{tag}": one_nna(cross, ref_ref, gen_gen)}


def equal_size_scores(tag: str, cross: np.ndarray, ref_ref: np.ndarray, gen_gen: np.ndarray,
                      draws: int, seed: int) -> dict[str, float]:
    """:func:`pointflow_scores` at equal set sizes: the mean over ``draws`` random subsets
    of the larger set, of the smaller set's size (the scores as they are when the sizes
    are equal).

    PointFlow defines 1-NNA for two sets of equal size, where 50 % is chance;
    with 24 generated against 6 reference shapes, answering "generated" always
    scores 80 %. COV and MMD shift with the size ratio too. Subsets are drawn
    without replacement by a generator seeded by (seed, draw).
    """
    n_ref, n_gen = cross.shape
    if n_ref == n_gen:
        return pointflow_scores(tag, cross, ref_ref, gen_gen)
    size = min(n_ref, n_gen)
    totals: dict[str, float] = {}
    for draw in range(draws):
        rng = np.random.default_rng([_SUBSET_STREAM, seed, draw])
        rows = rng.choice(n_ref, size, replace=False) if n_ref > size else np.arange(n_ref)
        cols = rng.choice(n_gen, size, replace=False) if n_gen > size else np.arange(n_gen)
        scores = pointflow_scores(tag, cross[np.ix_(rows, cols)], ref_ref[np.ix_(rows, rows)],
                                  gen_gen[np.ix_(cols, cols)])
        for name, value in scores.items():
            totals[name] = totals.get(name, 0.0) + value / draws
    return totals


@dataclass(frozen=True)
class SetParams(Params):
    """Random draws of the larger set when the two sets differ in size."""

    draws: int = 10


@register_metric("pointflow-cd")
class PointFlowChamfer(Metric):
    """MMD, COV and 1-NNA under the Chamfer distance (the shared matrices of the engine)."""

    description = ("PointFlow's MMD, COV and 1-NNA under the Chamfer distance (mm^2), at equal "
                   "set sizes")
    group = GROUP
    inputs = ("chamfer",)
    outputs = (ValueSpec("MMD-CD", False, "mm^2", {"headline", "robustness", "nfe", "gate",
                                                   "floor"}),
               ValueSpec("COV-CD", True, "%", {"headline", "robustness", "nfe", "gate"}),
               ValueSpec("1-NNA-CD", False, "%", {"headline", "robustness", "nfe", "gate"}))
    Params = SetParams
    params: SetParams

    def compute(self, reference: Any, generated: Any) -> dict[str, float]:
        matrices = generated.chamfer
        return equal_size_scores("CD", matrices.cd_ref_gen, matrices.cd_ref_ref,
                                 matrices.cd_gen_gen, self.params.draws, generated.seed)


@dataclass(frozen=True)
class EMDParams(SetParams):
    """Points per shape of the exact EMD, and the most distinct pairs it may solve."""

    points: int = DEFAULT_EMD_POINTS
    max_pairs: int = DEFAULT_EMD_MAX_PAIRS


@register_metric("pointflow-emd")
class PointFlowEMD(Metric):
    """MMD, COV and 1-NNA under the exact earth mover's distance (about 40 ms a pair)."""

    description = ("PointFlow's MMD, COV and 1-NNA under the exact earth mover's distance (mm; "
                   "about 40 ms a pair at 512 points)")
    group = GROUP
    inputs = ("points",)
    outputs = (ValueSpec("MMD-EMD", False, "mm"), ValueSpec("COV-EMD", True, "%"),
               ValueSpec("1-NNA-EMD", False, "%"))
    Params = EMDParams
    params: EMDParams

    def compute(self, reference: Any, generated: Any) -> dict[str, float]:
        matrices = compute_distance_matrices(reference.points, generated.points, emd=True,
                                             emd_points=self.params.points,
                                             emd_max_pairs=self.params.max_pairs,
                                             workers=reference.threads)
        cross, ref_ref, gen_gen = matrices.emd_ref_gen, matrices.emd_ref_ref, matrices.emd_gen_gen
        if cross is None or ref_ref is None or gen_gen is None:
            raise BenchError(f"metric {self.name!r}: the EMD matrices were not computed")
        return equal_size_scores("EMD", cross, ref_ref, gen_gen, self.params.draws,
                                 generated.seed)


def _matrix(values: np.ndarray, name: str,
            shape: tuple[int, int] | None = None) -> np.ndarray:
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise BenchError(f"{name}: expected a non-empty 2-D distance matrix, got shape "
                         f"{matrix.shape}")
    if shape is not None and matrix.shape != shape:
        raise BenchError(f"{name}: expected shape {shape} to match the cross matrix "
                         f"(rows reference, columns generated), got {matrix.shape}")
    if (matrix < 0).any():
        raise BenchError(f"{name}: distances must be non-negative")
    return matrix
