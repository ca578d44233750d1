"""The ICP baseline: recovery of known poses and the template."""

import numpy as np

from downstream.icp import IcpAligner, build_template
from downstream.poses import euler_rotation, jitter_points, surface_points_mm


def test_icp_recovers_a_known_pose_of_a_synthskull_subject(skulls64):
    volume = skulls64.volumes[0]
    voxel = skulls64.voxel_size_mm
    rotation, translation = euler_rotation([0.0, 0.0, 20.0]), np.array([10.0, 0.0, 0.0])
    points = jitter_points(surface_points_mm(volume, voxel), voxel, np.random.default_rng(0))
    posed = points @ rotation.T + translation
    aligner = IcpAligner(surface_points_mm(build_template(volume[None]), voxel),
                         "point_to_point", 8.0)
    rotation_est, translation_est = aligner.estimate(posed)
    angle = np.rad2deg(np.arccos(np.clip((np.trace(rotation_est.T @ rotation) - 1) / 2, -1, 1)))
    assert angle < 2.0
    assert np.linalg.norm(translation_est - translation) < 2.0


def test_icp_with_a_template_of_other_skulls_and_point_to_plane(skulls64, train64):
    voxel = skulls64.voxel_size_mm
    template = surface_points_mm(build_template(train64[1:]), voxel)
    rotation, translation = euler_rotation([-15.0, 25.0, 10.0]), np.array([-12.0, 8.0, 15.0])
    posed = surface_points_mm(train64[0], voxel) @ rotation.T + translation
    for method in ("point_to_point", "point_to_plane"):
        rotation_est, translation_est = IcpAligner(template, method, 8.0).estimate(posed)
        angle = np.rad2deg(np.arccos(np.clip((np.trace(rotation_est.T @ rotation) - 1) / 2,
                                             -1, 1)))
        assert angle < 5.0, method
        assert np.linalg.norm(translation_est - translation) < 5.0, method


def test_template_is_the_mean_shape_or_the_median_skull():
    volumes = np.zeros((3, 8, 8, 8), dtype=bool)
    volumes[:, 2:5, 2:5, 2:5] = True
    volumes[0, 6, 6, 6] = True
    assert np.array_equal(build_template(volumes), volumes[1])
    disjoint = np.zeros((3, 8, 8, 8), dtype=bool)
    disjoint[0, :1] = True  # 64 voxels
    disjoint[1, 2:4] = True  # 128: the median
    disjoint[2, 5:8] = True  # 192
    assert np.array_equal(build_template(disjoint), disjoint[1])
