"""Chamfer and earth mover's distances, and the engine that builds the shared matrices.

Every value is checked against an independent computation: numpy's full pairwise
distances for the Chamfer distance, all permutations or POT for the EMD.
"""

import itertools

import numpy as np
import ot
import pytest

from bench.data.synthskull import make_dataset
from bench.core.errors import BenchError
from metrics import distances
from metrics.distances import (DistanceMatrices, chamfer_distance, compute_distance_matrices,
                               earth_movers_distance)
from metrics.pointsets import PointSets, sample_surface_points


def brute_chamfer(x, y):
    """CD from every pairwise squared distance (numpy, in row chunks to bound memory)."""
    x_to_y, y_to_x = [], np.full(len(y), np.inf)
    for chunk in np.array_split(x, max(1, len(x) // 256)):
        squared = np.sum((chunk[:, None, :] - y[None, :, :]) ** 2, axis=-1)
        x_to_y.append(squared.min(axis=1))
        y_to_x = np.minimum(y_to_x, squared.min(axis=0))
    return np.concatenate(x_to_y).mean() + y_to_x.mean()


def brute_chamfer_integer(x, y):
    """CD from every pairwise squared distance |x|^2 + |y|^2 - 2 x.y, for integer coordinates.

    Voxel centres at 4 mm lie on integer millimetres, where the expansion is exact in float64.
    """
    assert np.array_equal(x, np.round(x)) and np.array_equal(y, np.round(y))
    squared = np.sum(x ** 2, axis=1)[:, None] + np.sum(y ** 2, axis=1)[None, :] - 2 * x @ y.T
    return squared.min(axis=1).mean() + squared.min(axis=0).mean()


def brute_emd(x, y):
    cost = np.linalg.norm(x[:, None, :] - y[None, :, :], axis=-1)
    rows = np.arange(len(x))
    return min(cost[rows, list(p)].mean() for p in itertools.permutations(range(len(y))))


def random_sets(n, n_points, resolution, seed, low=0, high=None):
    """PointSets of n shapes with n_points random voxels each (with repeats) in [low, high)."""
    rng = np.random.default_rng(seed)
    high = resolution if high is None else high
    indices = rng.integers(low, high, (n, n_points, 3)).astype(np.int16)
    return PointSets(indices, np.full(n, n_points), resolution)


@pytest.fixture(scope="module")
def skull_sets():
    volumes = make_dataset(6, 64, seed=5).volumes
    return (sample_surface_points(volumes[:2], 2048, seed=0),
            sample_surface_points(volumes[2:], 2048, seed=1))


def test_chamfer_by_hand_is_squared_and_sums_two_means():
    x = np.array([[0.0, 0.0, 0.0]])
    y = np.array([[1.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
    # x -> y: 1^2; y -> x: mean(1^2, 3^2) = 5.
    assert chamfer_distance(x, y) == pytest.approx(6.0)
    assert chamfer_distance(y, x) == pytest.approx(6.0)


def test_integer_brute_force_equals_the_plain_one():
    x = np.random.default_rng(0).integers(-128, 128, (100, 3)).astype(float)
    y = np.random.default_rng(1).integers(-128, 128, (80, 3)).astype(float)
    assert brute_chamfer_integer(x, y) == brute_chamfer(x, y)


def test_chamfer_distance_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(5):
        x, y = rng.normal(size=(300, 3)) * 20, rng.normal(size=(170, 3)) * 25 + 3
        assert chamfer_distance(x, y) == pytest.approx(brute_chamfer(x, y), rel=1e-12)


def test_emd_by_hand():
    x = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    y = np.array([[11.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert earth_movers_distance(x, y) == pytest.approx(1.0)
    # Euclidean, not squared: one point moved by (3, 4, 0) costs 5 over two points.
    z = np.array([[3.0, 4.0, 0.0], [10.0, 0.0, 0.0]])
    assert earth_movers_distance(x, z) == pytest.approx(2.5)


def test_emd_matches_all_permutations_on_six_points():
    rng = np.random.default_rng(1)
    for _ in range(4):
        x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 3)) + 0.5
        assert earth_movers_distance(x, y) == pytest.approx(brute_emd(x, y), rel=1e-12)


def test_emd_matches_pot():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(60, 3)) * 10, rng.normal(size=(60, 3)) * 12 + 4
    weights = np.full(60, 1 / 60)
    expected = ot.emd2(weights, weights, ot.dist(x, y, metric="euclidean"))
    assert earth_movers_distance(x, y) == pytest.approx(expected, rel=1e-9)


def test_emd_needs_equal_sizes_and_finite_points():
    with pytest.raises(BenchError, match="equal size"):
        earth_movers_distance(np.zeros((3, 3)), np.zeros((4, 3)))
    with pytest.raises(BenchError, match="NaN"):
        chamfer_distance(np.full((3, 3), np.nan), np.zeros((4, 3)))


def assert_matrices_match_brute_force(matrices, reference, generated, rtol=1e-9):
    ref, gen = reference.points_mm(), generated.points_mm()
    integer = reference.voxel_size_mm == 4.0
    brute = brute_chamfer_integer if integer else brute_chamfer
    for rows, cols, matrix in ((ref, gen, matrices.cd_ref_gen), (ref, ref, matrices.cd_ref_ref),
                               (gen, gen, matrices.cd_gen_gen)):
        expected = np.array([[brute(a, b) for b in cols] for a in rows])
        np.testing.assert_allclose(matrix, expected, rtol=rtol, atol=0)


def test_engine_matches_brute_force_on_random_sets():
    reference = random_sets(3, 200, 24, seed=0)
    generated = random_sets(5, 200, 24, seed=1, low=4, high=20)
    matrices = compute_distance_matrices(reference, generated, workers=1)
    assert_matrices_match_brute_force(matrices, reference, generated)


def test_engine_matches_brute_force_on_skulls(skull_sets):
    reference, generated = skull_sets
    matrices = compute_distance_matrices(reference, generated, workers=2)
    assert_matrices_match_brute_force(matrices, reference, generated)


def test_cross_matrix_rows_are_reference_columns_generated():
    # Two reference shapes near the origin corner, three generated ones spread out.
    reference = random_sets(2, 50, 32, seed=3, high=8)
    generated = random_sets(3, 50, 32, seed=4, low=10)
    matrices = compute_distance_matrices(reference, generated, workers=1)
    assert matrices.cd_ref_gen.shape == (2, 3)
    assert matrices.cd_ref_ref.shape == (2, 2) and matrices.cd_gen_gen.shape == (3, 3)
    for i, j in itertools.product(range(2), range(3)):
        expected = brute_chamfer(reference.points_mm(i), generated.points_mm(j))
        assert matrices.cd_ref_gen[i, j] == pytest.approx(expected, rel=1e-12)


def test_within_set_matrices_are_symmetric_with_zero_diagonal(skull_sets):
    matrices = compute_distance_matrices(*skull_sets, workers=1)
    for matrix in (matrices.cd_ref_ref, matrices.cd_gen_gen):
        np.testing.assert_array_equal(matrix, matrix.T)
        np.testing.assert_array_equal(np.diag(matrix), 0.0)


def test_result_does_not_depend_on_threads_blocks_or_radius(skull_sets, monkeypatch):
    baseline = compute_distance_matrices(*skull_sets, workers=1)
    variants = [compute_distance_matrices(*skull_sets, workers=2, block_bytes=1)]
    # A window of 2 voxels sends most voxels to the exact fallbacks (k-d tree, scipy).
    monkeypatch.setattr(distances, "TRUNCATION_RADIUS", 2)
    variants.append(compute_distance_matrices(*skull_sets, workers=2))
    for other in variants:
        for name in ("cd_ref_gen", "cd_ref_ref", "cd_gen_gen"):
            np.testing.assert_array_equal(getattr(other, name), getattr(baseline, name))


def test_far_shapes_take_the_exact_paths(monkeypatch):
    # Shapes in opposite corners of a 64^3 grid: squared distances up to 3 * 60^2 voxel^2,
    # beyond the window, and sums above 2^24 (the int64 path). A near shape with one far
    # outlier voxel leaves a few far voxels, for the k-d tree fallback.
    near = random_sets(2, 2048, 64, seed=5, high=16)
    far = random_sets(1, 2048, 64, seed=6, low=60)
    outlier = random_sets(1, 2048, 64, seed=7, high=16)
    outlier.indices[0, 0] = (63, 0, 63)
    generated = PointSets(np.concatenate([far.indices, outlier.indices]), np.full(2, 2048), 64)
    calls = {"tree": 0, "transform": 0}
    monkeypatch.setattr(distances, "cKDTree", counting(distances.cKDTree, calls, "tree"))
    monkeypatch.setattr(distances.ndimage, "distance_transform_edt",
                        counting(distances.ndimage.distance_transform_edt, calls, "transform"))
    matrices = compute_distance_matrices(near, generated, workers=1)
    assert calls["tree"] > 0 and calls["transform"] > 0
    assert_matrices_match_brute_force(matrices, near, generated)


def counting(function, calls, key):
    def wrapped(*args, **kwargs):
        calls[key] += 1
        return function(*args, **kwargs)
    return wrapped


def test_empty_generated_shape_is_infinitely_far():
    volumes = make_dataset(3, 32, seed=0).volumes
    volumes[1] = False
    generated = sample_surface_points(volumes, 64, allow_empty=True)
    reference = sample_surface_points(volumes[[0, 2]], 64, seed=1)
    matrices = compute_distance_matrices(reference, generated, emd=True, emd_points=16, workers=1)
    for cross, gen_gen in ((matrices.cd_ref_gen, matrices.cd_gen_gen),
                           (matrices.emd_ref_gen, matrices.emd_gen_gen)):
        assert np.isinf(cross[:, 1]).all() and np.isfinite(cross[:, [0, 2]]).all()
        assert np.isinf(gen_gen[1]).all() and np.isinf(gen_gen[:, 1]).all()
        assert gen_gen[0, 2] > 0 and np.isfinite(gen_gen[0, 2])


def test_empty_reference_shape_raises_with_its_index():
    volumes = make_dataset(3, 32, seed=0).volumes
    volumes[2] = False
    reference = sample_surface_points(volumes, 64, allow_empty=True)
    with pytest.raises(BenchError, match="reference shape 2 is empty"):
        compute_distance_matrices(reference, reference, workers=1)


def test_sets_from_different_grids_or_sizes_raise():
    with pytest.raises(BenchError, match="different grids"):
        compute_distance_matrices(random_sets(2, 10, 32, 0), random_sets(2, 10, 64, 1))
    with pytest.raises(BenchError, match="same n_points"):
        compute_distance_matrices(random_sets(2, 10, 32, 0), random_sets(2, 12, 32, 1))
    with pytest.raises(BenchError, match="workers"):
        compute_distance_matrices(random_sets(2, 10, 32, 0), random_sets(2, 10, 32, 1),
                                  workers=0)


def test_emd_matrices_match_pairwise_emd_on_the_first_points():
    reference = random_sets(4, 40, 32, seed=8)
    generated = random_sets(5, 40, 32, seed=9, low=5)
    matrices = compute_distance_matrices(reference, generated, emd=True, emd_points=24,
                                         workers=1)
    assert matrices.emd_points == 24 and matrices.has_emd
    ref, gen = reference.points_mm()[:, :24], generated.points_mm()[:, :24]
    for rows, cols, matrix in ((ref, gen, matrices.emd_ref_gen), (ref, ref, matrices.emd_ref_ref),
                               (gen, gen, matrices.emd_gen_gen)):
        expected = np.array([[earth_movers_distance(a, b) for b in cols] for a in rows])
        np.testing.assert_allclose(matrix, expected, rtol=1e-12, atol=1e-12)


def test_emd_in_worker_processes_equals_one_process():
    reference = random_sets(8, 20, 32, seed=10)
    generated = random_sets(8, 20, 32, seed=11)
    one = compute_distance_matrices(reference, generated, emd=True, emd_points=20, workers=1)
    two = compute_distance_matrices(reference, generated, emd=True, emd_points=20, workers=2)
    np.testing.assert_array_equal(one.emd_ref_gen, two.emd_ref_gen)
    np.testing.assert_array_equal(one.emd_gen_gen, two.emd_gen_gen)


def test_emd_limits_raise_with_the_fix():
    reference, generated = random_sets(10, 20, 32, 0), random_sets(10, 20, 32, 1)
    with pytest.raises(BenchError, match="190 distinct pairs exceeds emd_max_pairs=100"):
        compute_distance_matrices(reference, generated, emd=True, emd_points=8,
                                  emd_max_pairs=100)
    with pytest.raises(BenchError, match="emd_points=30 exceeds"):
        compute_distance_matrices(reference, generated, emd=True, emd_points=30)


def test_distance_matrices_check_shapes():
    with pytest.raises(BenchError, match="reference x reference"):
        DistanceMatrices(np.zeros((2, 3)), np.zeros((3, 3)), np.zeros((3, 3)))
    with pytest.raises(BenchError, match="all three EMD"):
        DistanceMatrices(np.zeros((2, 3)), np.zeros((2, 2)), np.zeros((3, 3)),
                         emd_ref_gen=np.zeros((2, 3)))
