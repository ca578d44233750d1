"""Known low-dimensional distributions that every deep method must learn; registry isolation."""

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import ot
import pytest
import torch

from methods.base import METHODS


@contextlib.contextmanager
def _isolated_methods() -> Iterator[dict]:
    """The method registry as it is now, restored on exit; toy_plugin imports afresh."""
    saved = dict(METHODS.classes)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(Path(__file__).parent))
        patch.delitem(sys.modules, "toy_plugin", raising=False)
        try:
            yield METHODS.classes
        finally:
            sys.modules.pop("toy_plugin", None)
            METHODS.classes.clear()
            METHODS.classes.update(saved)


@pytest.fixture(scope="session")
def isolated_methods():
    """A context manager: inside it, registrations (and toy_plugin) are undone on exit."""
    return _isolated_methods


def eight_gaussians(n: int, seed: int) -> torch.Tensor:
    """(n, 2) samples of 8 Gaussians (std 0.1) evenly spaced on a circle of radius 2."""
    rng = np.random.default_rng(seed)
    angles = 2 * np.pi * rng.integers(0, 8, n) / 8
    centres = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return torch.tensor(centres + 0.1 * rng.standard_normal((n, 2)), dtype=torch.float32)


def checkerboard(n: int, seed: int) -> torch.Tensor:
    """(n, 2) uniform samples on the dark squares of a 4 x 4 board over [-2, 2]^2."""
    rng = np.random.default_rng(seed)
    cell = rng.integers(0, 8, n)
    column = cell // 2
    row = 2 * (cell % 2) + column % 2
    points = np.stack([column, row], axis=1) + rng.uniform(0, 1, (n, 2)) - 2.0
    return torch.tensor(points, dtype=torch.float32)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, seed: int = 0) -> float:
    """Sliced Wasserstein-2 distance (POT, 200 projections) between two sample sets."""
    return float(ot.sliced_wasserstein_distance(a.double().numpy(), b.double().numpy(),
                                                n_projections=200, seed=seed))


@pytest.fixture(params=["eight_gaussians", "checkerboard"])
def toy_distribution(request):
    """(name, sampler) for each toy distribution."""
    return request.param, {"eight_gaussians": eight_gaussians,
                           "checkerboard": checkerboard}[request.param]
