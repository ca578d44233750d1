"""Anatomy measures on shapes with known answers, and on synthskull."""

import numpy as np
import pytest
import torch
from monai.metrics import compute_average_surface_distance

from bench.data.synthskull import CLASS_NAMES, make_dataset
from metrics.anatomy import failure_report
from metrics.measures import (MEASURES, component_stats, cranial_extents, measure_volume,
                              measure_volumes, symmetry_error_mm)
from shapes import FOV, ellipsoid, shell

pytestmark = pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")


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
    assert failure_report(measures, measures).rates()["failure-rate"] == 0.0
    # The generator's classes deform the vault: scaphocephaly is long and narrow,
    # brachycephaly short and wide.
    index = {name: measures.cephalic_index[synthskull.labels == CLASS_NAMES.index(name)]
             for name in CLASS_NAMES}
    assert index["scaphocephaly"].max() < index["brachycephaly"].min()
    # Plagiocephaly flattens one side: the least symmetric class.
    symmetry = measures.symmetry_error_mm
    plagio = synthskull.labels == CLASS_NAMES.index("plagiocephaly")
    assert symmetry[plagio].min() > np.median(symmetry[~plagio])
