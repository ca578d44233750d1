"""MMD, COV and 1-NNA on cases whose answer follows from the definitions."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from bench.core.errors import BenchError
from metrics.distribution import (PointFlowChamfer, PointFlowEMD, coverage, equal_size_scores,
                                  minimum_matching_distance, one_nna, pointflow_scores)
from metrics.distances import compute_distance_matrices
from metrics.pointsets import sample_surface_points
from sets import scores

# Rows reference (3), columns generated (4).
CROSS = np.array([[1.0, 5.0, 2.0, 9.0],
                  [4.0, 0.5, 6.0, 7.0],
                  [3.0, 8.0, 8.0, 10.0]])


def ellipsoid_shells(n, resolution, low, high, seed):
    """n solid ellipsoids with semi-axes uniform in [low, high) voxels and a jittered centre."""
    rng = np.random.default_rng(seed)
    grid = np.indices((resolution,) * 3).transpose(1, 2, 3, 0).astype(float)
    volumes = np.empty((n, resolution, resolution, resolution), dtype=bool)
    for i in range(n):
        centre = (resolution - 1) / 2 + rng.uniform(-1, 1, 3)
        axes = rng.uniform(low, high, 3)
        volumes[i] = np.sum(((grid - centre) / axes) ** 2, axis=-1) <= 1
    return volumes


def shape_matrices(reference_volumes, generated_volumes):
    reference = sample_surface_points(reference_volumes, 128, seed=0)
    generated = sample_surface_points(generated_volumes, 128, seed=1)
    return compute_distance_matrices(reference, generated, workers=2)


def test_mmd_by_hand():
    # Row minima 1, 0.5 and 3.
    assert minimum_matching_distance(CROSS) == pytest.approx(1.5)


def test_coverage_by_hand():
    # Nearest reference of each generated column: 0, 1, 0, 1 -> two of three covered.
    assert coverage(CROSS) == pytest.approx(200 / 3)


def test_orientation_rows_reference_columns_generated():
    # Read the other way round, the same numbers give other answers.
    assert minimum_matching_distance(CROSS.T) == pytest.approx((1 + 0.5 + 2 + 7) / 4)
    assert coverage(CROSS.T) == pytest.approx(50.0)
    assert minimum_matching_distance(CROSS) != minimum_matching_distance(CROSS.T)


def test_coverage_ties_go_to_the_first_reference():
    assert coverage(np.ones((2, 2))) == pytest.approx(50.0)


def test_one_nna_by_hand():
    ref_ref = np.array([[0.0, 1.0], [1.0, 0.0]])
    gen_gen = np.array([[0.0, 5.0], [5.0, 0.0]])
    cross = np.array([[2.0, 3.0], [4.0, 0.5]])
    # r0 -> r1 (right), r1 -> g1 (wrong), g0 -> r0 (wrong), g1 -> r1 (wrong).
    assert one_nna(cross, ref_ref, gen_gen) == pytest.approx(25.0)
    # The classifier does not care which set is called the reference.
    assert one_nna(cross.T, gen_gen, ref_ref) == pytest.approx(25.0)


def test_one_nna_ties_go_to_the_reference_neighbour():
    ref_ref = np.array([[0.0, 1.0], [1.0, 0.0]])
    gen_gen = np.array([[0.0, 1.0], [1.0, 0.0]])
    cross = np.array([[1.0, 9.0], [9.0, 9.0]])
    # r0: r1 and g0 tie at 1 -> r1 (right); r1 -> r0 (right); g0: r0 and g1 tie at 1 -> r0
    # (wrong); g1 -> g0 (right).
    assert one_nna(cross, ref_ref, gen_gen) == pytest.approx(75.0)


def test_one_nna_ignores_the_diagonal():
    ref_ref = np.array([[5.0, 1.0], [1.0, 5.0]])
    gen_gen = np.array([[5.0, 1.0], [1.0, 5.0]])
    cross = np.full((2, 2), 3.0)
    assert one_nna(cross, ref_ref, gen_gen) == pytest.approx(100.0)


def test_identical_sets_give_full_coverage_zero_mmd_and_copy_1nna():
    volumes = ellipsoid_shells(12, 24, 4, 9, seed=0)
    points = sample_surface_points(volumes, 128, seed=0)
    matrices = compute_distance_matrices(points, points, workers=1)
    assert minimum_matching_distance(matrices.cd_ref_gen) == 0.0
    assert coverage(matrices.cd_ref_gen) == 100.0
    # Each shape's nearest neighbour is its copy in the other set.
    assert one_nna(matrices.cd_ref_gen, matrices.cd_ref_ref, matrices.cd_gen_gen) == 0.0


def test_one_nna_near_50_for_one_distribution_of_shapes():
    matrices = shape_matrices(ellipsoid_shells(200, 32, 6, 12, seed=1),
                              ellipsoid_shells(200, 32, 6, 12, seed=2))
    accuracy = one_nna(matrices.cd_ref_gen, matrices.cd_ref_ref, matrices.cd_gen_gen)
    # 400 classifications: binomial standard deviation 2.5 %; four of them either side.
    assert 40.0 <= accuracy <= 60.0
    assert coverage(matrices.cd_ref_gen) > 25.0


def test_one_nna_100_and_low_coverage_for_disjoint_shapes():
    matrices = shape_matrices(ellipsoid_shells(60, 32, 4, 7, seed=3),
                              ellipsoid_shells(60, 32, 10, 13, seed=4))
    assert one_nna(matrices.cd_ref_gen, matrices.cd_ref_ref, matrices.cd_gen_gen) == 100.0
    assert coverage(matrices.cd_ref_gen) < 25.0
    same = shape_matrices(ellipsoid_shells(60, 32, 4, 7, seed=3),
                          ellipsoid_shells(60, 32, 4, 7, seed=5))
    assert minimum_matching_distance(same.cd_ref_gen) < minimum_matching_distance(
        matrices.cd_ref_gen)


def test_one_nna_on_gaussian_samples():
    rng = np.random.default_rng(6)
    reference, same, shifted = (rng.normal(size=(200, 4)) + offset for offset in (0, 0, 10))
    for generated, low, high in ((same, 40.0, 60.0), (shifted, 100.0, 100.0)):
        accuracy = one_nna(cdist(reference, generated), cdist(reference, reference),
                           cdist(generated, generated))
        assert low <= accuracy <= high


def test_empty_generated_shapes_only_worsen_scores():
    inf = np.inf
    cross = np.array([[1.0, inf], [2.0, inf]])
    ref_ref = np.array([[0.0, 3.0], [3.0, 0.0]])
    gen_gen = np.array([[0.0, inf], [inf, inf]])
    assert minimum_matching_distance(cross) == pytest.approx(1.5)
    assert coverage(cross) == pytest.approx(50.0)
    # r0 -> g0, r1 -> g0, g0 -> r0: wrong; the empty g1 is told apart: right.
    assert one_nna(cross, ref_ref, gen_gen) == pytest.approx(25.0)
    all_empty = np.full((2, 2), inf)
    assert minimum_matching_distance(all_empty) == inf
    assert coverage(all_empty) == 0.0
    assert one_nna(all_empty, ref_ref, all_empty) == pytest.approx(100.0)


def test_nan_gives_nan_not_a_score():
    cross = CROSS.copy()
    cross[1, 2] = np.nan
    assert np.isnan(minimum_matching_distance(cross))
    assert np.isnan(coverage(cross))
    assert np.isnan(one_nna(cross, np.zeros((3, 3)), np.zeros((4, 4))))


def test_bad_matrices_raise():
    with pytest.raises(BenchError, match="2-D"):
        coverage(np.zeros(3))
    with pytest.raises(BenchError, match="2-D"):
        minimum_matching_distance(np.zeros((0, 3)))
    with pytest.raises(BenchError, match="gen_gen: expected shape \\(4, 4\\)"):
        one_nna(CROSS, np.zeros((3, 3)), np.zeros((3, 3)))
    with pytest.raises(BenchError, match="non-negative"):
        coverage(-CROSS)


def test_pointflow_scores_and_the_declared_outputs():
    ref_ref, gen_gen = np.zeros((3, 3)), np.zeros((4, 4))
    values = pointflow_scores("CD", CROSS, ref_ref, gen_gen)
    assert values == {"MMD-CD": pytest.approx(1.5), "COV-CD": coverage(CROSS),
                      "1-NNA-CD": one_nna(CROSS, ref_ref, gen_gen)}
    assert [(s.name, s.unit, s.higher_is_better) for s in PointFlowChamfer.outputs] == [
        ("MMD-CD", "mm^2", False), ("COV-CD", "%", True), ("1-NNA-CD", "%", False)]
    assert [(s.name, s.unit) for s in PointFlowEMD.outputs] == [
        ("MMD-EMD", "mm"), ("COV-EMD", "%"), ("1-NNA-EMD", "%")]
    assert PointFlowChamfer.group == PointFlowEMD.group == "distribution"


def test_a_generated_set_of_empty_volumes_scores_worst():
    reference = ellipsoid_shells(4, 24, 4, 9, seed=7)
    empty = np.zeros((3, 24, 24, 24), dtype=bool)
    values = {**scores(PointFlowChamfer(), reference, empty, points_per_shape=64),
              **scores(PointFlowEMD(points=16), reference, empty, points_per_shape=64)}
    assert values == {"MMD-CD": np.inf, "COV-CD": 0.0, "1-NNA-CD": 100.0,
                      "MMD-EMD": np.inf, "COV-EMD": 0.0, "1-NNA-EMD": 100.0}


def test_set_metrics_are_scored_at_equal_sizes():
    """Two sets of one distribution, 6 reference against 24 generated points on a line.

    By exchangeability, a point's nearest neighbour is any of the others with equal
    probability: 1-NNA is 5/11 = 45.5 % in expectation at 6 against 6, and
    (6 * 5/29 + 24 * 23/29) / 30 = 66.9 % when the 24 are scored as they are.
    """
    rng = np.random.default_rng(0)
    equal, raw = [], []
    for repeat in range(300):
        ref, gen = rng.normal(size=6), rng.normal(size=24)
        cross = np.abs(ref[:, None] - gen[None])
        ref_ref, gen_gen = np.abs(ref[:, None] - ref), np.abs(gen[:, None] - gen)
        equal.append(equal_size_scores("CD", cross, ref_ref, gen_gen, 1, repeat)["1-NNA-CD"])
        raw.append(one_nna(cross, ref_ref, gen_gen))
    assert np.mean(equal) == pytest.approx(100 * 5 / 11, abs=4.0)  # about 4 standard errors
    assert np.mean(raw) == pytest.approx(100 * 582 / 870, abs=4.0)
    square = np.abs(rng.normal(size=(5, 5)))
    assert equal_size_scores("CD", square, square, square, 3, 0) == pointflow_scores(
        "CD", square, square, square)
