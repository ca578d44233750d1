"""ddpm: agreement with MONAI's schedulers, respacing, per-row noise, and what it learns.

The toy fits (an MLP of width 256 and depth 2, 1,000 steps of 256, about 15 s
each on one core) are shared through ``fitted``. The thresholds were set from
measured values with margin; the measurements are in the comments (2-core
CPU, torch 2.13, MONAI 1.6; reproducible bitwise for a fixed thread count,
and to within the margins across thread counts).
"""

import functools

import pytest
import torch
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler
from torch import nn

import methods  # noqa: F401  (registers the built-in methods)
from bench.core.errors import BenchError
from bench.core.training import TrainConfig
from methods.backbones import BackboneConfig
from methods.base import FitConfig
from methods.diffusion import (DDPM, TRAIN_TIMESTEPS, ancestral_step, ddim_step, predict_x0,
                               precise_alphas_cumprod)
from methods.registry import create_method
from conftest import checkerboard, eight_gaussians, sliced_wasserstein

MONAI_NAME = {"linear": "linear_beta", "cosine": "cosine"}
TOYS = {"eight_gaussians": eight_gaussians, "checkerboard": checkerboard}
TOY_CONFIG = FitConfig(
    backbone=BackboneConfig(kind="mlp", width=256, depth=2),
    train=TrainConfig(steps=1000, batch_size=256, learning_rate=2e-3, warmup_steps=100,
                      ema_decay=0.99))
N_TRAIN, N_EVAL = 4000, 1000


def alphas_cumprod(schedule: str) -> torch.Tensor:
    return DDPMScheduler(schedule=MONAI_NAME[schedule]).alphas_cumprod


# ----------------------------------------------------------- the exact network

class ExactEpsilon(nn.Module):
    """The optimal epsilon predictor E[epsilon | x_t] for 1-D data x_0 ~ N(m, s^2).

    With x_t = sqrt(a) x_0 + sqrt(1 - a) epsilon, (x_t, epsilon) is jointly
    Gaussian, so E[epsilon | x_t] = sqrt(1 - a) (x_t - sqrt(a) m) / (a s^2 + 1 - a).
    """

    def __init__(self, schedule: str, m: float, s: float) -> None:
        super().__init__()
        self.table, self.m, self.s = alphas_cumprod(schedule), m, s

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self.table[(t * TRAIN_TIMESTEPS).round().long()][:, None]
        return (1 - a).sqrt() * (x - a.sqrt() * self.m) / (a * self.s**2 + 1 - a)


def exact_ddpm(sampler: str, schedule: str = "linear", m: float = 1.5, s: float = 0.3,
               clip_sample: bool = False) -> DDPM:
    """A ddpm whose network is the exact one for N(m, s^2): errors are the sampler's alone."""
    method = create_method("ddpm", sampler=sampler, schedule=schedule, clip_sample=clip_sample)
    method.data_shape_, method.network_ = (1,), ExactEpsilon(schedule, m, s)
    method.fitted_ = True
    return method


# ----------------------------------------------------------- MONAI agreement

@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_the_schedule_tables_are_monais(schedule):
    scheduler = create_method("ddpm", schedule=schedule)._scheduler()
    table = torch.tensor(precise_alphas_cumprod(scheduler), dtype=torch.float64)
    torch.testing.assert_close(table, alphas_cumprod(schedule).double(), rtol=2e-5, atol=0)


def test_how_close_to_pure_noise_each_schedule_ends():
    # Documented in methods/diffusion.py: the cosine schedule ends far closer to
    # pure noise, which makes epsilon prediction ill-conditioned at t = T - 1.
    assert alphas_cumprod("linear")[-1] == pytest.approx(4.04e-5, rel=0.01)
    assert alphas_cumprod("cosine")[-1] == pytest.approx(2.43e-9, rel=0.01)


@pytest.mark.parametrize("steps", [1, 2, 3, 7, 10, 50, 999, 1000])
def test_the_respaced_grid_is_monais_and_has_steps_entries(steps):
    grid = create_method("ddpm").timesteps(steps)
    monai = DDIMScheduler()
    monai.set_timesteps(steps)
    assert grid == monai.timesteps.tolist()
    assert len(grid) == steps and grid[0] == TRAIN_TIMESTEPS - 1
    assert all(a > b for a, b in zip(grid, grid[1:]))
    assert steps == 1 or grid[-1] == 0


def test_more_steps_than_the_training_chain_are_refused():
    with pytest.raises(BenchError, match="steps must be at most 1000"):
        exact_ddpm("ddim").sample(2, 1001, seed=0)


# MONAI computes its steps in float32, where 1 - alpha_bar near t = 0 keeps only
# about four digits; ours are computed in double precision. Hence the 1e-4.
MONAI_TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("t", [1, 500, 999])
def test_ancestral_step_is_monais_ddpm_step_on_the_full_chain(schedule, clip, t):
    """With every timestep (t -> t - 1) the respaced update is MONAI's DDPM step."""
    generator = torch.Generator().manual_seed(t)
    x, epsilon = torch.randn(2, 16, 3, generator=generator)
    monai = DDPMScheduler(schedule=MONAI_NAME[schedule], clip_sample=clip)
    expected, _ = monai.step(epsilon, t, x, generator=torch.Generator().manual_seed(1))
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))  # MONAI's draw
    table = precise_alphas_cumprod(monai)
    ours = ancestral_step(x, predict_x0(x, epsilon, table[t], clip), table[t], table[t - 1], z)
    torch.testing.assert_close(ours, expected, **MONAI_TOLERANCE)


def test_the_last_ancestral_step_adds_no_noise_and_returns_x0_hat():
    monai = DDPMScheduler(clip_sample=False)
    x, epsilon = torch.randn(2, 8, 3, generator=torch.Generator().manual_seed(0))
    expected, _ = monai.step(epsilon, 0, x)
    a_0 = precise_alphas_cumprod(monai)[0]
    x0_hat = predict_x0(x, epsilon, a_0, False)
    ours = ancestral_step(x, x0_hat, a_0, 1.0, None)
    assert torch.equal(ours, x0_hat)
    torch.testing.assert_close(ours, expected, rtol=1e-3, atol=1e-3)  # MONAI: 3.5e-4 off


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("t", [555, 50])
def test_ddim_step_is_monais_where_monai_picks_the_right_previous_step(schedule, t):
    """MONAI's DDIM step goes to t - T // S; we match it when given that same target."""
    monai = DDIMScheduler(schedule=MONAI_NAME[schedule], clip_sample=False)
    monai.set_timesteps(10)  # MONAI steps t -> t - 100 (-50 < 0: alpha_bar = 1)
    x, epsilon = torch.randn(2, 8, 3, generator=torch.Generator().manual_seed(t))
    expected, _ = monai.step(epsilon, t, x)
    table = precise_alphas_cumprod(monai)
    a_s = table[t - 100] if t >= 100 else 1.0
    ours = ddim_step(predict_x0(x, epsilon, table[t], False), epsilon, a_s)
    torch.testing.assert_close(ours, expected, **MONAI_TOLERANCE)


# ----------------------------------------------------------- respacing

@pytest.mark.parametrize("sampler", ["ddim", "ancestral"])
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_respaced_sampling_with_the_exact_network(sampler, schedule):
    """Every budget lands on the data mean; the spread converges as steps grow.

    Measured (m = 1.5, s = 0.3, 1,000 samples), std at 5 / 20 / 1000 steps:
    ancestral 0.09 / 0.20 / 0.30 (linear) and 0.16 / 0.23 / 0.30 (cosine);
    ddim 0.10 / 0.23 / 0.29 and 0.16 / 0.26 / 0.29. Few steps shrink the
    spread because every step moves to the posterior mean's estimate; the mean
    is right at every budget (1.49 to 1.51). MONAI's own DDPMScheduler.step,
    which always steps to t - 1, ends at mean 0.03 and std 0.97 on 10 respaced
    steps.
    """
    method = exact_ddpm(sampler, schedule)
    for steps in (5, 20):
        result = method.sample(1000, steps, seed=0)
        assert result.nfe == steps
        assert abs(result.samples.mean().item() - 1.5) < 0.03
    full = method.sample(1000, TRAIN_TIMESTEPS, seed=0).samples
    assert abs(full.mean().item() - 1.5) < 0.03  # standard error 0.0095
    assert abs(full.std().item() - 0.3) < 0.02  # standard error 0.0067


def test_clip_sample_keeps_samples_in_minus_one_one():
    for sampler in ("ddim", "ancestral"):
        unclipped = exact_ddpm(sampler).sample(200, 10, seed=0).samples
        clipped = exact_ddpm(sampler, clip_sample=True).sample(200, 10, seed=0).samples
        assert unclipped.max() > 1.2 and clipped.abs().max() <= 1.0


# ----------------------------------------------------------- randomness

def test_ancestral_noise_is_per_row():
    method = exact_ddpm("ancestral")
    three = method.sample(3, 20, seed=4).samples
    assert torch.equal(method.sample(5, 20, seed=4).samples[:3], three)
    # More rows than one block of 256: row 257 is in the second block.
    many = method.sample(300, 20, seed=4).samples
    assert torch.equal(many[:3], three)
    assert torch.equal(method.sample(258, 20, seed=4).samples[257], many[257])


def test_ancestral_noise_is_fresh_randomness():
    ancestral, ddim = exact_ddpm("ancestral"), exact_ddpm("ddim")
    assert not torch.equal(ancestral.sample(8, 20, seed=0).samples,
                           ancestral.sample(8, 20, seed=1).samples)
    # Same x_T, different trajectories: the step noise is not a copy of x_T's.
    assert not torch.equal(ancestral.sample(8, 20, seed=0).samples,
                           ddim.sample(8, 20, seed=0).samples)


def test_ddim_is_deterministic_given_x_T():
    method = exact_ddpm("ddim")
    assert torch.equal(method.sample(4, 10, seed=2).samples, method.sample(4, 10, seed=2).samples)


# ----------------------------------------------------------- hyperparameters and fit

@pytest.mark.parametrize("params, message", [
    ({"schedule": "quadratic"}, "schedule must be one of linear, cosine; got 'quadratic'"),
    ({"sampler": "dpm"}, "sampler must be one of ddim, ancestral; got 'dpm'"),
    ({"clip_sample": "yes"}, "clip_sample must be true or false"),
])
def test_bad_hyperparameters_are_refused(params, message):
    with pytest.raises(BenchError, match=message):
        create_method("ddpm", **params)


def test_training_does_not_depend_on_the_sampler():
    config = FitConfig(backbone=BackboneConfig(width=16, depth=1),
                       train=TrainConfig(steps=5, batch_size=8))
    train = eight_gaussians(64, seed=0)
    states = []
    for sampler in ("ddim", "ancestral"):
        method = create_method("ddpm", sampler=sampler)
        report = method.fit(train, None, config, seed=0)
        assert len(report.losses) == report.steps == 5 and report.parameter_count > 0
        states.append(method.network_.state_dict())
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])


# ----------------------------------------------------------- what it learns

@functools.lru_cache(maxsize=None)
def fitted(toy: str) -> dict[str, DDPM]:
    """ddpm fitted on a toy distribution, as its ddim and its ancestral variant.

    The sampler does not change training (test above), so the ancestral
    variant reuses the ddim one's network rather than training it again.
    """
    ddim = create_method("ddpm", sampler="ddim")
    ddim.fit(TOYS[toy](N_TRAIN, seed=0), None, TOY_CONFIG, seed=0)
    ancestral = create_method("ddpm", sampler="ancestral")
    ancestral.data_shape_, ancestral.network_ = ddim.data_shape_, ddim.network_
    ancestral.fitted_ = True
    return {"ddim": ddim, "ancestral": ancestral}


def sw(toy: str, sampler: str, steps: int) -> float:
    result = fitted(toy)[sampler].sample(N_EVAL, steps, seed=1)
    assert result.nfe == steps
    return sliced_wasserstein(TOYS[toy](N_EVAL, seed=1), result.samples)


# Sliced Wasserstein to 1,000 held-out points at 50 steps, measured:
# eight_gaussians ddim 0.17, ancestral 0.19; checkerboard ddim 0.105, ancestral
# 0.096. For scale: two independent sets of 1,000 data points are 0.081 and
# 0.051 apart, the gaussian baseline is at 0.45 and 0.21.
THRESHOLD = {("eight_gaussians", "ddim"): 0.28, ("eight_gaussians", "ancestral"): 0.28,
             ("checkerboard", "ddim"): 0.16, ("checkerboard", "ancestral"): 0.16}


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["ddim", "ancestral"])
@pytest.mark.parametrize("toy", sorted(TOYS))
def test_ddpm_learns_the_toy_distributions(toy, sampler):
    assert sw(toy, sampler, 50) < THRESHOLD[toy, sampler]


@pytest.mark.slow
@pytest.mark.parametrize("toy", sorted(TOYS))
def test_ddim_improves_with_steps(toy):
    # Measured at 2 / 10 / 50 steps: eight_gaussians 0.79 / 0.18 / 0.17,
    # checkerboard 1.06 / 0.18 / 0.105.
    assert sw(toy, "ddim", 50) < 0.5 * sw(toy, "ddim", 2)


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["ddim", "ancestral"])
def test_the_gaussian_baseline_is_a_floor_that_ddpm_beats(sampler):
    gaussian = create_method("gaussian")
    gaussian.fit(eight_gaussians(N_TRAIN, seed=0), None, TOY_CONFIG, seed=0)
    reference = eight_gaussians(N_EVAL, seed=1)
    gaussian_sw = sliced_wasserstein(reference, gaussian.sample(N_EVAL, 1, seed=1).samples)
    # Measured 0.45 against ddim 0.17 and ancestral 0.19.
    assert gaussian_sw > 1.5 * sw("eight_gaussians", sampler, 50)
