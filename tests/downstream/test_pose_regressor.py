"""The learned pose regressor: its starting point, its inputs and a short training run."""

import numpy as np
import pytest
import torch

from downstream.pose_regressor import (PoseRegressor, alignment_loss, cloud_moments,
                                       predict_pose, train_regressor)
from downstream.poses import euler_rotation, surface_points_mm


def test_untrained_regressor_predicts_identity_and_the_mean_centroid():
    model = PoseRegressor(8, np.array([1.0, -15.0, 20.0]), np.zeros(6))
    points = torch.randn(2, 32, 3) * 50
    centroid, moments = torch.zeros(2, 3), torch.eye(3).expand(2, 3, 3) * 900
    rotation, translation = predict_pose(model, points, centroid, moments)
    assert torch.allclose(rotation, torch.eye(3).expand(2, 3, 3), atol=1e-6)
    assert torch.allclose(translation, -torch.tensor([1.0, -15.0, 20.0]).expand(2, 3), atol=1e-4)


def test_cloud_moments_turn_with_the_cloud():
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(500, 3)) * [60.0, 40.0, 20.0]
    rotation = euler_rotation([10.0, 20.0, 30.0])
    centroid, moments = cloud_moments(cloud)
    centroid_r, moments_r = cloud_moments(cloud @ rotation.T + 5.0)
    assert np.allclose(centroid_r, rotation @ centroid + 5.0)
    assert np.allclose(moments_r, rotation @ moments @ rotation.T)


def test_loss_is_zero_for_the_true_pose():
    rng = np.random.default_rng(1)
    canonical = torch.as_tensor(rng.normal(size=(2, 40, 3)) * 50)
    rotation = torch.as_tensor(euler_rotation(np.array([[5.0, 10.0, -20.0], [0, 0, 90.0]])))
    translation = torch.tensor([[1.0, 2.0, 3.0], [-5.0, 0.0, 8.0]], dtype=torch.float64)
    posed = canonical @ rotation.transpose(1, 2) + translation[:, None]
    assert float(alignment_loss(rotation, translation, posed, canonical)) < 1e-20
    # a translation off by (10, 10, 10) mm moves every point by 10 sqrt(3) mm: 0.03 in units
    # of SCALE_MM^2
    assert float(alignment_loss(rotation, translation + 10.0, posed, canonical)) == \
        pytest.approx(3 * 10.0 ** 2 / 100.0 ** 2)


def test_training_lowers_the_loss_and_is_deterministic(train64):
    surfaces = [surface_points_mm(v, 4.0) for v in train64[:10]]
    budget = dict(width=16, steps=40, batch_size=8, n_points=64, learning_rate=3e-3,
                  max_rotation_deg=30.0, max_translation_mm=20.0, lower_cut_mm=60.0,
                  upper_cut_mm=25.0, seed=3, device=torch.device("cpu"))
    threads = torch.get_num_threads()
    model, losses = train_regressor(surfaces, 4.0, **budget)
    _, again = train_regressor(surfaces, 4.0, **budget)
    assert losses == again
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    assert torch.get_num_threads() == threads  # the one-thread section restores the setting
    assert not model.training
