"""The baselines ``gaussian`` and ``train-copy`` against what they must be."""

import numpy as np
import pytest
import torch

import methods  # noqa: F401  (registers the built-in methods)
from bench.core.errors import BenchError
from methods.base import FitConfig
from methods.registry import create_method

CONFIG = FitConfig()  # unused by the baselines: they train nothing
MEAN = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
SQRT = torch.tensor([[1.0, 0.0, 0.0, 0.0],
                     [0.8, 0.6, 0.0, 0.0],
                     [-0.5, 0.3, 0.4, 0.0],
                     [0.2, -0.1, 0.6, 1.5]], dtype=torch.float64)
COVARIANCE = SQRT @ SQRT.T


def known_gaussian(n: int, seed: int) -> torch.Tensor:
    """(n, 4) float32 samples of N(MEAN, COVARIANCE), correlated and of unequal scales."""
    z = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (MEAN + z @ SQRT.T).float()


def empirical(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    x = x.double().numpy()
    return x.mean(axis=0), np.cov(x, rowvar=False, bias=True)


# ------------------------------------------------------------------ gaussian

@pytest.mark.parametrize("max_full_dim", [4096, 1], ids=["full", "factor"])
def test_gaussian_recovers_a_known_gaussian(max_full_dim):
    method = create_method("gaussian", max_full_dim=max_full_dim)
    report = method.fit(known_gaussian(4000, seed=0), None, CONFIG, seed=0)
    assert report.extra["form"] == ("full" if max_full_dim > 4 else "factor")
    result = method.sample(20000, steps=1, seed=1)
    assert result.nfe == 0 and result.samples.shape == (20000, 4)
    mean, covariance = empirical(result.samples)
    # Two sampling errors add up: 4,000 training rows and 20,000 samples. The
    # standard error of a mean is sqrt(var / n) <= sqrt(2.6 / 4000) = 0.026;
    # that of a covariance entry sqrt((s_ii s_jj + s_ij^2) / n) <= 0.06.
    np.testing.assert_allclose(mean, MEAN.numpy(), atol=0.1)
    np.testing.assert_allclose(covariance, COVARIANCE.numpy(), atol=0.2)


def test_gaussian_fit_is_the_maximum_likelihood_estimate():
    train = known_gaussian(500, seed=2)
    method = create_method("gaussian", ridge=1e-3)
    method.fit(train, None, CONFIG, seed=0)
    mean, covariance = empirical(train)  # numpy, divided by N (bias=True): the ML estimate
    ridge = 1e-3 * np.trace(covariance) / 4
    np.testing.assert_allclose(method.mean_.numpy(), mean, rtol=1e-6, atol=1e-6)
    factor = method.factor_.double().numpy()
    np.testing.assert_allclose(factor @ factor.T, covariance + ridge * np.eye(4), rtol=1e-5,
                               atol=1e-6)
    assert method.ridge_variance_ == pytest.approx(ridge)


def test_full_and_factor_forms_sample_the_same_distribution():
    train = known_gaussian(300, seed=3)
    full = create_method("gaussian")
    factor = create_method("gaussian", max_full_dim=2)
    for method in (full, factor):
        method.fit(train, None, CONFIG, seed=0)
    covariances = [empirical(m.sample(20000, 1, seed=4).samples)[1] for m in (full, factor)]
    np.testing.assert_allclose(covariances[0], covariances[1], atol=0.15)


def test_gaussian_on_voxel_grids_uses_the_factor_form():
    generator = torch.Generator().manual_seed(0)
    train = torch.randint(0, 2, (20, 1, 8, 8, 8), generator=generator).float() * 2 - 1
    method = create_method("gaussian", max_full_dim=256)
    report = method.fit(train, None, CONFIG, seed=0)
    assert report.extra["form"] == "factor" and method.factor_.shape == (512, 20)
    samples = method.sample(6, 1, seed=0).samples
    assert samples.shape == (6, 1, 8, 8, 8)
    # Samples lie in the span of the training data (plus a tiny ridge).
    centred = (samples - method.mean_.reshape(1, 8, 8, 8)).reshape(6, -1).double()
    basis = torch.linalg.qr(method.factor_.double()).Q
    off_span = centred - (centred @ basis) @ basis.T
    assert off_span.norm() < 1e-2 * centred.norm()


def test_a_singular_covariance_without_ridge_is_an_error():
    train = known_gaussian(50, seed=0)
    train = torch.cat([train, train[:, :1]], dim=1)  # a repeated column: rank 4 of 5
    with pytest.raises(BenchError, match="not positive definite.*raise ridge"):
        create_method("gaussian", ridge=0.0).fit(train, None, CONFIG, seed=0)
    create_method("gaussian").fit(train, None, CONFIG, seed=0)  # the default ridge copes


def test_constant_data_still_gives_a_valid_gaussian():
    method = create_method("gaussian")
    method.fit(torch.ones(10, 3), None, CONFIG, seed=0)
    samples = method.sample(100, 1, seed=0).samples
    torch.testing.assert_close(samples, torch.ones(100, 3), atol=1e-2, rtol=0)


@pytest.mark.parametrize("params", [{"ridge": -1.0}, {"ridge": float("nan")},
                                    {"max_full_dim": 0}])
def test_gaussian_bad_hyperparameters_are_refused(params):
    with pytest.raises(BenchError, match="method 'gaussian'"):
        create_method("gaussian", **params)


# ------------------------------------------------------------------ train-copy

def test_train_copy_samples_are_exactly_training_rows():
    train = known_gaussian(40, seed=5)
    method = create_method("train-copy")
    method.fit(train, None, CONFIG, seed=0)
    result = method.sample(100, steps=10, seed=6)
    assert result.nfe == 0
    chosen = method.choices(100, seed=6)
    assert torch.equal(result.samples, train[chosen])
    # Memorisation: every sample's nearest training row is at distance exactly 0.
    distances = torch.cdist(result.samples, train, compute_mode="donot_use_mm_for_euclid_dist")
    assert distances.min(dim=1).values.max() == 0
    # Drawn with replacement, so more samples than training rows is fine; and
    # the draws spread over the training set.
    assert len(set(chosen)) > 25


def test_train_copy_draws_are_uniform():
    method = create_method("train-copy")
    method.fit(torch.arange(10.0).reshape(5, 2), None, CONFIG, seed=0)
    counts = np.bincount(method.choices(5000, seed=0), minlength=5)
    # Binomial(5000, 0.2): standard deviation 28; allow 5 of them.
    assert np.all(np.abs(counts - 1000) < 140)


def test_train_copy_keeps_its_own_copy_of_the_data():
    train = known_gaussian(10, seed=0)
    method = create_method("train-copy")
    method.fit(train, None, CONFIG, seed=0)
    before = method.sample(5, 1, seed=0).samples.clone()
    train.add_(100.0)  # the caller changes its tensor after fit
    assert torch.equal(method.sample(5, 1, seed=0).samples, before)


def test_train_copy_on_voxel_grids():
    train = torch.randint(0, 2, (6, 1, 4, 4, 4)).float() * 2 - 1
    method = create_method("train-copy")
    method.fit(train, None, CONFIG, seed=0)
    samples = method.sample(3, 1, seed=2).samples
    assert samples.shape == (3, 1, 4, 4, 4)
    assert all(any(torch.equal(s, t) for t in train) for s in samples)
