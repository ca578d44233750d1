"""The SkullBreak-style defect generator: vault only, volume range, determinism, placement."""

import numpy as np
import pytest

from bench.data.grid import axis_centers_mm
from bench.core.errors import BenchError
from downstream.defects import (DEFECT_KINDS, DefectError, DefectParams, cut_defect,
                                vault_floor_mm)


def implant_centroid(defect, resolution):
    axis = axis_centers_mm(resolution)
    return axis[np.argwhere(defect.implant)].mean(0)


@pytest.fixture(scope="module")
def defects(skulls64):
    """Each type cut from 6 skulls: kind -> list of (skull index, defect)."""
    return {kind: [(i, cut_defect(skulls64.volumes[i], skulls64.voxel_size_mm, kind,
                                  np.random.default_rng([7, i])))
                   for i in range(6)] for kind in DEFECT_KINDS}


def test_defects_remove_only_vault_bone_above_the_floor(skulls64, defects):
    axis = axis_centers_mm(64)
    params = DefectParams()
    for kind, cases in defects.items():
        for i, defect in cases:
            volume = skulls64.volumes[i]
            floor = vault_floor_mm(volume, skulls64.voxel_size_mm, params)
            assert np.array_equal(defect.implant, volume & defect.region)
            assert np.array_equal(defect.defective | defect.implant, volume)
            assert not (defect.defective & defect.region).any()
            assert defect.implant.any()
            assert axis[np.argwhere(defect.region)[:, 2]].min() > floor
            # the floor is well above the orbits and the Frankfort plane (porion height)
            assert floor > skulls64.landmarks["nasion"][i, 2]
            assert floor > skulls64.landmarks["porion_left"][i, 2] + 15.0


def test_defect_volume_is_in_the_documented_range(defects):
    params = DefectParams()
    for cases in defects.values():
        for _, defect in cases:
            assert params.min_volume_ml <= defect.volume_ml <= params.max_volume_ml
            assert defect.volume_ml == pytest.approx(defect.implant.sum() * 4.0 ** 3 / 1000)


def test_defects_are_deterministic_per_seed(skulls64):
    volume, voxel = skulls64.volumes[0], skulls64.voxel_size_mm
    a = cut_defect(volume, voxel, "random_1", np.random.default_rng([1, 2]))
    b = cut_defect(volume, voxel, "random_1", np.random.default_rng([1, 2]))
    c = cut_defect(volume, voxel, "random_1", np.random.default_rng([1, 3]))
    assert np.array_equal(a.region, b.region) and np.array_equal(a.implant, b.implant)
    assert not np.array_equal(a.region, c.region)


def test_types_are_located_where_their_names_say(defects):
    centroids = {kind: np.array([implant_centroid(d, 64) for _, d in cases])
                 for kind, cases in defects.items()}
    bilateral, fronto, parieto = (centroids[k] for k in
                                  ("bilateral", "frontoorbital", "parietotemporal"))
    # bilateral: on the midline, high; parietotemporal: lateral; frontoorbital: front, low
    assert np.abs(bilateral[:, 0]).max() < 15.0
    assert np.abs(parieto[:, 0]).min() > 35.0
    assert np.abs(fronto[:, 0]).min() > 8.0
    assert fronto[:, 1].min() > 45.0
    assert fronto[:, 1].mean() > bilateral[:, 1].mean() > parieto[:, 1].mean()
    assert fronto[:, 2].mean() < bilateral[:, 2].mean() - 20.0
    # one-sided types draw their side
    assert (parieto[:, 0] > 0).any() and (parieto[:, 0] < 0).any()


def test_secondary_spheres_make_the_outline_irregular(skulls64):
    volume, voxel = skulls64.volumes[1], skulls64.voxel_size_mm
    plain = DefectParams(secondary_spheres=(0, 0), deform_mm=0.0, opening_mm=0.0)
    a = cut_defect(volume, voxel, "bilateral", np.random.default_rng(0), plain)
    b = cut_defect(volume, voxel, "bilateral", np.random.default_rng(0))
    assert not np.array_equal(a.region, b.region)
    # with neither secondary spheres nor warping the region is a ball cut at the floor
    axis = axis_centers_mm(64)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)
    inside = np.linalg.norm(grid - a.centre_mm, axis=-1) <= a.radius_mm
    floor = vault_floor_mm(volume, voxel, plain)
    assert np.array_equal(a.region, inside & (grid[..., 2] > floor))


def test_input_errors():
    volume = np.zeros((32, 32, 32), dtype=bool)
    with pytest.raises(BenchError, match="unknown kind"):
        cut_defect(volume, 8.0, "occipital", np.random.default_rng(0))
    with pytest.raises(DefectError, match="no bone"):
        cut_defect(volume, 8.0, "random_1", np.random.default_rng(0))
    tiny = volume.copy()
    tiny[16, 16, 16] = True  # 0.5 mL of bone cannot give a 5 mL defect
    with pytest.raises(DefectError, match="tries"):
        cut_defect(tiny, 8.0, "random_1", np.random.default_rng(0))
    with pytest.raises(BenchError, match="min_volume_ml"):
        DefectParams(min_volume_ml=10, max_volume_ml=5).check()
    with pytest.raises(BenchError, match="secondary_scale"):
        DefectParams(secondary_scale=(0.0, 0.5)).check()
