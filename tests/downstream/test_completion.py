"""Completion: the shape model's closed form, its recovery of known skulls, the U-Net, the task."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from bench.core.errors import BenchError
from downstream.base import DegenerateTrainingSet
from downstream.completion import (CompletionTask, ShapeModelCompleter, completion_loss,
                                   cut_test_defects)
from downstream.defects import DEFECT_KINDS, cut_defect
from downstream.overlap import dice


def blobs(n, size, seed):
    rng = np.random.default_rng(seed)
    return np.stack([ndimage.gaussian_filter(rng.random((size,) * 3), 1.5) > 0.5
                     for _ in range(n)])


def test_shape_model_matches_brute_force_ridge_least_squares():
    train = blobs(15, 12, 0)
    model = ShapeModelCompleter(n_components=5, ridge=3.0).fit(train)
    defective = blobs(1, 12, 1)
    region = np.zeros_like(defective)
    region[0, 3:8, 2:9, 4:10] = True
    defective &= ~region
    # independent reference: PCA by SVD of the centred data on the full grid, then the
    # ridge problem solved by lstsq on the stacked system [V_K^T; Gamma] b = [x_K - m_K; 0]
    flat = train.reshape(15, -1).astype(np.float64)
    mean = flat.mean(0)
    _, singular, vt = np.linalg.svd(flat - mean, full_matrices=False)
    components, variance = vt[:5], singular[:5] ** 2 / 14
    total = ((flat - mean) ** 2).sum() / 14
    support = flat.any(0).sum()
    noise = (total - variance.sum()) / (support - 5)
    known = ~region.ravel()
    design = np.vstack([components[:, known].T, np.diag(np.sqrt(3.0 * noise / variance))])
    target = np.concatenate([defective.ravel()[known] - mean[known], np.zeros(5)])
    coefficients = np.linalg.lstsq(design, target, rcond=None)[0]
    expected = (mean + coefficients @ components).reshape(region.shape[1:]) * region[0]
    assert model.noise_variance_ == pytest.approx(noise, rel=1e-4)  # float32 Gram
    assert np.allclose(model.occupancy(defective, region)[0], expected, atol=1e-5)


def test_shape_model_recovers_skulls_it_contains(train64, skulls64):
    model = ShapeModelCompleter(n_components=29, ridge=1.0).fit(train64)
    for i, kind in enumerate(DEFECT_KINDS):
        defect = cut_defect(train64[i], skulls64.voxel_size_mm, kind,
                            np.random.default_rng(i))
        implant = model.complete(defect.defective[None], defect.region[None])[0]
        assert not (implant & ~defect.region).any()
        assert dice(defect.implant, implant) > 0.9, kind


def test_shape_model_of_one_skull_predicts_that_skull(train64, skulls64):
    model = ShapeModelCompleter(n_components=8, ridge=1.0).fit(train64[:1])
    defect = cut_defect(train64[1], skulls64.voxel_size_mm, "random", np.random.default_rng(0))
    implant = model.complete(defect.defective[None], defect.region[None])[0]
    assert np.array_equal(implant, train64[0] & defect.region)


def test_task_scores_held_out_skulls(skulls32):
    train, test = skulls32.volumes[:8], skulls32.select(np.arange(8, 12))
    runs = [CompletionTask(n_components=6).train(train, skulls32.voxel_size_mm, seed=0)
            .evaluate(test, seed=1) for _ in range(2)]
    values = {v.name: v.value for v in runs[0]}
    assert list(values) == ["completion-dice", "completion-border-dice", "completion-hd95-mm"]
    assert 0.0 <= values["completion-dice"] <= 1.0
    assert 0.0 <= values["completion-border-dice"] <= 1.0
    assert 0.0 <= values["completion-hd95-mm"] < 100.0
    assert [v.value for v in runs[0]] == [v.value for v in runs[1]]
    assert [v.higher_is_better for v in runs[0]] == [True, True, False]


def test_test_defects_cycle_through_the_types_and_depend_on_the_seed(skulls32):
    test = skulls32.select(np.arange(8, 12))
    params = CompletionTask(defects_per_skull=2).params
    defects = cut_test_defects(test, 0, params)
    assert [d.kind for d in defects] == list(DEFECT_KINDS) * 2
    again = cut_test_defects(test, 0, params)
    other = cut_test_defects(test, 1, params)
    assert all(np.array_equal(a.region, b.region) for a, b in zip(defects, again))
    assert not all(np.array_equal(a.region, b.region) for a, b in zip(defects, other))


def test_unet_trains_one_step_and_completes_on_cpu(skulls32):
    train, test = skulls32.volumes[:8], skulls32.select(np.arange(8, 10))
    task = CompletionTask(model="unet", unet_features=(4, 4, 8, 8, 16, 4), unet_steps=1,
                          unet_batch_size=1)
    task.train(train, skulls32.voxel_size_mm, seed=0)
    assert len(task.model_.losses_) == 1 and np.isfinite(task.model_.losses_[0])
    values = task.evaluate(test, seed=0)
    assert all(np.isfinite(v.value) for v in values)
    defect = cut_test_defects(test, 0, task.params)[0]
    implant = task.model_.complete(defect.defective[None], defect.region[None])
    assert implant.shape == (1, 32, 32, 32) and not (implant[0] & ~defect.region).any()


def test_completion_loss_is_small_for_the_right_answer():
    target = torch.zeros(1, 1, 8, 8, 8)
    target[..., 2:5, 2:5, 2:5] = 1.0
    region = torch.zeros_like(target)
    region[..., 1:6, 1:6, 1:6] = 1.0
    right = completion_loss(40 * (2 * target - 1), target, region)
    wrong = completion_loss(-40 * (2 * target - 1), target, region)
    assert float(right) < 1e-3
    assert float(wrong) > 1.0


def test_task_input_checks():
    with pytest.raises(BenchError, match="model"):
        CompletionTask(model="gan")
    with pytest.raises(BenchError, match="unet_features"):
        CompletionTask(unet_features=(4, 8))
    with pytest.raises(BenchError, match="multiple of 16"):
        CompletionTask(model="unet", unet_steps=1).train(
            np.ones((2, 24, 24, 24), dtype=bool), 8.0, seed=0)
    with pytest.raises(DegenerateTrainingSet):
        CompletionTask().train(np.zeros((3, 16, 16, 16), dtype=bool), 16.0, seed=0)


def test_configuration_values_from_yaml_are_accepted_and_checked():
    task = CompletionTask(defect={"max_volume_ml": 40.0, "secondary_spheres": [1, 3]},
                          unet_features=[4, 4, 8, 8, 16, 4])
    assert task.params.defect.max_volume_ml == 40.0
    assert task.params.defect.secondary_spheres == (1, 3)
    assert task.params.unet_features == (4, 4, 8, 8, 16, 4)
    with pytest.raises(BenchError, match="defect has no parameter"):
        CompletionTask(defect={"volume": 3})
    with pytest.raises(BenchError, match="positive integer"):
        CompletionTask(n_components=3.5)
