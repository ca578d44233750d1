"""Each task's headline metric orders the ceiling and the floors (issue: discrimination shown).

Small configuration: 64^3 synthskull, 80 real training skulls through a pca-24
representation, the 30 next skulls as test set (60 implant cases), training
sets of 40 skulls at 3 seeds:

- ``oracle-rep``: fresh subjects (another dataset seed) encoded and decoded;
- ``gaussian``: the maximum-likelihood Gaussian of the training latents, decoded;
- ``mean-skull``: the mean training latent repeated, decoded.

Measured (seeds 0, 1, 2): implant Dice oracle-rep 0.766 / 0.727 / 0.754,
gaussian 0.654 / 0.659 / 0.591, mean-skull 0.292 at every seed; the smallest
oracle-rep - gaussian gap at one seed is 0.068, so the margins below are about
half the measured gaps. Alignment's Frankfort error: oracle-rep 10.3 / 10.3 /
9.6 deg, gaussian 11.1 / 11.4 / 9.7, mean-skull 19.0 / 17.8 / 17.6. Alignment
separates the mean skull from both, by 7 deg or more, but not the gaussian from
oracle-rep (at most 1 deg here, and within the seed interval on the quick preset:
README, Downstream tasks), so only that order is asserted; it is a finding, not
a failure of this test.
"""

import numpy as np
import pytest

from bench.data.synthskull import make_dataset
from bench.representations import get_representation
from downstream.protocol import DownstreamConfig, train_and_evaluate
from methods.base import FitConfig
from methods.registry import create_method

N_TRAIN, N_TEST, N_SAMPLES, SEEDS = 80, 30, 40, (0, 1, 2)
CONFIG = DownstreamConfig(params={"alignment": {"steps": 300}})
IMPLANT_MARGIN = 0.03
MEAN_SKULL_DICE_MARGIN = 0.2
MEAN_SKULL_FRANKFORT_MARGIN_DEG = 4.0


@pytest.fixture(scope="module")
def headline() -> dict[tuple[str, int], dict[str, float]]:
    """(training set, seed) -> the tasks' metric values."""
    real = make_dataset(N_TRAIN + N_TEST, 64, seed=0, workers=2)
    fresh = make_dataset(N_SAMPLES * len(SEEDS), 64, seed=1, workers=2).volumes
    train, test = real.volumes[:N_TRAIN], real.select(np.arange(N_TRAIN, N_TRAIN + N_TEST))
    representation = get_representation("pca", n_components=24).fit(train)
    latents = representation.encode(train)
    found = {}
    for seed in SEEDS:
        subjects = fresh[seed * N_SAMPLES:(seed + 1) * N_SAMPLES]
        sets = {"oracle-rep": representation.decode(representation.encode(subjects))}
        for name in ("gaussian", "mean-skull"):
            method = create_method(name)
            method.fit(latents, None, FitConfig(), seed)
            sets[name] = representation.decode(method.sample(N_SAMPLES, 1, seed).samples)
        for name, volumes in sets.items():
            rows = train_and_evaluate("synthetic", volumes, test, seed, CONFIG).rows
            found[name, seed] = {value.name: value.value for _, value in rows}
    return found


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_implant_dice_orders_mean_skull_gaussian_oracle_rep(headline, seed):
    dice = {name: headline[name, seed]["implant-dice"]
            for name in ("mean-skull", "gaussian", "oracle-rep")}
    assert dice["oracle-rep"] > dice["gaussian"] + IMPLANT_MARGIN, dice
    assert dice["gaussian"] > dice["mean-skull"] + MEAN_SKULL_DICE_MARGIN, dice


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_alignment_frankfort_error_is_worst_from_the_mean_skull(headline, seed):
    error = {name: headline[name, seed]["align-frankfort-deg"]
             for name in ("mean-skull", "gaussian", "oracle-rep")}
    worse_of_the_others = max(error["gaussian"], error["oracle-rep"])
    assert error["mean-skull"] > worse_of_the_others + MEAN_SKULL_FRANKFORT_MARGIN_DEG, error
