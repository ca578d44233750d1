"""MS-SSIM diversity: agreement with MONAI, the settings by resolution, pairs and known cases."""

import numpy as np
import pytest
import torch
from monai.metrics import compute_ms_ssim

from bench.data.synthskull import make_dataset
from bench.core.errors import BenchError
from metrics.diversity import (WANG_WEIGHTS, MSSSIMDiversity, ms_ssim, ms_ssim_diversity,
                               ms_ssim_settings, pairwise_ms_ssim, random_pairs)
from sets import scores


def shells(n, resolution, seed):
    """n ellipsoidal shells with random semi-axes, bool (n, R, R, R)."""
    rng = np.random.default_rng(seed)
    axis = np.linspace(-1, 1, resolution)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(0.4, 0.9, 3)
        r = (x / a) ** 2 + (y / b) ** 2 + (z / c) ** 2
        out.append((r <= 1) & (r >= 0.7))
    return np.stack(out)


@pytest.mark.parametrize("resolution", [16, 32, 64])
def test_ms_ssim_equals_monai(resolution):
    volumes = torch.from_numpy(shells(6, resolution, seed=resolution)).float()
    kernel, sigma, weights = ms_ssim_settings(resolution)
    ours = ms_ssim(volumes[:3], volumes[3:], kernel, sigma, weights)
    monai = compute_ms_ssim(volumes[:3, None], volumes[3:, None], spatial_dims=3,
                            kernel_size=kernel, kernel_sigma=sigma, weights=weights)
    np.testing.assert_allclose(ours.numpy(), monai.reshape(-1).numpy(), atol=1e-5)
    assert float(ours.max()) < 0.99 and len(set(ours.tolist())) == 3  # non-trivial pairs


def test_settings_by_resolution():
    assert ms_ssim_settings(64) == (3, pytest.approx(1.5 * 3 / 11), pytest.approx(
        tuple(w / sum(WANG_WEIGHTS) for w in WANG_WEIGHTS)))
    assert ms_ssim_settings(128)[0] == 7 and ms_ssim_settings(256)[:2] == (11, 1.5)
    assert len(ms_ssim_settings(32)[2]) == 3 and sum(ms_ssim_settings(32)[2]) == pytest.approx(1)
    for resolution in (16, 32, 48, 64):  # every setting passes MONAI's size check
        kernel, sigma, weights = ms_ssim_settings(resolution)
        image = torch.zeros(1, 1, resolution, resolution, resolution)
        compute_ms_ssim(image, image, 3, kernel_size=kernel, kernel_sigma=sigma, weights=weights)
    with pytest.raises(BenchError):
        ms_ssim_settings(8)


def test_random_pairs():
    assert random_pairs(4, 100, seed=0).tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3],
                                                     [2, 3]]
    for n, count in ((30, 100), (1000, 50)):
        pairs = random_pairs(n, count, seed=1)
        assert pairs.shape == (count, 2)
        assert np.all(pairs[:, 0] < pairs[:, 1]) and pairs.max() < n
        assert len({tuple(p) for p in pairs.tolist()}) == count
        np.testing.assert_array_equal(pairs, random_pairs(n, count, seed=1))
    assert not np.array_equal(random_pairs(1000, 50, 1), random_pairs(1000, 50, 2))
    with pytest.raises(BenchError):
        random_pairs(1, 10, 0)


def test_diversity_zero_for_identical_and_positive_for_different():
    volumes = shells(6, 32, seed=7)
    assert ms_ssim_diversity(np.repeat(volumes[:1], 5, axis=0)) == 0.0
    assert ms_ssim_diversity(np.zeros((3, 32, 32, 32), dtype=bool)) == 0.0
    different = ms_ssim_diversity(volumes)
    assert 0.05 < different < 1.0
    # Two distinct shapes repeated: diversity in between.
    two = ms_ssim_diversity(np.concatenate([np.repeat(volumes[:1], 3, 0),
                                            np.repeat(volumes[1:2], 3, 0)]))
    pair = 1.0 - pairwise_ms_ssim(volumes, np.array([[0, 1]]))[0]
    assert two == pytest.approx(pair * 9 / 15)  # 9 of the 15 pairs differ


def test_the_registered_metric_on_skulls():
    data = make_dataset(16, 32, seed=1)
    collapsed = np.repeat(data.volumes[:1], 8, axis=0)
    metric = MSSSIMDiversity(pairs=10)
    assert scores(metric, data.volumes[:8], collapsed) == {"MS-SSIM-diversity": 0.0}
    real_level = ms_ssim_diversity(data.volumes[:8], n_pairs=10)
    fresh = scores(metric, data.volumes[:8], data.volumes[8:])["MS-SSIM-diversity"]
    assert real_level > 0.02 and 0.5 * real_level < fresh < 2.0 * real_level
    assert MSSSIMDiversity.group == "distribution"
    assert MSSSIMDiversity.outputs[0].higher_is_better
