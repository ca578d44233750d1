"""Reference generators: the oracles sample the ground truth, mean-skull its mean; all are
marked references."""

import numpy as np
import pytest
import torch

import methods  # noqa: F401  (registers the built-in methods)
from bench.core.errors import BenchError
from methods.base import METHODS, FitConfig
from methods.registry import create_method


class ToyTruth:
    """A ground truth of random 4^3 volumes, and an encoding that flattens them."""

    def subjects(self, n, seed):
        return np.stack([np.random.default_rng([seed, i]).random((4, 4, 4)) < 0.5
                         for i in range(n)])

    def encode(self, volumes):
        return torch.from_numpy(volumes.reshape(len(volumes), -1).astype(np.float32))


TRAIN = torch.randn(10, 64, generator=torch.Generator().manual_seed(0))


def test_which_methods_are_references():
    references = {name for name in METHODS.names() if METHODS.get(name).reference}
    assert references == {"oracle", "oracle-rep", "mean-skull", "gaussian", "train-copy"}
    assert METHODS.get("oracle").space == "volumes"
    assert METHODS.get("oracle-rep").space == METHODS.get("otfm").space == "representation"


def test_the_oracles_sample_the_ground_truth():
    truth = ToyTruth()
    oracle = create_method("oracle")
    oracle.fit(TRAIN, None, FitConfig(truth=truth), seed=0)
    samples = oracle.sample(3, 100, seed=2).samples
    np.testing.assert_array_equal(samples.numpy(), truth.subjects(3, 2))
    represented = create_method("oracle-rep")
    represented.fit(TRAIN, None, FitConfig(truth=truth), seed=0)
    assert torch.equal(represented.sample(3, 1, seed=2).samples,
                       truth.encode(truth.subjects(3, 2)))


def test_an_oracle_without_ground_truth_or_from_a_file_is_refused(tmp_path):
    with pytest.raises(BenchError, match="ground truth"):
        create_method("oracle").fit(TRAIN, None, FitConfig(), seed=0)
    oracle = create_method("oracle")
    oracle.fit(TRAIN, None, FitConfig(truth=ToyTruth()), seed=0)
    with pytest.raises(BenchError, match="not saved"):
        oracle.save(tmp_path / "oracle.pt")


def test_mean_skull_repeats_the_mean_latent(tmp_path):
    method = create_method("mean-skull")
    method.fit(TRAIN, None, FitConfig(), seed=0)
    samples = method.sample(4, 10, seed=5).samples
    assert torch.equal(samples, TRAIN.mean(0).expand(4, 64))
    method.save(tmp_path / "mean.pt")
    assert torch.equal(type(method).load(tmp_path / "mean.pt").sample(4, 1, 0).samples, samples)
