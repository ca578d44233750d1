"""Volume-level corruptions: deterministic, severity 0 is the identity, severity 1 as
documented."""

import numpy as np
import pytest

from bench.core.errors import BenchError
from bench.data.corruptions import ISLANDS, check_severity, fragment, memorise, rescale
from bench.data.synthskull import make_dataset
from metrics.measures import measure_volumes


@pytest.fixture(scope="module")
def skulls():
    return make_dataset(12, 64, seed=7)


def test_severity_zero_is_the_identity(skulls):
    volumes = skulls.volumes[:4]
    for corrupted in (fragment(volumes, 0.0, 0, skulls.voxel_size_mm), rescale(volumes, 0.0),
                      memorise(volumes, skulls.volumes[4:], 0.0, 0)):
        np.testing.assert_array_equal(corrupted, volumes)


def test_corruptions_are_deterministic_and_volume_i_depends_on_i_only(skulls):
    volumes = skulls.volumes[:4]
    a = fragment(volumes, 0.5, 3, skulls.voxel_size_mm)
    np.testing.assert_array_equal(a, fragment(volumes, 0.5, 3, skulls.voxel_size_mm))
    np.testing.assert_array_equal(a[:2], fragment(volumes[:2], 0.5, 3, skulls.voxel_size_mm))
    assert not np.array_equal(a, fragment(volumes, 0.5, 4, skulls.voxel_size_mm))
    np.testing.assert_array_equal(memorise(volumes, skulls.volumes[4:], 0.5, 1),
                                  memorise(volumes, skulls.volumes[4:], 0.5, 1))


def test_fragmentation_adds_components(skulls):
    volumes = skulls.volumes[:4]
    before = measure_volumes(volumes, skulls.voxel_size_mm).n_components
    after = measure_volumes(fragment(volumes, 1.0, 0, skulls.voxel_size_mm),
                            skulls.voxel_size_mm).n_components
    # Islands may merge with each other or the bone; measured: 10 to 13 of the 20 stand
    # apart at 64^3.
    assert (after >= before + ISLANDS // 4).all()


def test_rescaling_by_ten_percent_lengthens_the_skull(skulls):
    volumes = skulls.volumes[:4]
    before = measure_volumes(volumes, skulls.voxel_size_mm)
    after = measure_volumes(rescale(volumes, 1.0), skulls.voxel_size_mm)
    ratio = after.skull_height_mm / before.skull_height_mm
    assert np.all(np.abs(ratio - 1.1) < 2 * skulls.voxel_size_mm / before.skull_height_mm)
    # 1.1^3 = 1.33; interpolation thins the shell a little (measured 1.27 to 1.29).
    assert np.all(after.bone_volume_ml > 1.2 * before.bone_volume_ml)


def test_memorisation_replaces_an_exact_share_by_training_skulls(skulls):
    volumes, train = skulls.volumes[:8], skulls.volumes[8:]
    corrupted = memorise(volumes, train, 0.5, 2)
    copies = [any(np.array_equal(v, t) for t in train) for v in corrupted]
    kept = [any(np.array_equal(v, o) for o in volumes) for v in corrupted]
    assert sum(copies) == 4 and sum(kept) == 4


@pytest.mark.parametrize("bad", [-0.1, 1.5, True])
def test_severity_outside_the_unit_interval_is_refused(bad):
    with pytest.raises(BenchError, match="severity must lie in"):
        check_severity(bad)
