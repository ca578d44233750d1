"""Fixtures shared by every test folder.

It sits at the repository root, not in tests/: a conftest.py in tests/ would put that
folder on sys.path, where tests/bench, tests/methods, ... would shadow the packages of the
same names as namespace packages under an editable install.
"""

import numpy as np
import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread for the test, restored after it.

    Tiny networks gain nothing from threads, benchmarks need the same count
    every run, and on a busy machine spinning OpenMP workers made small
    steps many times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def blobs():
    """A function (n, resolution, seed) -> n random unions of a few balls, bool (n, R, R, R):
    volumes that overlap but differ, for the Dice engine and the metrics that use it."""
    return _blobs


def _blobs(n, resolution, seed):
    """n random unions of a few balls, bool (n, R, R, R): overlapping but different volumes."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(resolution)] * 3, indexing="ij"), axis=-1)
    volumes = np.zeros((n, resolution, resolution, resolution), dtype=bool)
    for i in range(n):
        for _ in range(rng.integers(1, 4)):
            centre = rng.uniform(0.3, 0.7, 3) * resolution
            radius = rng.uniform(0.1, 0.25) * resolution
            volumes[i] |= ((grid - centre) ** 2).sum(-1) <= radius ** 2
    return volumes
