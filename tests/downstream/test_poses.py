"""Rotations, pose errors and surface points, against scipy and closed-form answers."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial.transform import Rotation

from downstream.poses import (apply_pose, euler_rotation, geodesic_error_deg, jitter_points,
                              landmark_error_mm, matrix_to_rotation_6d, quaternion_to_matrix,
                              rotation_6d_to_matrix, sample_rotations, sample_translations,
                              surface_mask, surface_points_mm, translation_error_mm, undo_pose)


def test_geodesic_error_of_known_rotations():
    identity = np.eye(3)
    assert geodesic_error_deg(identity, identity) == pytest.approx(0.0, abs=1e-6)
    quarter_z = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert geodesic_error_deg(identity, quarter_z) == pytest.approx(90.0)
    assert geodesic_error_deg(quarter_z, identity) == pytest.approx(90.0)
    half_x = np.diag([1.0, -1.0, -1.0])
    assert geodesic_error_deg(identity, half_x) == pytest.approx(180.0)
    assert geodesic_error_deg(quarter_z, quarter_z @ euler_rotation([0, 0, 20])) == \
        pytest.approx(20.0)


def test_geodesic_error_matches_scipy_on_random_pairs():
    a = Rotation.random(50, random_state=1)
    b = Rotation.random(50, random_state=2)
    expected = np.rad2deg((a.inv() * b).magnitude())
    assert np.allclose(geodesic_error_deg(a.as_matrix(), b.as_matrix()), expected, atol=1e-5)


def test_euler_rotation_is_extrinsic_x_then_y_then_z():
    angles = np.array([[10.0, -25.0, 30.0], [0.0, 0.0, 90.0], [-30.0, 30.0, -30.0]])
    expected = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
    assert np.allclose(euler_rotation(angles), expected)


def test_quaternion_to_matrix_matches_scipy():
    q = np.random.default_rng(0).standard_normal((20, 4))  # (w, x, y, z), not normalised
    expected = Rotation.from_quat(np.roll(q, -1, axis=1)).as_matrix()  # scipy: scalar last
    assert np.allclose(quaternion_to_matrix(q), expected)


def test_clinical_rotations_stay_in_range_and_translations_in_box():
    rng = np.random.default_rng(3)
    rotations = sample_rotations(500, 30.0, rng)
    angles = Rotation.from_matrix(rotations).as_euler("xyz", degrees=True)
    assert np.abs(angles).max() <= 30.0 + 1e-6
    assert np.abs(angles).max() > 25.0
    translations = sample_translations(500, 20.0, rng)
    assert np.abs(translations).max() <= 20.0 and np.abs(translations).max() > 18.0


def test_uniform_rotations_follow_the_haar_angle_law():
    """On SO(3) the rotation angle has CDF (theta - sin theta) / pi."""
    rotations = sample_rotations(20000, None, np.random.default_rng(4))
    angles = np.deg2rad(geodesic_error_deg(np.eye(3), rotations))
    for theta in (np.pi / 4, np.pi / 2, 3 * np.pi / 4):
        assert np.mean(angles < theta) == pytest.approx((theta - np.sin(theta)) / np.pi,
                                                        abs=0.012)
    assert np.abs(rotations.mean(0)).max() < 0.02  # E[R] = 0 under the Haar measure
    assert np.allclose(np.linalg.det(rotations), 1.0)


def test_six_d_representation_round_trip_and_orthonormality():
    rotations = torch.as_tensor(Rotation.random(10, random_state=5).as_matrix())
    assert torch.allclose(rotation_6d_to_matrix(matrix_to_rotation_6d(rotations)), rotations,
                          atol=1e-12)
    raw = torch.randn(100, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = rotation_6d_to_matrix(raw)
    eye = torch.eye(3, dtype=torch.float64).expand(100, 3, 3)
    assert torch.allclose(out.transpose(1, 2) @ out, eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(out), torch.ones(100, dtype=torch.float64))
    # the first column is the normalised first 3-vector (Gram-Schmidt)
    assert torch.allclose(out[:, :, 0], raw[:, :3] / raw[:, :3].norm(dim=1, keepdim=True))


def test_apply_and_undo_pose_are_inverse():
    rng = np.random.default_rng(6)
    points = rng.normal(size=(2, 50, 3)) * 50
    rotation = sample_rotations(2, None, rng)
    translation = sample_translations(2, 20.0, rng)
    posed = apply_pose(points, rotation, translation)
    assert np.allclose(posed[1, 7], rotation[1] @ points[1, 7] + translation[1])
    assert np.allclose(undo_pose(posed, rotation, translation), points)


def test_true_pose_gives_zero_errors():
    rng = np.random.default_rng(7)
    rotation = sample_rotations(5, 30.0, rng)
    translation = sample_translations(5, 20.0, rng)
    landmarks = rng.normal(size=(5, 6, 3)) * 60
    assert np.allclose(geodesic_error_deg(rotation, rotation), 0.0, atol=1e-5)
    assert np.allclose(translation_error_mm(translation, translation), 0.0)
    assert np.allclose(landmark_error_mm(landmarks, rotation, translation, rotation,
                                         translation), 0.0, atol=1e-9)


def test_landmark_error_known_values_and_missing_landmarks():
    landmarks = np.array([[[10.0, 0, 0], [0, 20.0, 0]],
                          [[np.nan] * 3, [5.0, 5.0, 5.0]],
                          [[np.nan] * 3, [np.nan] * 3]])
    eye = np.tile(np.eye(3), (3, 1, 1))
    zero = np.zeros((3, 3))
    shifted = zero + np.array([3.0, 0.0, 4.0])  # estimate off by 5 mm
    errors = landmark_error_mm(landmarks, eye, zero, eye, shifted)
    assert errors[:2] == pytest.approx([5.0, 5.0])
    assert np.isnan(errors[2])
    # a 90-degree rotation error about z at the origin moves (10, 0, 0) by 10 sqrt(2)
    quarter = np.tile(euler_rotation([0, 0, 90]), (3, 1, 1))
    errors = landmark_error_mm(landmarks, eye, zero, quarter, zero)
    assert errors[0] == pytest.approx(np.mean([10 * np.sqrt(2), 20 * np.sqrt(2)]))


def test_surface_mask_of_a_cube_matches_erosion():
    volume = np.zeros((9, 9, 9), dtype=bool)
    volume[2:7, 2:7, 2:7] = True
    surface = surface_mask(volume)
    assert surface.sum() == 125 - 27
    rng = np.random.default_rng(8)
    blob = ndimage.gaussian_filter(rng.random((20, 20, 20)), 2) > 0.5
    blob[0] = True  # bone on the grid's edge counts as surface
    expected = blob & ~ndimage.binary_erosion(blob, border_value=0)
    assert np.array_equal(surface_mask(blob), expected)


def test_surface_points_are_voxel_centres_in_mm_and_jitter_stays_in_voxel():
    volume = np.zeros((4, 4, 4), dtype=bool)
    volume[0, 1, 3] = True
    points = surface_points_mm(volume, 64.0)  # 256 mm field of view
    assert points.tolist() == [[-96.0, -32.0, 96.0]]
    jittered = jitter_points(np.repeat(points, 100, axis=0), 64.0, np.random.default_rng(0))
    assert np.abs(jittered - points).max() <= 32.0
    assert np.abs(jittered - points).max() > 25.0
