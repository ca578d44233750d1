"""synthskull: determinism, anatomy sanity, landmarks, classes and limits."""

import numpy as np
import pytest
from scipy import ndimage

from bench.data.grid import FIELD_OF_VIEW_MM, mm_to_index
from bench.data.synthskull import (CLASS_NAMES, CLASS_PRIOR, LANDMARK_NAMES, generate_subject,
                                   make_dataset)
from bench.data.synthskull.anatomy import sample_parameters
from bench.core.errors import BenchError

R = 64
VOXEL_MM = FIELD_OF_VIEW_MM / R
FULL = np.ones((3, 3, 3), dtype=bool)


def subjects_of(label, count, resolution=R, seed=11):
    """The first ``count`` subjects of class ``label`` for ``seed``."""
    found, index = [], 0
    while len(found) < count:
        if sample_parameters(np.random.default_rng([seed, index])).label == label:
            found.append(generate_subject(seed, index, resolution))
        index += 1
    return found


def symmetry_error_mm(volume, voxel_mm):
    """Mean distance (mm) from the bone surface to the mirrored bone (x -> -x)."""
    to_mirror = ndimage.distance_transform_edt(~volume[::-1], sampling=voxel_mm)
    surface = volume & ~ndimage.binary_erosion(volume)
    return float(to_mirror[surface].mean())


def test_same_seed_and_index_give_the_same_subject():
    a, b = generate_subject(3, 7, 48), generate_subject(3, 7, 48)
    assert np.array_equal(a.volume, b.volume)
    assert a.parameters == b.parameters
    for name in LANDMARK_NAMES:
        np.testing.assert_array_equal(a.landmarks[name], b.landmarks[name])


def test_subjects_differ_across_indices_and_seeds():
    base = generate_subject(0, 0, 48).volume
    assert not np.array_equal(base, generate_subject(0, 1, 48).volume)
    assert not np.array_equal(base, generate_subject(1, 0, 48).volume)


def test_dataset_is_independent_of_order_and_workers():
    serial = make_dataset(4, 32, seed=2)
    parallel = make_dataset(4, 32, seed=2, workers=2)
    assert np.array_equal(serial.volumes, parallel.volumes)
    assert np.array_equal(serial.volumes[3], generate_subject(2, 3, 32).volume)
    assert serial.subject_ids == parallel.subject_ids


@pytest.mark.parametrize("label", CLASS_NAMES)
def test_cranium_and_mandible_are_one_component_each(label):
    for subject in subjects_of(label, 2):
        labels, count = ndimage.label(subject.volume, structure=FULL)
        assert count == 2, f"{label}: {count} components"
        sizes = np.bincount(labels.ravel())[1:]
        assert sizes.min() > 0.05 * sizes.sum(), "the smaller part is no mandible"


def test_cranium_only_is_one_component_without_menton():
    subject = generate_subject(4, 0, R, mandible=False)
    _, count = ndimage.label(subject.volume, structure=FULL)
    assert count == 1
    assert np.isnan(subject.landmarks["menton"]).all()
    with_jaw = generate_subject(4, 0, R)
    assert with_jaw.volume.sum() > subject.volume.sum()
    assert np.array_equal(with_jaw.volume & subject.volume, subject.volume)


def test_bone_fraction_in_documented_range():
    dataset = make_dataset(40, R, seed=5)
    fractions = dataset.volumes.reshape(len(dataset), -1).mean(axis=1)
    # docs/SYNTHSKULL.md: 2 % to 6.5 % of the 256 mm field of view is bone.
    assert fractions.min() > 0.02 and fractions.max() < 0.065


def test_no_bone_on_the_grid_border():
    dataset = make_dataset(150, 32, seed=6)
    v = dataset.volumes
    border = v[:, [0, -1]].any() or v[:, :, [0, -1]].any() or v[:, :, :, [0, -1]].any()
    assert not border


@pytest.mark.parametrize("label", ["normocephaly", "scaphocephaly", "brachycephaly",
                                   "trigonocephaly"])
def test_symmetric_classes_are_bilaterally_symmetric(label):
    for subject in subjects_of(label, 2):
        assert symmetry_error_mm(subject.volume, VOXEL_MM) < 0.75


def test_plagiocephaly_is_asymmetric():
    for subject in subjects_of("plagiocephaly", 3):
        assert symmetry_error_mm(subject.volume, VOXEL_MM) > 1.0


def test_landmarks_lie_on_the_bone_surface_within_two_voxels():
    bone_distance_checked = 0
    for index in range(6):
        subject = generate_subject(8, index, R)
        volume = subject.volume
        to_bone = ndimage.distance_transform_edt(~volume)
        to_air = ndimage.distance_transform_edt(volume)
        for name in LANDMARK_NAMES:
            point = subject.landmarks[name]
            voxel = tuple(np.round(mm_to_index(point, R)).astype(int))
            assert to_bone[voxel] <= 2 and to_air[voxel] <= 2, (index, name, point)
            bone_distance_checked += 1
    assert bone_distance_checked == 6 * len(LANDMARK_NAMES)


def test_landmarks_follow_the_canonical_pose():
    for index in range(5):
        marks = generate_subject(9, index, R).landmarks
        # Midsagittal plane at x = 0: nasion on it, porions mirror images.
        assert abs(marks["nasion"][0]) < 1e-6
        np.testing.assert_allclose(marks["porion_left"] * [-1, 1, 1], marks["porion_right"],
                                   atol=0.5)
        # Frankfort horizontal: porions and orbitales at one height (within 5 mm).
        heights = [marks[k][2] for k in ("porion_left", "porion_right", "orbitale_left",
                                         "orbitale_right")]
        assert max(heights) - min(heights) < 5.0
        # Anatomical order: nasion in front of the orbitales, menton below everything.
        assert marks["nasion"][1] > marks["orbitale_left"][1] > marks["porion_left"][1]
        assert marks["menton"][2] < min(heights) - 60


def test_class_prior_matches_the_documented_distribution():
    draws = 4000
    labels = [sample_parameters(np.random.default_rng([0, i])).label for i in range(draws)]
    for name, prior in zip(CLASS_NAMES, CLASS_PRIOR):
        share = labels.count(name) / draws
        assert abs(share - prior) < 4 * np.sqrt(prior * (1 - prior) / draws), name


def test_classes_change_the_cephalic_index_in_the_documented_direction():
    def cephalic_index(volume):
        occupied = np.argwhere(volume)
        extent = occupied.max(axis=0) - occupied.min(axis=0) + 1
        return 100.0 * extent[0] / extent[1]

    mean_index = {label: np.mean([cephalic_index(s.volume) for s in subjects_of(label, 3, 48)])
                  for label in ("scaphocephaly", "normocephaly", "brachycephaly")}
    assert mean_index["scaphocephaly"] < mean_index["normocephaly"] < mean_index["brachycephaly"]


def test_split_is_stratified_and_every_class_is_labelled():
    dataset = make_dataset(60, 16, seed=1)
    assert set(dataset.split.tolist()) == {"train", "val", "test"}
    assert dataset.class_names == CLASS_NAMES
    normal = dataset.labels == CLASS_NAMES.index("normocephaly")
    assert 0.6 < np.mean(dataset.split[normal] == "train") < 0.95


@pytest.mark.parametrize("resolution", [15, 257])
def test_resolution_outside_range_is_refused(resolution):
    with pytest.raises(BenchError, match="resolution"):
        generate_subject(0, 0, resolution)


def test_smallest_and_a_fine_resolution_work():
    coarse = generate_subject(0, 0, 16).volume
    fine = generate_subject(0, 0, 128).volume
    assert coarse.shape == (16,) * 3 and fine.shape == (128,) * 3
    # The same anatomy: voxel centres sample one continuous shape, so nearly
    # every coarse bone voxel covers fine bone (each 16^3 voxel is an 8^3 block
    # at 128; a sliver through a coarse centre can slip between fine centres).
    assert coarse.sum() > 40
    blocks = fine.reshape(16, 8, 16, 8, 16, 8).any(axis=(1, 3, 5))
    assert blocks[coarse].mean() > 0.95
