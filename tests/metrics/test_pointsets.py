"""Surface point sets: the surface definition, millimetre frame, sampler and empty shapes."""

import numpy as np
import pytest
from scipy import ndimage

from bench.data.grid import axis_centers_mm
from bench.data.synthskull import make_dataset
from bench.core.errors import BenchError
from metrics.pointsets import PointSets, sample_surface_points, surface_mask


@pytest.fixture(scope="module")
def skulls():
    return make_dataset(4, 64, seed=3).volumes


def ball(resolution, radius_voxels, centre=None):
    centre = np.full(3, (resolution - 1) / 2) if centre is None else np.asarray(centre)
    grid = np.indices((resolution,) * 3).transpose(1, 2, 3, 0)
    return np.sum((grid - centre) ** 2, axis=-1) <= radius_voxels ** 2


def test_surface_of_a_cube_is_its_shell():
    volume = np.zeros((8, 8, 8), dtype=bool)
    volume[2:6, 2:6, 2:6] = True
    surface = surface_mask(volume)
    assert surface.sum() == 4 ** 3 - 2 ** 3
    assert not surface[3:5, 3:5, 3:5].any()


def test_surface_matches_erosion_with_six_neighbours(skulls):
    six = ndimage.generate_binary_structure(3, 1)
    for volume in skulls[:2]:
        expected = volume & ~ndimage.binary_erosion(volume, six, border_value=0)
        np.testing.assert_array_equal(surface_mask(volume), expected)


def test_voxels_on_the_grid_edge_are_surface():
    volume = np.ones((6, 6, 6), dtype=bool)
    surface = surface_mask(volume)
    assert surface.sum() == 6 ** 3 - 4 ** 3


def test_points_are_voxel_centres_in_millimetres():
    volume = np.zeros((1, 64, 64, 64), dtype=bool)
    volume[0, 0, 10, 63] = True
    sets = sample_surface_points(volume, n_points=1, seed=0)
    centres = axis_centers_mm(64)
    np.testing.assert_allclose(sets.points_mm(0)[0], [centres[0], centres[10], centres[63]])
    np.testing.assert_allclose(sets.points_mm(0)[0], [-126.0, -86.0, 126.0])
    assert sets.voxel_size_mm == 4.0


def test_sample_is_distinct_surface_voxels_and_deterministic(skulls):
    sets = sample_surface_points(skulls, n_points=512, seed=7)
    assert sets.indices.shape == (4, 512, 3)
    for i, volume in enumerate(skulls):
        surface = surface_mask(volume)
        assert sets.n_surface[i] == surface.sum() > 512
        assert surface[tuple(sets.indices[i].T)].all()
        assert len(np.unique(sets.indices[i], axis=0)) == 512
    again = sample_surface_points(skulls, n_points=512, seed=7)
    np.testing.assert_array_equal(sets.indices, again.indices)
    other = sample_surface_points(skulls, n_points=512, seed=8)
    assert not np.array_equal(sets.indices, other.indices)


def test_shape_i_depends_only_on_seed_and_i(skulls):
    full = sample_surface_points(skulls, n_points=256, seed=1)
    fewer = sample_surface_points(skulls[:2], n_points=256, seed=1)
    np.testing.assert_array_equal(full.indices[:2], fewer.indices)
    # A different shape at position 0 does not change position 1.
    swapped = sample_surface_points(skulls[[3, 1]], n_points=256, seed=1)
    np.testing.assert_array_equal(swapped.indices[1], full.indices[1])


def test_first_points_are_a_subsample_without_replacement(skulls):
    sets = sample_surface_points(skulls[:1], n_points=1024, seed=0)
    first = sets.first(100)
    assert first.n_points == 100
    np.testing.assert_array_equal(first.indices[0], sets.indices[0, :100])
    with pytest.raises(BenchError, match="first 2000"):
        sets.first(2000)


def test_few_surface_voxels_are_all_used_then_repeated():
    volume = np.zeros((1, 16, 16, 16), dtype=bool)
    volume[0, 4:6, 4:6, 4:6] = True  # 8 voxels, all on the surface
    sets = sample_surface_points(volume, n_points=20, seed=0)
    assert sets.n_surface[0] == 8
    assert len(np.unique(sets.indices[0, :8], axis=0)) == 8
    assert np.all((sets.indices[0] >= 4) & (sets.indices[0] < 6))


def test_empty_volume_raises_with_its_index(skulls):
    volumes = skulls[:3].copy()
    volumes[1] = False
    with pytest.raises(BenchError, match="volume 1 has no bone"):
        sample_surface_points(volumes, n_points=64)


def test_empty_volume_can_be_kept_as_a_marker(skulls):
    volumes = skulls[:3].copy()
    volumes[2] = False
    sets = sample_surface_points(volumes, n_points=64, allow_empty=True)
    np.testing.assert_array_equal(sets.empty, [False, False, True])
    assert np.isnan(sets.points_mm(2)).all()
    assert np.isfinite(sets.points_mm(0)).all()


def test_no_rescaling_size_is_kept():
    small, large = ball(32, 5), ball(32, 10)
    sets = sample_surface_points(np.stack([small, large]), n_points=200, seed=0)
    radius = np.linalg.norm(sets.points_mm(), axis=-1).mean(axis=1)
    # 8 mm voxels: radii of about 40 and 80 mm, twice as large, not both normalised to 1.
    assert 35 < radius[0] < 45 and 75 < radius[1] < 85


@pytest.mark.parametrize("kwargs, message", [
    ({"volumes": np.zeros((4, 4, 4))}, "shape \\(N, R, R, R\\)"),
    ({"volumes": np.ones((1, 4, 4, 5))}, "shape \\(N, R, R, R\\)"),
    ({"volumes": np.ones((1, 4, 4, 4)), "n_points": 0}, "n_points"),
    ({"volumes": np.ones((1, 4, 4, 4)), "seed": -1}, "seed"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(BenchError, match=message):
        sample_surface_points(**kwargs)


def test_point_sets_check_their_shapes():
    with pytest.raises(BenchError, match="indices"):
        PointSets(np.zeros((2, 5), dtype=np.int16), np.ones(2), 16)
    with pytest.raises(BenchError, match="n_surface"):
        PointSets(np.zeros((2, 5, 3), dtype=np.int16), np.ones(3), 16)
