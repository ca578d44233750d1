"""Shared synthskull data for the downstream tests (generated once per session)."""

import numpy as np
import pytest

from bench.data.dataset import SkullDataset
from bench.data.synthskull import make_dataset

N_TRAIN = 30
N_TEST = 10


@pytest.fixture(scope="session")
def skulls64() -> SkullDataset:
    """40 synthskull subjects at 64^3 (4 mm voxels) with landmarks."""
    return make_dataset(N_TRAIN + N_TEST, 64, seed=0)


@pytest.fixture(scope="session")
def train64(skulls64: SkullDataset) -> np.ndarray:
    """The first 30 subjects' volumes, bool (30, 64, 64, 64)."""
    return skulls64.volumes[:N_TRAIN]


@pytest.fixture(scope="session")
def test64(skulls64: SkullDataset) -> SkullDataset:
    """The last 10 subjects, held out from ``train64``."""
    return skulls64.select(np.arange(N_TRAIN, N_TRAIN + N_TEST))


@pytest.fixture(scope="session")
def skulls32() -> SkullDataset:
    """12 synthskull subjects at 32^3 (8 mm voxels), for cheap end-to-end runs."""
    return make_dataset(12, 32, seed=0)
