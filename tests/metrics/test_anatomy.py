"""Anatomy measures on shapes with known answers, W1 against scipy, and failure rates."""

import numpy as np
import pytest
import torch
from monai.metrics import compute_average_surface_distance
from scipy import stats

from bench.data.synthskull import CLASS_NAMES, make_dataset
from bench.errors import BenchError
from metrics.anatomy import (MEASURES, AnatomyMeasures, FailureCriteria, anatomy_metrics,
                             component_stats, cranial_extents, failure_report, measure_volume,
                             measure_volumes, symmetry_error_mm, wasserstein_metrics)

FOV = 256.0
pytestmark = pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")


def ellipsoid(resolution, radii, centre=(0.0, 0.0, 0.0)):
    """Voxels of the common grid whose centres lie in the ellipsoid (mm), bool (R, R, R)."""
    size = FOV / resolution
    axis = (np.arange(resolution) + 0.5) * size - FOV / 2
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    return ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + \
        ((z - centre[2]) / radii[2]) ** 2 <= 1.0


def shell(resolution, radii, thickness, centre=(0.0, 0.0, 0.0)):
    """An ellipsoidal shell: the ellipsoid less the one with semi-axes shorter by ``thickness``."""
    inner = tuple(r - thickness for r in radii)
    return ellipsoid(resolution, radii, centre) & ~ellipsoid(resolution, inner, centre)


def surface_area_bound(radii):
    """An upper bound on an ellipsoid's surface area: that of the sphere of the largest radius."""
    return 4 * np.pi * max(radii) ** 2


@pytest.mark.parametrize("resolution", [64, 128])
@pytest.mark.parametrize("radii", [(55.0, 75.0, 60.0), (70.0, 62.0, 48.0)])
def test_ellipsoid_volume_and_extents(resolution, radii):
    a, b, c = radii
    size = FOV / resolution
    m = measure_volume(ellipsoid(resolution, radii), size)
    exact_ml = 4 / 3 * np.pi * a * b * c / 1000
    # Centre sampling misplaces at most a half-voxel layer along the surface.
    assert abs(m["bone_volume_ml"] - exact_ml) <= surface_area_bound(radii) * size / 2 / 1000
    assert abs(m["bone_volume_ml"] - exact_ml) / exact_ml < 0.01  # and in practice far less
    assert abs(m["cranial_width_mm"] - 2 * a) <= size
    assert abs(m["cranial_length_mm"] - 2 * b) <= size
    assert abs(m["skull_height_mm"] - 2 * c) <= size
    low, high = 100 * (2 * a - size) / (2 * b + size), 100 * (2 * a + size) / (2 * b - size)
    assert low <= m["cephalic_index"] <= high
    assert m["cephalic_index"] == pytest.approx(100 * m["cranial_width_mm"]
                                                / m["cranial_length_mm"])
    assert m["symmetry_error_mm"] == 0.0
    assert m["n_components"] == 1 and m["largest_component_fraction"] == 1.0


def test_shell_volume_and_extents():
    radii, thickness, resolution = (70.0, 90.0, 65.0), 8.0, 128
    size = FOV / resolution
    m = measure_volume(shell(resolution, radii, thickness), size)
    inner = [r - thickness for r in radii]
    exact_ml = 4 / 3 * np.pi * (np.prod(radii) - np.prod(inner)) / 1000
    bound = (surface_area_bound(radii) + surface_area_bound(inner)) * size / 2 / 1000
    assert abs(m["bone_volume_ml"] - exact_ml) <= bound
    assert abs(m["bone_volume_ml"] - exact_ml) / exact_ml < 0.03
    assert abs(m["cranial_width_mm"] - 140) <= size
    assert abs(m["cranial_length_mm"] - 180) <= size
    assert abs(m["skull_height_mm"] - 130) <= size
    assert m["n_components"] == 1 and m["symmetry_error_mm"] == 0.0


def test_vault_base_excludes_lower_parts():
    # A wide plate below the vault base (a zygomatic-arch stand-in) changes the
    # height but neither the width nor the length; raised above it, it changes both.
    resolution, size = 64, 4.0
    vault = ellipsoid(resolution, (60.0, 80.0, 50.0), (0.0, 0.0, 30.0))
    plate = np.zeros_like(vault)  # 200 x 80 x 8 mm, from z = -44 to -36 mm
    plate[7:57, 22:42, 21:23] = True
    length, width, height = cranial_extents(vault | plate, size)
    assert abs(width - 120) <= size and abs(length - 160) <= size
    assert abs(height - (80 + 45)) <= size
    _, width_low, _ = cranial_extents(vault | plate, size, vault_base_mm=-60.0)
    assert abs(width_low - 200) <= size


def test_symmetry_error_of_shifted_sphere_matches_shift_and_monai():
    resolution, size = 128, 2.0
    for shift in (4.0, 10.0):
        sphere = ellipsoid(resolution, (50.0, 50.0, 50.0), (shift, 0.0, 0.0))
        error = symmetry_error_mm(sphere, size)
        # Mean surface distance between a sphere and its copy moved 2d is about d.
        assert error == pytest.approx(shift, rel=0.1)
        monai = compute_average_surface_distance(
            torch.from_numpy(sphere)[None, None], torch.from_numpy(sphere[::-1].copy())[None, None],
            include_background=True, spacing=size)
        assert error == pytest.approx(float(monai), rel=1e-5)


def test_symmetry_error_on_asymmetric_shell_matches_monai():
    volume = shell(64, (60.0, 80.0, 55.0), 8.0, (6.0, 0.0, 0.0))
    volume |= ellipsoid(64, (12.0, 12.0, 12.0), (40.0, 50.0, 0.0))
    monai = compute_average_surface_distance(
        torch.from_numpy(volume)[None, None], torch.from_numpy(volume[::-1].copy())[None, None],
        include_background=True, symmetric=True, spacing=4.0)
    assert symmetry_error_mm(volume, 4.0) == pytest.approx(float(monai), rel=1e-5)


def test_components_of_two_spheres():
    big = ellipsoid(64, (30.0, 30.0, 30.0), (-50.0, 0.0, 0.0))
    small = ellipsoid(64, (15.0, 15.0, 15.0), (50.0, 0.0, 0.0))
    count, fraction = component_stats(big | small)
    assert count == 2
    assert fraction == pytest.approx(big.sum() / (big.sum() + small.sum()))
    # Touching diagonally (26-connected) counts as one.
    touching = np.zeros((8, 8, 8), dtype=bool)
    touching[2, 2, 2] = touching[3, 3, 3] = True
    assert component_stats(touching) == (1, 1.0)


def test_empty_volume_measures():
    m = measure_volume(np.zeros((32, 32, 32), dtype=bool), 8.0)
    assert m["bone_volume_ml"] == 0.0 and m["n_components"] == 0.0
    for key in ("cranial_length_mm", "cranial_width_mm", "skull_height_mm", "cephalic_index",
                "symmetry_error_mm", "largest_component_fraction"):
        assert np.isnan(m[key]), key


def test_measure_volumes_stacks_per_sample():
    volumes = np.stack([ellipsoid(32, (60.0, 80.0, 50.0)), ellipsoid(32, (40.0, 40.0, 40.0))])
    measures = measure_volumes(volumes, 8.0)
    assert len(measures) == 2
    assert measures.stack().shape == (2, len(MEASURES))
    assert measures.cranial_width_mm[1] == measure_volume(volumes[1], 8.0)["cranial_width_mm"]


def _measures(**values):
    n = len(next(iter(values.values())))
    base = {m.attribute: np.ones(n) for m in MEASURES}
    base.update({k: np.asarray(v, dtype=np.float64) for k, v in values.items()})
    return AnatomyMeasures(**base)


def test_wasserstein_matches_scipy_and_sorted_differences():
    rng = np.random.default_rng(0)
    ref_index = rng.normal(75, 5, 50)
    gen_index = rng.normal(80, 3, 50)
    ref = _measures(cephalic_index=ref_index, cranial_length_mm=rng.normal(180, 8, 50))
    gen = _measures(cephalic_index=gen_index, cranial_length_mm=rng.normal(180, 8, 50))
    rows = {r.name: r for r in wasserstein_metrics(ref, gen)}
    expected = stats.wasserstein_distance(ref_index, gen_index)
    assert rows["W1-cephalic-index"].value == pytest.approx(expected)
    # Equal sample sizes: W1 is the mean gap between sorted samples.
    assert expected == pytest.approx(np.abs(np.sort(ref_index) - np.sort(gen_index)).mean())
    assert rows["W1-cephalic-index"].unit == "" and rows["W1-cranial-length"].unit == "mm"
    assert rows["W1-bone-volume"].value == 0.0
    assert all(r.group == "anatomy" and not r.higher_is_better for r in rows.values())


def test_wasserstein_ignores_nan_and_gives_nan_without_values():
    ref = _measures(symmetry_error_mm=[0.1, 0.2, 0.3])
    gen = _measures(symmetry_error_mm=[0.5, np.nan, 0.7])
    rows = {r.name: r.value for r in wasserstein_metrics(ref, gen)}
    assert rows["W1-symmetry-error"] == pytest.approx(
        stats.wasserstein_distance([0.1, 0.2, 0.3], [0.5, 0.7]))
    gen_nan = _measures(symmetry_error_mm=[np.nan, np.nan, np.nan])
    assert np.isnan({r.name: r.value for r in wasserstein_metrics(ref, gen_nan)}[
        "W1-symmetry-error"])


def _skull_like(resolution, radii, thickness=8.0):
    """A shell (cranium) and a separate blob below it (mandible)."""
    cranium = shell(resolution, radii, thickness, (0.0, 0.0, 10.0))
    jaw = ellipsoid(resolution, (35.0, 25.0, 12.0), (0.0, 30.0, -radii[2] - 15.0))
    return cranium | jaw


def test_failure_report_on_empty_fragmented_and_out_of_range():
    resolution, size = 64, 4.0
    reference = measure_volumes(np.stack([
        _skull_like(resolution, (60.0 + d, 80.0 + d, 55.0 + d)) for d in (-6, -3, 0, 3, 6)]),
        size)
    assert set(reference.n_components) == {2.0}
    good = _skull_like(resolution, (61.0, 81.0, 56.0))
    fragmented = good.copy()
    fragmented[:, 28, :] = fragmented[:, 36, :] = False  # slice the shell into pieces
    huge = _skull_like(resolution, (90.0, 110.0, 80.0))
    generated = measure_volumes(
        np.stack([good, np.zeros_like(good), fragmented, huge]), size)
    report = failure_report(reference, generated)
    assert report.reasons["empty"].tolist() == [False, True, False, False]
    assert report.reasons["fragmented"].tolist() == [False, False, True, False]
    assert report.reasons["out-of-range"].tolist() == [False, False, False, True]
    assert report.counts == {"empty": 1, "fragmented": 1, "out-of-range": 1, "total": 3}
    rows = {r.name: r for r in report.metrics()}
    assert rows["failure-rate"].value == pytest.approx(75.0)
    assert rows["failure-rate"].unit == "%" and not rows["failure-rate"].higher_is_better
    assert rows["failure-empty"].value == pytest.approx(25.0)
    assert report.thresholds["max_components"] == 4.0
    # A range margin of five reference ranges lets the huge one pass.
    assert failure_report(reference, generated,
                          FailureCriteria(range_margin=5.0)).reasons["out-of-range"].sum() == 0


def test_failure_report_rejects_empty_reference():
    empty = measure_volumes(np.zeros((2, 16, 16, 16), dtype=bool), 16.0)
    with pytest.raises(BenchError, match="reference"):
        failure_report(empty, empty)


@pytest.fixture(scope="module")
def synthskull():
    return make_dataset(12, 64, seed=16)  # seed 16: every class among the first 12


def test_synthskull_measures_are_plausible(synthskull):
    measures = measure_volumes(synthskull.volumes, synthskull.voxel_size_mm)
    assert np.all((measures.cranial_length_mm > 150) & (measures.cranial_length_mm < 250))
    assert np.all((measures.cranial_width_mm > 110) & (measures.cranial_width_mm < 170))
    assert np.all((measures.cephalic_index > 50) & (measures.cephalic_index < 100))
    assert np.all((measures.skull_height_mm > 180) & (measures.skull_height_mm < 250))
    assert np.all(measures.n_components == 2)  # cranium and mandible
    assert np.all(measures.symmetry_error_mm < 3.0)
    # Every skull passes the failure criteria derived from its own set.
    assert not failure_report(measures, measures).failed.any()
    rows = {r.name: r.value for r in anatomy_metrics(measures, measures)}
    assert rows["W1-cephalic-index"] == 0.0 and rows["failure-rate"] == 0.0
    # The generator's classes deform the vault: scaphocephaly is long and narrow,
    # brachycephaly short and wide.
    index = {name: measures.cephalic_index[synthskull.labels == CLASS_NAMES.index(name)]
             for name in CLASS_NAMES}
    assert index["scaphocephaly"].max() < index["brachycephaly"].min()
    # Plagiocephaly flattens one side: the least symmetric class.
    symmetry = measures.symmetry_error_mm
    plagio = synthskull.labels == CLASS_NAMES.index("plagiocephaly")
    assert symmetry[plagio].min() > np.median(symmetry[~plagio])
