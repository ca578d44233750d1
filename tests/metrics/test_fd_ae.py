"""FD-ae: the Fréchet distance on known Gaussians, and the encoder-file feature map."""

import numpy as np
import pytest
import torch
from scipy import linalg

from bench.config import MetricsConfig
from bench.core.errors import BenchError
from bench.evaluation import pretrained_feature_map
from metrics.features import frechet_distance


def sample(n=400, d=5, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)) @ np.diag([1, 2, 3, 0.5, 1.5])


def test_identical_sets_are_at_distance_zero():
    x = sample()
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def test_a_shift_adds_its_squared_length():
    x = sample()
    shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    assert frechet_distance(x, x + shift) == pytest.approx(float(shift @ shift), rel=1e-9)


def test_doubling_the_spread_adds_the_trace_of_the_covariance():
    # Same mean; S_g = 4 S_r, so Tr(S + 4S - 2 (4 S^2)^(1/2)) = Tr(S).
    x = sample()
    centred = x - x.mean(0)
    expected = np.trace(np.cov(centred, rowvar=False))
    assert frechet_distance(centred, 2 * centred) == pytest.approx(expected, rel=1e-6)


def test_matches_the_definition_on_unrelated_sets():
    x, y = sample(seed=1), sample(seed=2) * 1.3 + 0.2
    s_x, s_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = linalg.sqrtm(s_x @ s_y).real
    expected = np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(s_x + s_y - 2 * root)
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-6)


class PooledEncoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 6, 3, stride=2)

    def forward(self, x):
        return torch.relu(self.conv(x))


def test_a_torchscript_encoder_on_disk_gives_pooled_features(tmp_path, blobs):
    torch.manual_seed(0)
    path = tmp_path / "encoder.pt"
    torch.jit.save(torch.jit.script(PooledEncoder()), str(path))
    assert MetricsConfig(encoder=str(path)).encoder == str(path)
    volumes = blobs(10, 16, seed=3)
    features = pretrained_feature_map(path)(volumes)
    assert features.shape == (10, 6) and features.dtype == np.float64
    one = pretrained_feature_map(path)(volumes[:1])
    np.testing.assert_allclose(one, features[:1], rtol=1e-6)
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-8)


def test_a_missing_or_broken_encoder_file_is_refused_by_key(tmp_path):
    with pytest.raises(BenchError, match="metrics.encoder: .* neither"):
        MetricsConfig(encoder=str(tmp_path / "missing.pt"))
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a model")
    with pytest.raises(BenchError, match="not a TorchScript encoder"):
        pretrained_feature_map(broken)
