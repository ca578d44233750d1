"""The contract that every registered method keeps, checked with the library's own checks.

Parametrized over every method registered by ``import methods`` or by an
installed package's ``bench.methods`` entry point, plus the toy third-party
method of ``toy_plugin.py``, which is loaded the way a user loads one
(``load_plugin``, as ``bench --plugin toy_plugin`` does) and then goes through
exactly the same checks (:mod:`bench.conformance`). Budgets are tiny: the
point is the contract, not quality.
"""

import dataclasses

import pytest
import torch

import methods  # noqa: F401  (registers the built-in methods)
from bench.conformance import (METHOD_CHECKS, ContractError, check_method,
                               check_method_sample_index, checks_for)
from bench.core.registry import load_plugin
from bench.core.training import TrainConfig
from methods import registry
from methods.backbones import BackboneConfig
from methods.base import METHODS, FitConfig, Method, SampleResult

TOY = "toy-diagonal"
REGISTERED = METHODS.names()
VOXEL_SHAPE = (1, 8, 8, 8)
VOXEL_METHODS = ["ddpm", "gaussian", "train-copy", TOY]  # cheap enough on 8^3 grids
VOXEL_CONFIG = FitConfig(
    backbone=BackboneConfig(unet_channels=(8, 8), unet_attention=(False, False),
                            unet_head_channels=8, unet_norm_groups=8),
    train=TrainConfig(steps=3, batch_size=4, warmup_steps=1))
SMALL = {"rf2": {"reflow_pairs": 64, "reflow_steps": 4}}  # rf2's second stage, kept tiny


@pytest.fixture(scope="module", autouse=True)
def toy_plugin_loaded(isolated_methods):
    """Load the toy plugin into the registry, for this module only."""
    with isolated_methods():
        load_plugin("toy_plugin")
        yield


def make(name: str) -> Method:
    return registry.create_method(name, **SMALL.get(name, {}))


@pytest.fixture(params=REGISTERED + [TOY])
def name(request) -> str:
    return request.param


def test_every_method_is_listed_in_the_registry(name):
    cls = registry.get_method(name)
    assert issubclass(cls, Method) and cls.name == name
    assert cls.description, "bench list needs a one-line description"
    assert dataclasses.is_dataclass(cls.Params)


BUILT_IN_CASES = [(name, check) for name in REGISTERED
                  for check in checks_for(registry.create_method(name, **SMALL.get(name, {})))]


@pytest.mark.parametrize("method_name, check", BUILT_IN_CASES + [(TOY, c) for c in METHOD_CHECKS],
                         ids=lambda value: getattr(value, "__name__", value))
def test_the_method_contract(method_name, check):
    check(make(method_name))


@pytest.mark.parametrize("voxel_name", VOXEL_METHODS)
def test_samples_have_the_voxel_shape(voxel_name):
    method = make(voxel_name)
    data = torch.randint(0, 2, (16, *VOXEL_SHAPE), generator=torch.Generator().manual_seed(0))
    method.fit(data.float() * 2 - 1, None, VOXEL_CONFIG, seed=0)
    result = method.sample(2, 2, seed=0)
    assert isinstance(result, SampleResult) and result.samples.shape == (2, *VOXEL_SHAPE)
    assert torch.isfinite(result.samples).all()
    assert isinstance(result.nfe, int) and result.nfe >= 0


def test_a_method_that_breaks_the_contract_is_caught():
    """A method whose sample i depends on n fails the check, with a message saying so."""
    cls = METHODS.get(TOY)

    class Shifting(cls):
        description = "toy whose samples move with n (broken on purpose)"

        def _sample(self, n, steps, seed, device):
            result = super()._sample(n, steps, seed, device)
            return SampleResult(result.samples + n, result.nfe)

    METHODS.register("shifting-toy", Shifting)
    try:
        with pytest.raises(ContractError, match="depend only on"):
            check_method_sample_index(Shifting())
        with pytest.raises(ContractError):
            check_method(Shifting())
    finally:
        METHODS.classes.pop("shifting-toy")
