"""Denoising diffusion (DDPM) with an ancestral and a deterministic DDIM sampler.

Training follows Ho et al. 2020 ("Denoising Diffusion Probabilistic Models"):
with T = 1000 steps, a noise schedule beta_1..T and alpha_bar_t = prod (1 - beta),

    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) epsilon,   epsilon ~ N(0, I)   (eq. 4)
    L_simple = || epsilon - epsilon_theta(x_t, t) ||^2                               (eq. 14)

The schedule tables, the forward noising and the respaced timestep grid come
from MONAI's schedulers (``monai.networks.schedulers``): ``schedule="linear"``
is MONAI's ``"linear_beta"`` (beta from 1e-4 to 2e-2) and ``"cosine"`` is
MONAI's ``"cosine"`` (Nichol & Dhariwal 2021). The network is the shared
backbone, called as ``net(x_t, t / T)`` so that its time input lies in [0, 1).

Sampling runs on ``steps`` respaced timesteps tau_1 > ... > tau_S (MONAI's
``set_timesteps``: ``linspace(T - 1, 0, S)`` rounded, so the last one is 0),
one network evaluation per timestep (NFE = steps). The two update rules are
written here from MONAI's schedule (its ``betas``, with alpha_bar recomputed in
double precision) rather than taken from ``DDPMScheduler.step`` /
``DDIMScheduler.step``, because in MONAI 1.6:

* ``DDPMScheduler.step`` always steps from t to t - 1 (it reads
  ``alphas_cumprod[t - 1]`` and ``betas[t]``), so with fewer inference steps
  than training steps it computes the posterior of the wrong timestep pair
  (the sample is left at the noise level of t - 1 and the network is next
  evaluated as if it were at the next grid timestep). It also draws its own
  noise of the whole batch's shape, so sample i would depend on the batch.
* ``DDIMScheduler.step`` takes the previous timestep as t - T // S, which is
  not the next timestep of its own ``set_timesteps`` grid (e.g. S = 10: the
  grid is 999, 888, ... but the step goes 999 -> 899; S = 2: 999 -> 499, then
  the network is evaluated at t = 0).

Here each update goes from tau_k to the next grid timestep s = tau_(k+1)
(alpha_bar_s = 1 after the last one):

* ``ddim`` (Song et al. 2021, eq. 12 with sigma = 0): deterministic,
  x_s = sqrt(alpha_bar_s) x0_hat + sqrt(1 - alpha_bar_s) epsilon_theta.
* ``ancestral`` (Ho et al. 2020, eqs. 6-7 and Algorithm 2, on the respaced
  chain of Nichol & Dhariwal 2021, sec. 4): with beta'_t = 1 - alpha_bar_t /
  alpha_bar_s, x_s ~ N(mu_tilde(x_t, x0_hat), beta_tilde) where
  mu_tilde = sqrt(alpha_bar_s) beta'_t / (1 - alpha_bar_t) x0_hat
           + sqrt(1 - beta'_t) (1 - alpha_bar_s) / (1 - alpha_bar_t) x_t
  and beta_tilde = (1 - alpha_bar_s) / (1 - alpha_bar_t) beta'_t (MONAI's
  "fixed_small" variance). With S = T this is exactly MONAI's DDPM step.

In both, x0_hat = (x_t - sqrt(1 - alpha_bar_t) epsilon_theta) / sqrt(alpha_bar_t)
(eq. 15), clipped to [-1, 1] only when ``clip_sample`` is set.

Randomness: x_T is ``standard_normal(n, shape, seed)``; the ancestral noise of
row i comes from its own generator seeded by (seed, i), so sample i depends on
(seed, i) only. The network is evaluated on fixed-size blocks of rows (padded
with zeros), so that on the CPU even the floating-point results of row i do not
depend on n.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler
from torch import nn

from bench.core.errors import BenchError
from bench.core.training import train_network
from methods.backbones import BackboneConfig, build_backbone
from methods.base import FitConfig, FitReport, Method, Params, SampleResult, standard_normal
from methods.registry import register_method

TRAIN_TIMESTEPS = 1000
"""Diffusion steps T of the training chain; the network sees t / T."""

MONAI_SCHEDULES = {"linear": "linear_beta", "cosine": "cosine"}
"""Our schedule names to the names of MONAI's ``NoiseSchedules``."""

SAMPLERS = ("ddim", "ancestral")

BLOCK_ELEMENTS = 1 << 21
"""Values per network call when sampling: 2^21 (8 MiB of float32) ..."""

MAX_BLOCK_ROWS = {"vector": 256, "grid": 16}
"""... and at most 256 latent vectors or 16 grids (a UNet's activations are much larger)."""

_STEP_NOISE_STREAM = 0x5EED_D1FF
"""Mixed into the seeds of the ancestral noise so it never repeats the x_T noise."""


@dataclass(frozen=True)
class DDPMParams(Params):
    """Hyperparameters of ``ddpm``.

    Attributes:
        schedule: noise schedule, "linear" (Ho et al.) or "cosine" (Nichol & Dhariwal).
            Cosine ends at alpha_bar = 2.4e-9 (linear: 4e-5), so at the first
            sampling steps an error in epsilon_theta is multiplied by up to
            1 / sqrt(alpha_bar) = 2e4 in x0_hat. It needs ``clip_sample``: on
            the toy checkerboard scaled into [-1, 1] it matched linear with
            clipping (sliced Wasserstein 0.04 at 50 DDIM steps) but diverged
            without it (SW > 100 on unscaled toys, any step count). Use linear
            for latents.
        sampler: "ddim" (deterministic, eta = 0) or "ancestral" (stochastic DDPM).
        clip_sample: clip x0_hat to [-1, 1] in every sampling step. Only right for
            data that live in [-1, 1], i.e. the voxel representation; leave it off
            for latents (pca), which are unbounded.
    """

    schedule: str = field(default="linear", metadata={"choices": tuple(MONAI_SCHEDULES)})
    sampler: str = field(default="ddim", metadata={"choices": SAMPLERS})
    clip_sample: bool = False

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            choices = item.metadata.get("choices")
            value = getattr(self, item.name)
            if choices is not None and value not in choices:
                raise BenchError(f"method 'ddpm': {item.name} must be one of "
                                 f"{', '.join(choices)}; got {value!r}")
        if not isinstance(self.clip_sample, bool):
            raise BenchError(f"method 'ddpm': clip_sample must be true or false; got "
                             f"{self.clip_sample!r}")


@register_method("ddpm")
class DDPM(Method):
    """Denoising diffusion with epsilon prediction (Ho et al. 2020) on MONAI's schedules.

    Attributes (after fit):
        network_: the EMA network epsilon_theta(x_t, t / T), in eval mode.
        backbone_: the backbone configuration it was built with.
    """

    description = "denoising diffusion (DDPM, epsilon prediction), DDIM or ancestral sampler"
    Params = DDPMParams
    params: DDPMParams
    trains = True

    def _fit(self, train: torch.Tensor, val: torch.Tensor | None, config: FitConfig, seed: int,
             device: torch.device) -> FitReport:
        scheduler = self._scheduler()
        network = build_backbone(self._data_shape(), config.backbone, seed=seed)
        result = train_network(network, _epsilon_loss(scheduler), train, config.train, seed,
                               device, self.name, checkpoint_dir=config.checkpoint_dir)
        self.network_ = result.ema.eval().requires_grad_(False)
        self.backbone_ = config.backbone
        return FitReport(method=self.name, seed=seed, steps=result.steps, losses=result.losses,
                         wall_time_s=result.wall_time_s,
                         parameter_count=result.parameter_count,
                         extra={"schedule": self.params.schedule})

    @torch.no_grad()
    def _sample(self, n: int, steps: int, seed: int, device: torch.device) -> SampleResult:
        if steps > TRAIN_TIMESTEPS:
            raise BenchError(f"method 'ddpm': steps must be at most {TRAIN_TIMESTEPS} (the "
                             f"training chain's length); got {steps}")
        timesteps = self.timesteps(steps)
        shape = self._data_shape()
        x_T = standard_normal(n, shape, seed, device)
        rows = block_rows(shape)
        blocks = []
        for start in range(0, n, rows):
            count = min(rows, n - start)
            noise = (_RowNoise(seed, range(start, start + count), rows, shape)
                     if self.params.sampler == "ancestral" else None)
            x_0 = self.denoise(_pad_rows(x_T[start:start + count], rows), timesteps, noise)
            blocks.append(x_0[:count])
        return SampleResult(torch.cat(blocks), nfe=len(timesteps))

    def denoise(self, x: torch.Tensor, timesteps: list[int],
                noise: "_RowNoise | None") -> torch.Tensor:
        """Run the reverse chain on x (B, *shape) from timesteps[0] through the grid to x_0.

        One network call per timestep; the DDIM update without ``noise``, the
        ancestral one with it.
        """
        alphas_cumprod = precise_alphas_cumprod(self._scheduler())
        network = self.network_.to(x.device)
        for k, t in enumerate(timesteps):
            s = timesteps[k + 1] if k + 1 < len(timesteps) else -1
            a_t, a_s = alphas_cumprod[t], (alphas_cumprod[s] if s >= 0 else 1.0)
            epsilon = network(x, torch.full((len(x),), t / TRAIN_TIMESTEPS, device=x.device))
            x0_hat = predict_x0(x, epsilon, a_t, self.params.clip_sample)
            if noise is None:
                x = ddim_step(x0_hat, epsilon, a_s)
            else:
                x = ancestral_step(x, x0_hat, a_t, a_s,
                                   noise.next().to(x.device) if s >= 0 else None)
        return x

    def timesteps(self, steps: int) -> list[int]:
        """The respaced grid tau_1 > ... > tau_S of MONAI's ``set_timesteps`` (last is 0)."""
        scheduler = self._scheduler()
        scheduler.set_timesteps(steps)
        return [int(t) for t in scheduler.timesteps]

    def _scheduler(self) -> DDPMScheduler | DDIMScheduler:
        """MONAI's scheduler for this configuration: schedule tables and timestep grid."""
        kind = DDIMScheduler if self.params.sampler == "ddim" else DDPMScheduler
        return kind(num_train_timesteps=TRAIN_TIMESTEPS,
                    schedule=MONAI_SCHEDULES[self.params.schedule],
                    clip_sample=self.params.clip_sample, prediction_type="epsilon")

    def _state(self) -> dict[str, Any]:
        return {"network": self.network_.state_dict(),
                "backbone": dataclasses.asdict(self.backbone_)}

    def _restore(self, state: dict[str, Any], device: torch.device) -> None:
        self.backbone_ = BackboneConfig(**state["backbone"])
        # Any seed: the saved weights replace the initial ones at once.
        network = build_backbone(self._data_shape(), self.backbone_, seed=0)
        network.load_state_dict(state["network"])
        self.network_ = network.to(device).eval().requires_grad_(False)

    def _load_weights(self, ema: dict[str, torch.Tensor]) -> None:
        self.network_.load_state_dict(ema)


def precise_alphas_cumprod(scheduler: DDPMScheduler | DDIMScheduler) -> list[float]:
    """alpha_bar_t = prod_{k <= t} (1 - beta_k) from MONAI's betas, in double precision.

    MONAI's own table is float32, where 1 - alpha_bar_t near t = 0 (about 1e-4)
    keeps only four digits; the sampling coefficients need more.
    """
    return torch.cumprod(1 - scheduler.betas.double(), dim=0).tolist()


def _epsilon_loss(scheduler: DDPMScheduler | DDIMScheduler
                  ) -> Callable[[nn.Module, torch.Tensor, torch.Generator], torch.Tensor]:
    """L_simple of Ho et al. 2020 (eq. 14), t uniform on {0, ..., T - 1}."""

    def loss(network: nn.Module, x_0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        t = torch.randint(0, TRAIN_TIMESTEPS, (len(x_0),), generator=generator).to(x_0.device)
        epsilon = torch.randn(x_0.shape, generator=generator).to(x_0.device)
        x_t = scheduler.add_noise(x_0, epsilon, t)
        return torch.mean((network(x_t, t.float() / TRAIN_TIMESTEPS) - epsilon) ** 2)

    return loss


def predict_x0(x_t: torch.Tensor, epsilon: torch.Tensor, a_t: float,
               clip: bool) -> torch.Tensor:
    """x0_hat = (x_t - sqrt(1 - alpha_bar_t) epsilon) / sqrt(alpha_bar_t) (Ho et al. eq. 15)."""
    x0_hat = (x_t - math.sqrt(1 - a_t) * epsilon) / math.sqrt(a_t)
    return x0_hat.clamp(-1.0, 1.0) if clip else x0_hat


def ddim_step(x0_hat: torch.Tensor, epsilon: torch.Tensor, a_s: float) -> torch.Tensor:
    """Deterministic DDIM update to timestep s (Song et al. 2021, eq. 12, sigma = 0)."""
    return math.sqrt(a_s) * x0_hat + math.sqrt(1 - a_s) * epsilon


def ancestral_step(x_t: torch.Tensor, x0_hat: torch.Tensor, a_t: float, a_s: float,
                   z: torch.Tensor | None) -> torch.Tensor:
    """One draw from q(x_s | x_t, x0_hat) on the respaced chain t -> s (Ho et al. eqs. 6-7).

    Args:
        x_t: current samples.
        x0_hat: predicted clean samples.
        a_t, a_s: alpha_bar at t and at the next grid timestep s (1 after the last),
            as double-precision numbers: beta' = 1 - a_t / a_s is small (1e-4 at
            t = 1) and would lose three digits in float32.
        z: standard normal noise shaped like x_t; None for the last step (no noise).
    """
    beta = 1 - a_t / a_s
    x0_coefficient = math.sqrt(a_s) * beta / (1 - a_t)
    xt_coefficient = math.sqrt(1 - beta) * (1 - a_s) / (1 - a_t)
    mean = x0_coefficient * x0_hat + xt_coefficient * x_t
    if z is None:
        return mean
    variance = max((1 - a_s) / (1 - a_t) * beta, 1e-20)
    return mean + math.sqrt(variance) * z


class _RowNoise:
    """Per-row noise streams: row i's generator is seeded by (seed, i) only.

    ``next`` returns (rows, *shape) noise for one step; rows past the real ones
    (padding) get zeros. Each row draws the noise of several steps at once (a
    number fixed by the shape, never by n), which saves many small calls.
    """

    def __init__(self, seed: int, index: range, rows: int, shape: tuple[int, ...]) -> None:
        self.rows = rows
        self.shape = shape
        self.steps_per_draw = max(1, BLOCK_ELEMENTS // (rows * int(np.prod(shape))))
        self.generators = [torch.Generator().manual_seed(_stream_seed(seed, i)) for i in index]
        self.buffer = torch.zeros((0, rows, *shape))

    def next(self) -> torch.Tensor:
        if len(self.buffer) == 0:
            self.buffer = torch.zeros((self.steps_per_draw, self.rows, *self.shape))
            for row, generator in enumerate(self.generators):
                self.buffer[:, row] = torch.randn((self.steps_per_draw, *self.shape),
                                                  generator=generator)
        noise, self.buffer = self.buffer[0], self.buffer[1:]
        return noise


def _stream_seed(seed: int, index: int) -> int:
    entropy = (_STEP_NOISE_STREAM, seed % 2**64, index)
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


def block_rows(shape: tuple[int, ...]) -> int:
    """Rows per block (network call), a function of the sample shape only, never of n."""
    cap = MAX_BLOCK_ROWS["vector" if len(shape) == 1 else "grid"]
    return max(1, min(cap, BLOCK_ELEMENTS // int(np.prod(shape))))


def apply_in_row_blocks(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                        rows: int) -> torch.Tensor:
    """``fn(x)`` for a row-wise ``fn``, computed on blocks of exactly ``rows`` rows.

    The last block is padded with zeros. CPU matrix products round differently
    for different numbers of rows; fixed blocks make row i's result bitwise
    independent of len(x).
    """
    out = [fn(_pad_rows(x[start:start + rows], rows))[:len(x[start:start + rows])]
           for start in range(0, len(x), rows)]
    return torch.cat(out)


def _pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    if len(x) == rows:
        return x.clone()
    return torch.cat([x, x.new_zeros((rows - len(x), *x.shape[1:]))])
