"""Benchmarks of the distance engine (run with `make bench`; the large ones are skipped otherwise).

Target from issue 4: for 500 generated and 500 reference skulls at 64^3 with
P = 2048, the three Chamfer matrices together in at most 30 s on 2 CPU cores
with at most 4 GiB of memory, at least 100 times faster per pair than a per-pair
scipy cKDTree baseline measured in the same run, with equal values (1e-6
relative). The figures land in the benchmark's ``extra_info``.
"""

import json
import statistics
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from bench.data.synthskull import make_dataset
from metrics.distances import _Lattice, compute_distance_matrices, earth_movers_distance
from metrics.pointsets import sample_surface_points

N_POINTS = 2048
WORKERS = 2


def skull_point_sets(n, seed):
    volumes = make_dataset(n, 64, seed=seed, workers=WORKERS).volumes
    return sample_surface_points(volumes, N_POINTS, seed=seed)


@pytest.fixture(scope="module")
def skulls_500():
    return skull_point_sets(500, seed=0), skull_point_sets(500, seed=1)


@pytest.fixture(scope="module")
def skulls_12():
    return skull_point_sets(6, seed=0), skull_point_sets(6, seed=1)


def sample_pairs(n_ref, n_gen, n, seed=0):
    """n cross pairs and n/2 pairs within each set, as ((set, i), (set, j)), i != j within."""
    rng = np.random.default_rng(seed)
    pairs = [(("ref", i), ("gen", j)) for i, j in zip(rng.integers(0, n_ref, n),
                                                      rng.integers(0, n_gen, n))]
    for name, size in (("ref", n_ref), ("gen", n_gen)):
        for _ in range(n // 2):
            i, j = rng.choice(size, 2, replace=False)
            pairs.append(((name, int(i)), (name, int(j))))
    return pairs


def kdtree_baseline(reference, generated, pairs):
    """Per-pair Chamfer distances with one cKDTree per shape, built once; timings in s."""
    points = {"ref": reference.points_mm(), "gen": generated.points_mm()}
    shapes = sorted({shape for pair in pairs for shape in pair})
    start = time.perf_counter()
    trees = {shape: cKDTree(points[shape[0]][shape[1]]) for shape in shapes}
    build = (time.perf_counter() - start) / len(shapes)
    start = time.perf_counter()
    values = []
    for a, b in pairs:
        to_b, _ = trees[b].query(points[a[0]][a[1]])
        to_a, _ = trees[a].query(points[b[0]][b[1]])
        values.append(np.mean(to_b ** 2) + np.mean(to_a ** 2))
    per_pair = (time.perf_counter() - start) / len(pairs)
    return np.array(values), per_pair, build


def engine_values(matrices, pairs):
    table = {("ref", "gen"): matrices.cd_ref_gen, ("ref", "ref"): matrices.cd_ref_ref,
             ("gen", "gen"): matrices.cd_gen_gen}
    return np.array([table[a[0], b[0]][a[1], b[1]] for a, b in pairs])


def test_chamfer_engine_on_12_skulls_equals_kdtree(benchmark, skulls_12):
    reference, generated = skulls_12
    matrices = benchmark(lambda: compute_distance_matrices(reference, generated,
                                                           workers=WORKERS))
    pairs = sample_pairs(len(reference), len(generated), 20)
    expected, _, _ = kdtree_baseline(reference, generated, pairs)
    np.testing.assert_allclose(engine_values(matrices, pairs), expected, rtol=1e-6)


def test_three_chamfer_matrices_500_by_500(benchmark, request, tmp_path):
    if benchmark.disabled:
        pytest.skip("a one-minute benchmark on 1,000 skulls: run with --benchmark-enable")
    reference, generated = request.getfixturevalue("skulls_500")
    n_pairs = 500 * 500 + 2 * (500 * 499 // 2)
    matrices = benchmark.pedantic(
        lambda: compute_distance_matrices(reference, generated, workers=WORKERS),
        rounds=3, iterations=1)
    total = benchmark.stats.stats.min
    engine_per_pair = total / n_pairs

    pairs = sample_pairs(500, 500, 200)
    runs = [kdtree_baseline(reference, generated, pairs) for _ in range(2)]
    expected = runs[0][0]
    baseline_per_pair = min(run[1] for run in runs)
    relative = np.abs(engine_values(matrices, pairs) - expected) / expected

    info = benchmark.extra_info
    info.update(engine_breakdown(reference, generated))
    info.update(peak_memory(reference, generated, tmp_path))
    info.update({
        "pairs": n_pairs,
        "total_s_min": total,
        "total_s_median": benchmark.stats.stats.median,
        "engine_us_per_pair": 1e6 * engine_per_pair,
        "kdtree_ms_per_pair": 1e3 * baseline_per_pair,
        "kdtree_build_ms_per_shape": 1e3 * min(run[2] for run in runs),
        "kdtree_pairs_sampled": len(pairs),
        "speedup_per_pair": baseline_per_pair / engine_per_pair,
        "max_relative_difference": float(relative.max()),
    })
    print(json.dumps(info, indent=1))
    assert info["max_relative_difference"] <= 1e-6
    assert total <= 30.0
    assert info["speedup_per_pair"] >= 100.0
    assert info["peak_rss_mib"] <= 4096


def engine_breakdown(reference, generated):
    """Single-thread time per distance map (windowed transform and fallbacks) and gathers."""
    lattice = _Lattice([reference.indices, generated.indices])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        for first in range(0, 64, 8):
            lattice.squared_distances(range(first, first + 8))
        transform = (time.perf_counter() - start) / 64
        start = time.perf_counter()
        lattice.block_sums(0, 64)
        block = time.perf_counter() - start
    finally:
        torch.set_num_threads(before)
    gathers = lattice.n_shapes * N_POINTS * 64
    return {"box_voxels": int(np.prod(lattice.box)), "union_voxels": lattice.n_union,
            "transform_ms_per_shape_one_thread": 1e3 * transform,
            "gathers_per_s_one_thread": gathers / max(block - 64 * transform, 1e-9)}


PEAK_SCRIPT = """
import sys, time
import numpy as np
from metrics.distances import compute_distance_matrices
from metrics.pointsets import PointSets
def high_water_kib():
    status = open("/proc/self/status").read()
    return int(status.split("VmHWM:")[1].split()[0])
data = np.load(sys.argv[1])
sets = [PointSets(data[k], data[k + "_n"], 64) for k in ("ref", "gen")]
before = high_water_kib()
open("/proc/self/clear_refs", "w").write("5")  # restart the high-water mark here
start = time.perf_counter()
compute_distance_matrices(*sets, workers=2)
seconds = time.perf_counter() - start
print(before, high_water_kib(), seconds)
"""


def peak_memory(reference, generated, tmp_path):
    """Peak resident memory of a fresh process that loads the point sets, then runs the engine.

    Linux's VmHWM, reset before the engine starts: the peak while it runs, including the
    ~0.3 GiB that the interpreter, numpy, scipy and torch already hold. (ru_maxrss would
    carry over the forking pytest process's own peak.)
    """
    path = tmp_path / "points.npz"
    np.savez(path, ref=reference.indices, ref_n=reference.n_surface, gen=generated.indices,
             gen_n=generated.n_surface)
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(path)], check=True,
                         capture_output=True, text=True).stdout.split()
    before, peak, seconds = int(out[0]), int(out[1]), float(out[2])
    return {"peak_rss_mib": peak / 1024, "rss_after_imports_mib": before / 1024,
            "subprocess_total_s": seconds}


@pytest.mark.parametrize("n_points", [512, 1024])
def test_emd_pairs_per_second(benchmark, skulls_12, n_points):
    reference, generated = skulls_12
    ref = reference.first(n_points).points_mm()
    gen = generated.first(n_points).points_mm()
    pairs = [(0, 0)] if benchmark.disabled else [(i, j) for i in range(4) for j in range(4)]
    values = benchmark.pedantic(
        lambda: [earth_movers_distance(ref[i], gen[j]) for i, j in pairs],
        rounds=1 if benchmark.disabled else 3, iterations=1)
    if benchmark.stats:
        benchmark.extra_info["pairs_per_s_one_core"] = len(pairs) / benchmark.stats.stats.min
        benchmark.extra_info["ms_per_pair"] = 1e3 * benchmark.stats.stats.min / len(pairs)
    assert all(0 < v < 100 for v in values)


def test_point_sampling(benchmark):
    if benchmark.disabled:
        pytest.skip("generates 100 skulls: run with --benchmark-enable")
    volumes = make_dataset(100, 64, seed=2, workers=WORKERS).volumes
    sets = benchmark.pedantic(lambda: sample_surface_points(volumes, N_POINTS), rounds=3,
                              iterations=1)
    benchmark.extra_info["ms_per_shape"] = 1e3 * benchmark.stats.stats.min / len(volumes)
    benchmark.extra_info["median_surface_voxels"] = statistics.median(sets.n_surface.tolist())
    assert len(sets) == 100
