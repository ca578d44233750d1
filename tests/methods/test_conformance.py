"""The contract that every registered method keeps, checked on each of them.

Parametrized over every method registered by ``import methods`` or by an
installed package's ``bench.methods`` entry point, plus the toy third-party
method of ``toy_plugin.py``, which is loaded the way a user loads
one (``load_plugin``, as ``bench --plugin toy_plugin`` does) and then goes
through exactly the same checks. Budgets are tiny: the point is the contract
(report, errors, shapes, determinism, batching, save/load), not quality.
"""

import dataclasses
import functools

import pytest
import torch

import methods  # noqa: F401  (registers the built-in methods)
from bench.errors import BenchError
from bench.training import TrainConfig
from methods import registry
from methods.backbones import BackboneConfig
from methods.base import FitConfig, FitReport, Method, SampleResult

TOY = "toy-diagonal"
registry.load_entry_points()
REGISTERED = sorted(registry.METHODS)
LATENT_SHAPE = (8,)
VOXEL_SHAPE = (1, 8, 8, 8)
VOXEL_METHODS = ["ddpm", "gaussian", "train-copy", TOY]  # cheap enough on 8^3 grids
CONFIG = FitConfig(
    backbone=BackboneConfig(width=32, depth=1, time_embedding=16, unet_channels=(8, 8),
                            unet_attention=(False, False), unet_head_channels=8,
                            unet_norm_groups=8),
    train=TrainConfig(steps=30, batch_size=16, warmup_steps=5))
VOXEL_CONFIG = dataclasses.replace(CONFIG, train=TrainConfig(steps=3, batch_size=4,
                                                             warmup_steps=1))
SMALL = {"rf2": {"reflow_pairs": 64, "reflow_steps": 4}}  # rf2's second stage, kept tiny
SEED = 3


@pytest.fixture(scope="module", autouse=True)
def toy_plugin_loaded(isolated_methods):
    """Load the toy plugin into the registry, for this module only."""
    with isolated_methods():
        registry.load_plugin("toy_plugin")
        yield
        _fitted.cache_clear()


def training_data(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """64 samples of a correlated, shifted Gaussian (latent) or of random voxels in {-1, 1}."""
    generator = torch.Generator().manual_seed(seed)
    if len(shape) == 1:
        mixing = torch.randn(shape[0], shape[0], generator=generator) / shape[0] ** 0.5
        return torch.randn(64, *shape, generator=generator) @ mixing + 0.5
    return torch.randint(0, 2, (64, *shape), generator=generator).float() * 2 - 1


def make(name: str) -> Method:
    return registry.create_method(name, **SMALL.get(name, {}))


@dataclasses.dataclass
class Fit:
    method: Method
    report: FitReport
    params_before: object
    params_snapshot: dict


@functools.lru_cache(maxsize=None)
def _fitted(name: str, shape: tuple[int, ...]) -> Fit:
    """``name`` fitted once per module on ``training_data(shape)``."""
    method = make(name)
    before, snapshot = method.params, dataclasses.asdict(method.params)
    config = CONFIG if len(shape) == 1 else VOXEL_CONFIG  # MONAI's UNet is slow on a CPU
    report = method.fit(training_data(shape), None, config, seed=SEED)
    return Fit(method, report, before, snapshot)


def fitted(name: str, shape: tuple[int, ...] = LATENT_SHAPE) -> Method:
    return _fitted(name, shape).method


@pytest.fixture(params=REGISTERED + [TOY])
def name(request) -> str:
    return request.param


def test_every_method_is_listed_in_the_registry(name):
    cls = registry.get_method(name)
    assert issubclass(cls, Method) and cls.name == name
    assert cls.description, "bench list needs a one-line description"
    assert dataclasses.is_dataclass(cls.Params)


def test_fit_returns_a_report_with_name_and_seed(name):
    report = _fitted(name, LATENT_SHAPE).report
    assert isinstance(report, FitReport)
    assert report.method == name and report.seed == SEED
    assert report.steps >= 0 and report.wall_time_s >= 0


def test_sample_before_fit_is_refused(name, tmp_path):
    method = make(name)
    with pytest.raises(BenchError, match="not fitted"):
        method.sample(3, 2, seed=0)
    with pytest.raises(BenchError, match="not fitted"):
        method.save(tmp_path / "unfitted.pt")


def test_samples_have_the_data_shape_and_an_integer_nfe(name):
    result = fitted(name).sample(5, 4, seed=0)
    assert isinstance(result, SampleResult)
    assert result.samples.shape == (5, *LATENT_SHAPE)
    assert result.samples.dtype == torch.float32
    assert torch.isfinite(result.samples).all()
    assert isinstance(result.nfe, int) and result.nfe >= 0


@pytest.mark.parametrize("voxel_name", VOXEL_METHODS)
def test_samples_have_the_voxel_shape(voxel_name):
    result = fitted(voxel_name, VOXEL_SHAPE).sample(2, 2, seed=0)
    assert result.samples.shape == (2, *VOXEL_SHAPE)
    assert torch.isfinite(result.samples).all()
    assert isinstance(result.nfe, int) and result.nfe >= 0


def test_same_seed_gives_bitwise_identical_fits(name):
    again = make(name)
    again.fit(training_data(LATENT_SHAPE), None, CONFIG, seed=SEED)
    first = fitted(name).sample(6, 3, seed=1).samples
    assert torch.equal(again.sample(6, 3, seed=1).samples, first)


def test_sample_i_does_not_depend_on_n(name):
    method = fitted(name)
    three = method.sample(3, 3, seed=7).samples
    assert torch.equal(method.sample(5, 3, seed=7).samples[:3], three)
    assert torch.equal(method.sample(1, 3, seed=7).samples[0], three[0])


def test_sampling_seeds_differ(name):
    method = fitted(name)
    assert not torch.equal(method.sample(6, 3, seed=1).samples, method.sample(6, 3, seed=2).samples)


def test_save_and_load_give_identical_samples(name, tmp_path):
    method = fitted(name)
    method.save(tmp_path / "method.pt")
    for loader in (Method, type(method)):
        loaded = loader.load(tmp_path / "method.pt")
        assert type(loaded) is type(method) and loaded.params == method.params
        assert torch.equal(loaded.sample(4, 3, seed=5).samples, method.sample(4, 3, seed=5).samples)


def test_loading_into_another_method_is_refused(name, tmp_path):
    fitted(name).save(tmp_path / "method.pt")
    other = next(cls for key, cls in registry.METHODS.items() if key != name)
    with pytest.raises(BenchError, match=name):
        other.load(tmp_path / "method.pt")


def test_fit_leaves_the_hyperparameters_unchanged(name):
    fit = _fitted(name, LATENT_SHAPE)
    assert fit.method.params is fit.params_before
    assert dataclasses.asdict(fit.method.params) == fit.params_snapshot


def test_too_little_training_data_is_refused(name):
    with pytest.raises(BenchError, match="at least 2"):
        make(name).fit(torch.zeros(1, *LATENT_SHAPE), None, CONFIG, seed=0)
