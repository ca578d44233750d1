"""Flow matching methods (otfm, cfm, sbcfm, rf2) and their parts.

The toy fits are small (a 2-block MLP of width 64, 600 steps) and shared by
the tests of a module through ``fitted``; thresholds were set from measured
values with margin (measurements in the comments: 2-core CPU, torch 2.13).
"""

import functools
import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

import methods.flow_matching  # noqa: F401  (registers the methods)
from bench.core.errors import BenchError
from bench.core.training import TrainConfig
from methods.backbones import BackboneConfig
from methods.base import FitConfig, Method
from methods.flow_matching import (STAGES, BrownianBridgePath, ConstantNoisePath,
                                   ExactOTCoupling, FlowMatchingLoss, IndependentCoupling,
                                   SinkhornCoupling, VelocityField, integrate, squared_distances,
                                   straightness)
from methods.base import METHODS
from methods.registry import create_method
from conftest import checkerboard, eight_gaussians, sliced_wasserstein

FLOW_METHODS = ["otfm", "cfm", "sbcfm", "rf2"]
TOY = {"eight_gaussians": eight_gaussians, "checkerboard": checkerboard}
TOY_CONFIG = FitConfig(
    backbone=BackboneConfig(kind="mlp", width=64, depth=2, time_embedding=16),
    train=TrainConfig(steps=600, batch_size=128, learning_rate=3e-3, warmup_steps=50,
                      ema_decay=0.99))
N_TRAIN, N_EVAL = 2000, 2000


@functools.lru_cache(maxsize=None)
def fitted(name: str, toy: str) -> Method:
    """``name`` fitted on 2,000 points of toy distribution ``toy`` (cached for the module)."""
    params = {"reflow_pairs": 2000} if name == "rf2" else {}
    method = create_method(name, **params)
    method.fit(TOY[toy](N_TRAIN, seed=0), None, TOY_CONFIG, seed=0)
    return method


def reference(toy: str) -> torch.Tensor:
    """Held-out points of the toy distribution, not the training set."""
    return TOY[toy](N_EVAL, seed=1)


def sw_at(name: str, toy: str, steps: int, seeds=(11, 12)) -> float:
    """Sliced Wasserstein to the reference of euler samples, averaged over sampling seeds."""
    method = fitted(name, toy)
    return float(np.mean([sliced_wasserstein(reference(toy),
                                             method.sample(N_EVAL, steps, seed).samples)
                          for seed in seeds]))


def noise_sw(toy: str) -> float:
    noise = torch.randn(N_EVAL, 2, generator=torch.Generator().manual_seed(7))
    return sliced_wasserstein(reference(toy), noise)


def test_importing_the_package_registers_the_four_methods():
    assert set(FLOW_METHODS) <= set(METHODS.classes)
    for name in FLOW_METHODS:
        assert METHODS.get(name).description


# --- learning the toy distributions -------------------------------------------------------

# Sliced W2 to held-out points at 50 Euler steps, mean of 2 sampling seeds. Measured:
#   eight_gaussians: otfm 0.174, cfm 0.169, sbcfm 0.180, rf2 0.173; standard normal noise
#       0.56; a second sample of the distribution itself 0.09 to 0.15 (the floor).
#   checkerboard: otfm 0.079, cfm 0.086, sbcfm 0.082, rf2 0.086; noise 0.25; floor 0.04
#       to 0.08.
SW_THRESHOLD = {"eight_gaussians": 0.25, "checkerboard": 0.13}


@pytest.mark.slow
@pytest.mark.parametrize("name", FLOW_METHODS)
def test_learns_the_toy_distribution(name, toy_distribution):
    toy, _ = toy_distribution
    distance = sw_at(name, toy, steps=50)
    assert distance < SW_THRESHOLD[toy], f"{name} on {toy}: SW {distance:.3f}"
    assert distance < 0.5 * noise_sw(toy)


@pytest.mark.slow
def test_otfm_needs_fewer_steps_than_cfm(toy_distribution):
    # Measured SW at 2 Euler steps: eight_gaussians otfm 0.176, cfm 0.449; checkerboard
    # otfm 0.083, cfm 0.513 (at 1 step: 0.20 against 1.22, and 0.09 against 1.05).
    toy, _ = toy_distribution
    otfm, cfm = sw_at("otfm", toy, steps=2), sw_at("cfm", toy, steps=2)
    assert otfm < 0.5 * cfm
    assert otfm < SW_THRESHOLD[toy]


@pytest.mark.slow
def test_otfm_sbcfm_and_rf2_paths_are_straighter_than_cfm(toy_distribution):
    # Liu et al.'s S (50 Euler steps, 1,000 trajectories), measured:
    #   eight_gaussians: cfm 1.26, otfm 0.015, sbcfm 0.023, rf2 0.0024
    #   checkerboard:    cfm 1.00, otfm 0.0038, sbcfm 0.0054, rf2 0.0012
    toy, _ = toy_distribution
    noise = torch.randn(1000, 2, generator=torch.Generator().manual_seed(3))
    s = {name: straightness(fitted(name, toy).network_, noise, steps=50)
         for name in FLOW_METHODS}
    for name in ("otfm", "sbcfm", "rf2"):
        assert s[name] < 0.1 * s["cfm"], s


@pytest.mark.slow
def test_fit_report_records_the_coupling_and_both_reflow_stages():
    data = eight_gaussians(256, seed=0)
    small = FitConfig(backbone=TOY_CONFIG.backbone,
                      train=TrainConfig(steps=20, batch_size=64, warmup_steps=5))
    otfm = create_method("otfm").fit(data, None, small, seed=0)
    assert otfm.extra["mean_coupled_cost"] < 0.5 * otfm.extra["mean_independent_cost"]
    assert otfm.extra["coupling_seconds"] > 0
    rf2 = create_method("rf2", reflow_pairs=64, reflow_steps=5).fit(data, None, small, seed=0)
    assert rf2.steps == 40 and len(rf2.losses) == 40
    assert rf2.extra["stage_1"]["steps"] == rf2.extra["stage_2"]["steps"] == 20
    assert rf2.extra["reflow_pairs"] == 64 and rf2.extra["reflow_nfe"] == 5


# --- sampling: NFE, determinism, save/load ------------------------------------------------

@pytest.mark.parametrize("solver", ["euler", "midpoint", "heun2", "heun3", "rk4"])
def test_fixed_grid_solvers_report_their_network_evaluations(solver):
    method = _with_params(fitted("otfm", "eight_gaussians"), solver=solver)
    result = method.sample(8, steps=3, seed=0)
    assert result.nfe == 3 * STAGES[solver]


def test_dopri5_reports_the_evaluations_it_made():
    method = _with_params(fitted("otfm", "eight_gaussians"), solver="dopri5", atol=1e-4,
                          rtol=1e-4)
    method.network_ = counted = CountingNetwork(method.network_)
    one = method.sample(64, steps=1, seed=0)
    assert one.nfe == counted.calls > 6  # an adaptive solve, not one evaluation per step
    many = method.sample(64, steps=50, seed=0)
    assert many.nfe == one.nfe and torch.equal(one.samples, many.samples)  # steps is ignored


def test_integrate_solves_a_known_ode_to_the_solvers_order():
    # dx/dt = x from x(0) = 1: x(1) = e.
    x_0 = torch.ones(4, 3, dtype=torch.float64)
    errors = {}
    for solver in ("euler", "midpoint", "rk4", "dopri5"):
        field = VelocityField(lambda x, t: x)
        solution = integrate(field, x_0, steps=10, solver=solver, atol=1e-9, rtol=1e-9)
        errors[solver] = float((solution.x_1 - np.e).abs().max())
        assert solution.nfe == field.nfe
    assert errors["euler"] > 0.1 > errors["midpoint"] > 1e-3 > errors["rk4"]
    assert errors["dopri5"] < 1e-7


def test_sampling_is_deterministic_and_sample_i_does_not_depend_on_n():
    method = fitted("otfm", "checkerboard")
    first = method.sample(17, steps=4, seed=3).samples
    assert torch.equal(first, method.sample(17, steps=4, seed=3).samples)
    assert torch.equal(first[:5], method.sample(5, steps=4, seed=3).samples)
    assert not torch.equal(first, method.sample(17, steps=4, seed=4).samples)


def test_fitting_twice_with_one_seed_gives_identical_samples():
    data = checkerboard(300, seed=0)
    small = FitConfig(backbone=TOY_CONFIG.backbone,
                      train=TrainConfig(steps=15, batch_size=64, warmup_steps=5))
    for name in FLOW_METHODS:
        params = {"reflow_pairs": 32, "reflow_steps": 4} if name == "rf2" else {}
        samples = []
        for _ in range(2):
            method = create_method(name, **params)
            method.fit(data, None, small, seed=5)
            samples.append(method.sample(9, steps=3, seed=1).samples)
        assert torch.equal(samples[0], samples[1]), name


def test_a_second_fit_resumes_both_reflow_stages_from_their_checkpoints(tmp_path):
    data = checkerboard(300, seed=0)
    config = FitConfig(backbone=TOY_CONFIG.backbone,
                       train=TrainConfig(steps=10, batch_size=32, warmup_steps=2,
                                         checkpoint_every=5),
                       checkpoint_dir=tmp_path)
    fits = [create_method("rf2", reflow_pairs=32, reflow_steps=4) for _ in range(2)]
    reports = [method.fit(data, None, config, seed=1) for method in fits]
    assert {path.parent.name for path in tmp_path.glob("*/*.pt")} == {"stage_1", "stage_2"}
    assert reports[0].extra["stage_2"]["resumed_from"] == 0
    assert reports[1].extra["stage_1"]["resumed_from"] == 10
    assert reports[1].extra["stage_2"]["resumed_from"] == 10
    assert torch.equal(fits[0].sample(6, steps=2, seed=0).samples,
                       fits[1].sample(6, steps=2, seed=0).samples)


@pytest.mark.parametrize("name", FLOW_METHODS)
def test_save_and_load_give_identical_samples(name, tmp_path):
    method = fitted(name, "eight_gaussians")
    method.save(tmp_path / "method.pt")
    loaded = Method.load(tmp_path / "method.pt")
    assert type(loaded) is type(method) and loaded.params == method.params
    assert torch.equal(loaded.sample(20, steps=5, seed=2).samples,
                       method.sample(20, steps=5, seed=2).samples)


# --- parameters ---------------------------------------------------------------------------

def test_an_unknown_solver_is_refused_with_the_valid_ones():
    with pytest.raises(BenchError, match="unknown ODE solver 'heun'") as error:
        create_method("otfm", solver="heun")
    for solver in STAGES:
        assert solver in str(error.value)


@pytest.mark.parametrize("name, params", [("cfm", {"sigma_min": -0.1}),
                                          ("sbcfm", {"entropic_reg": 0.0}),
                                          ("sbcfm", {"bridge_sigma": -1.0}),
                                          ("rf2", {"reflow_pairs": 0}),
                                          ("otfm", {"sample_batch_size": 0})])
def test_invalid_parameters_are_refused(name, params):
    with pytest.raises(BenchError, match=next(iter(params))):
        create_method(name, **params)


def test_sampling_before_fit_is_refused():
    with pytest.raises(BenchError, match="not fitted"):
        create_method("otfm").sample(4, steps=2, seed=0)


# --- couplings ----------------------------------------------------------------------------

@pytest.mark.parametrize("solver", ["assignment", "emd"])
@pytest.mark.parametrize("n, dim", [(5, 2), (16, 3), (40, 8), (64, 64)])
def test_exact_ot_coupling_matches_linear_sum_assignment(solver, n, dim):
    generator = torch.Generator().manual_seed(n * dim)
    x_0 = torch.randn(n, dim, generator=generator)
    x_1 = torch.rand(n, dim, generator=generator) * 3 + 1
    pairs = ExactOTCoupling(solver).couple(x_0, x_1, generator)
    assert torch.equal(pairs.x_0, x_0)
    cost = squared_distances(x_0, x_1).numpy()
    rows, columns = linear_sum_assignment(cost)
    # x_1 is re-ordered, not resampled: a permutation of the batch
    assert sorted(map(tuple, pairs.x_1.tolist())) == sorted(map(tuple, x_1.tolist()))
    expected = x_1[torch.as_tensor(columns[np.argsort(rows)])]
    assert torch.equal(pairs.x_1, expected)  # a.s. unique optimum for continuous data
    coupled_cost = ((pairs.x_0 - pairs.x_1) ** 2).sum().item()
    assert coupled_cost == pytest.approx(cost[rows, columns].sum(), rel=1e-6)


def test_exact_ot_coupling_is_the_best_of_all_permutations():
    generator = torch.Generator().manual_seed(0)
    x_0, x_1 = torch.randn(6, 2, generator=generator), torch.randn(6, 2, generator=generator)
    cost = squared_distances(x_0, x_1).numpy()
    best = min(sum(cost[i, p[i]] for i in range(6)) for p in itertools.permutations(range(6)))
    for solver in ("assignment", "emd"):
        sigma = ExactOTCoupling(solver).permutation(cost)
        assert cost[np.arange(6), sigma].sum() == pytest.approx(best, rel=1e-12)


def test_squared_distances_match_a_direct_computation():
    generator = torch.Generator().manual_seed(1)
    x_0, x_1 = torch.randn(7, 2, 3, generator=generator), torch.randn(7, 2, 3, generator=generator)
    direct = ((x_0.double()[:, None] - x_1.double()[None]) ** 2).sum((2, 3)).numpy()
    np.testing.assert_allclose(squared_distances(x_0, x_1), direct, rtol=1e-12, atol=1e-12)


def test_sinkhorn_coupling_lies_between_independent_and_exact_ot():
    generator = torch.Generator().manual_seed(2)
    x_0 = torch.randn(128, 4, generator=generator)
    x_1 = eight_gaussians(128, seed=3)[:, [0, 1, 0, 1]]
    cost = squared_distances(x_0, x_1)
    plan = SinkhornCoupling(relative_reg=0.05).plan(cost)
    np.testing.assert_allclose(plan.sum(dim=1), np.full(128, 1 / 128), rtol=1e-9)
    np.testing.assert_allclose(plan.sum(dim=0), np.full(128, 1 / 128), rtol=1e-3)

    def mean_cost(coupling):
        pairs = coupling.couple(x_0, x_1, torch.Generator().manual_seed(4))
        return float(((pairs.x_0 - pairs.x_1) ** 2).sum(1).mean())

    exact, independent = mean_cost(ExactOTCoupling()), mean_cost(IndependentCoupling())
    sharp, blurred = mean_cost(SinkhornCoupling(0.01)), mean_cost(SinkhornCoupling(1.0))
    assert exact < sharp < blurred < independent
    assert sharp < exact + 0.2 * (independent - exact)
    again = SinkhornCoupling(0.05).couple(x_0, x_1, torch.Generator().manual_seed(4))
    assert torch.equal(again.x_1, SinkhornCoupling(0.05).couple(
        x_0, x_1, torch.Generator().manual_seed(4)).x_1)


# --- paths and the loss -------------------------------------------------------------------

@pytest.mark.parametrize("path", [ConstantNoisePath(0.05), BrownianBridgePath(0.3)],
                         ids=["constant", "bridge"])
def test_path_velocity_is_the_time_derivative_of_x_t(path):
    generator = torch.Generator().manual_seed(0)
    x_0, x_1, eps = (torch.randn(50, 3, generator=generator, dtype=torch.float64)
                     for _ in range(3))
    t = torch.rand(50, generator=generator, dtype=torch.float64) * 0.9 + 0.05
    h = 1e-6
    ahead, behind = path.sample(x_0, x_1, t + h, eps), path.sample(x_0, x_1, t - h, eps)
    derivative = (ahead.x_t - behind.x_t) / (2 * h)
    np.testing.assert_allclose(path.sample(x_0, x_1, t, eps).velocity, derivative, rtol=1e-6,
                               atol=1e-6)


def test_paths_join_noise_to_data():
    generator = torch.Generator().manual_seed(0)
    x_0, x_1, eps = (torch.randn(10, 2, generator=generator) for _ in range(3))
    zeros, ones = torch.zeros(10), torch.ones(10)
    bridge = BrownianBridgePath(0.5)
    assert torch.equal(bridge.sample(x_0, x_1, zeros, eps).x_t, x_0)
    assert torch.equal(bridge.sample(x_0, x_1, ones, eps).x_t, x_1)
    constant = ConstantNoisePath(0.0)
    assert torch.equal(constant.sample(x_0, x_1, ones, eps).x_t, x_1)
    assert torch.equal(constant.sample(x_0, x_1, zeros, eps).velocity, x_1 - x_0)


def test_loss_regresses_onto_the_conditional_velocity():
    # For the network that outputs the true conditional velocity of given pairs the loss is 0.
    generator = torch.Generator().manual_seed(0)
    x_0, x_1 = torch.randn(32, 2, generator=generator), torch.randn(32, 2, generator=generator)
    loss = FlowMatchingLoss(ConstantNoisePath(0.0), IndependentCoupling(), paired=True)
    value = loss(lambda x_t, t: x_1 - x_0, torch.stack([x_0, x_1], 1), generator)
    assert value.item() == 0.0
    assert loss(lambda x_t, t: x_1 - x_0 + 1, torch.stack([x_0, x_1], 1), generator) == 1.0
    assert loss.stats.batches == 2


class CountingNetwork(torch.nn.Module):
    """Wraps a network and counts its calls."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network, self.calls = network, 0

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.network(x, t)


def _with_params(method: Method, **params) -> Method:
    """A fitted copy of ``method`` with sampling parameters replaced."""
    copy = type(method)(method.params, **params)
    copy.data_shape_, copy.fitted_ = method.data_shape_, True
    copy.network_, copy.backbone_ = method.network_, method.backbone_
    return copy
