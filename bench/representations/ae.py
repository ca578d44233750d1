"""The ``ae`` representation: a learned 3D latent, as the field generates skulls in.

A KL-regularised convolutional autoencoder (:mod:`bench.representations.autoencoders`)
is trained on the training split by the shared training loop
(:func:`bench.core.training.train_network`: AdamW, warm-up and cosine decay,
EMA, gradient clipping, atomic checkpoints with bitwise resume, a progress bar
with the loss, an error on a non-finite loss). Its loss per batch of occupancy
grids x is

    L = BCE(logits, x) + DiceLoss(sigmoid(logits), x) + kl_weight * KL(q(z|x) || N(0, I))

with logits decoded from a draw z ~ q(z|x). A sample's latent is the
posterior mean, normalised per channel c as in latent diffusion (Rombach et
al. 2022, who scale by one factor; here shift and scale per channel):

    z_c = (mu_c - shift_c) / scale_c                       (encode)
    volume = decoder(z_c * scale_c + shift_c) > 0           (decode, logits > 0)

with shift_c and scale_c the mean and standard deviation of channel c of the
training latents, so that every channel has zero mean and unit variance on
the training split, as the methods' Gaussian noise assumes.

Encoding and decoding run in fixed batches of ``BATCH`` (the last padded), so
a skull's latent and a latent's volume do not depend on how many are coded
together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, cast

import numpy as np
import torch
from monai.losses import DiceLoss
from torch import nn

from bench.core.errors import BenchError
from bench.core.threads import thread_budget
from bench.core.training import LossFn, TrainConfig, seeded, train_network
from bench.core.volumes import as_binary_volumes
from bench.representations.autoencoders import (ARCHITECTURES, SkullAutoencoder, downsampling,
                                                kl_divergence)
from bench.representations.base import (Representation, State, as_encoded,
                                        register_representation, tensor_state)

BATCH = 8
"""Volumes per encoder or decoder call (the last batch is padded to it)."""


@register_representation("ae")
class AutoencoderRepresentation(Representation):
    """A learned spatial latent (N, C, R/f, R/f, R/f) of occupancy grids (N, R, R, R).

    Args:
        architecture: "lean" (strided convolutions, the CPU network) or
            "monai-kl" (MONAI's AutoencoderKL, for GPUs).
        channels: feature channels per level; the downsampling f is
            ``2 ** len(channels)`` for lean and ``2 ** (len(channels) - 1)`` for
            monai-kl, and must divide the grid side R.
        latent_channels: channels C of the latent.
        kl_weight: weight of the KL term of the loss.
        steps, batch_size, learning_rate, warmup_steps, ema_decay: the training
            budget (see :class:`bench.core.training.TrainConfig`).
        checkpoint_every: steps between training checkpoints.
        mixed_precision: bfloat16 autocast when fitted on CUDA.
        norm_groups: GroupNorm groups of monai-kl.
        seed: seeds the initial weights, the batches and the posterior draws.
        threads: CPU threads of the fit; fixed, because the weights depend on it at
            the level of rounding.

    Attributes:
        resolution_: grid side R of the training volumes.
        network_: the EMA autoencoder (a :class:`SkullAutoencoder`), not trainable.
        shift_, scale_: float32 (C,), the training latents' channel means and standard
            deviations.
        fit_report_: steps, wall time, losses and parameter count of the fit.
    """

    def __init__(self, *, architecture: str = "lean", channels: tuple[int, ...] = (8, 32, 64),
                 latent_channels: int = 4, kl_weight: float = 1e-4, steps: int = 2000,
                 batch_size: int = 8, learning_rate: float = 2e-3, warmup_steps: int = 100,
                 ema_decay: float = 0.99, checkpoint_every: int = 250,
                 mixed_precision: bool = True, norm_groups: int = 8, seed: int = 0,
                 threads: int = 2) -> None:
        self.architecture = architecture
        self.channels = channels
        self.latent_channels = latent_channels
        self.kl_weight = kl_weight
        self.steps = steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.warmup_steps = warmup_steps
        self.ema_decay = ema_decay
        self.checkpoint_every = checkpoint_every
        self.mixed_precision = mixed_precision
        self.norm_groups = norm_groups
        self.seed = seed
        self.threads = threads

    # ------------------------------------------------------------------------- fit

    def fit(self, volumes: np.ndarray | torch.Tensor, *, checkpoint_dir: Path | None = None,
            progress: bool = False, device: torch.device | str = "cpu"
            ) -> "AutoencoderRepresentation":
        """Train the autoencoder on training volumes (N, R, R, R); return ``self``.

        Args:
            volumes: the training split.
            checkpoint_dir: where training checkpoints go and are resumed from.
            progress: show a progress bar with the loss.
            device: where to train (the fitted network stays there).
        """
        volumes = as_binary_volumes(volumes)
        self._check_params(volumes.shape[1])
        data = torch.from_numpy(volumes)[:, None]
        with thread_budget(self.threads):
            with seeded(self.seed):
                network = self._network(volumes.shape[1], data.float().mean(dim=(0, 1)))
            result = train_network(network, self._loss(volumes.shape[1]), data,
                                   self._train_config(progress), self.seed, device,
                                   "representation ae", checkpoint_dir=checkpoint_dir)
            self.resolution_ = volumes.shape[1]
            self.network_ = cast(SkullAutoencoder, result.ema).requires_grad_(False).eval()
            posterior_means = self._posterior_means(volumes)
        self.shift_ = posterior_means.mean(dim=(0, 2, 3, 4))
        self.scale_ = posterior_means.std(dim=(0, 2, 3, 4)).clamp(min=1e-6)
        self.fit_report_ = {"steps": result.steps, "wall_time_s": result.wall_time_s,
                            "final_loss": float(np.mean(result.losses[-100:])),
                            "first_loss": result.losses[0] if result.losses else None,
                            "parameter_count": result.parameter_count,
                            "resumed_from": result.resumed_from}
        return self

    def _check_params(self, resolution: int) -> None:
        """Refuse, naming the parameter and the fix, what the networks would reject less
        clearly."""
        where = "representation 'ae'"
        if self.architecture not in ARCHITECTURES:
            raise BenchError(f"{where}: architecture {self.architecture!r} is unknown; choose "
                             f"one of {', '.join(ARCHITECTURES)}")
        channels = tuple(self.channels)
        if not channels or any(not isinstance(c, int) or c < 1 for c in channels):
            raise BenchError(f"{where}: channels must be positive integers, one per level, got "
                             f"{self.channels!r}")
        factor = downsampling(self.architecture, channels)
        if resolution % factor:
            raise BenchError(f"{where}: {self.architecture} with channels {list(channels)} "
                             f"divides the grid by {factor}, which does not divide the "
                             f"dataset's resolution {resolution}; use fewer levels or another "
                             f"resolution")
        if self.architecture == "monai-kl" and any(c % self.norm_groups for c in channels):
            raise BenchError(f"{where}: monai-kl needs every channel count a multiple of "
                             f"norm_groups={self.norm_groups}, got {list(channels)}")
        for name in ("latent_channels", "steps", "batch_size", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BenchError(f"{where}: {name} must be a positive integer, got {value!r}")
        if not self.kl_weight >= 0:
            raise BenchError(f"{where}: kl_weight must be 0 or more, got {self.kl_weight!r}")

    def _network(self, resolution: int, mean_occupancy: torch.Tensor) -> SkullAutoencoder:
        return SkullAutoencoder(self.architecture, tuple(self.channels), self.latent_channels,
                                mean_occupancy.reshape((resolution,) * 3), self.norm_groups)

    def _train_config(self, progress: bool) -> TrainConfig:
        return TrainConfig(steps=self.steps, batch_size=self.batch_size,
                           learning_rate=self.learning_rate, warmup_steps=self.warmup_steps,
                           ema_decay=self.ema_decay, grad_clip=1.0,
                           mixed_precision=self.mixed_precision,
                           checkpoint_every=self.checkpoint_every, progress=progress)

    def _loss(self, resolution: int) -> LossFn:
        """BCE + Dice of the decoded posterior draw + kl_weight * KL (module docstring)."""
        side = resolution // downsampling(self.architecture, tuple(self.channels))
        latent = (self.latent_channels, side, side, side)
        dice = DiceLoss(sigmoid=True)

        def loss(network: nn.Module, batch: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
            x = batch.float()
            noise = torch.randn((len(x),) + latent, generator=generator).to(x.device)
            logits, mu, logvar = network(x, noise)
            reconstruction = nn.functional.binary_cross_entropy_with_logits(logits.float(), x)
            return (reconstruction + dice(logits.float(), x)
                    + self.kl_weight * kl_divergence(mu.float(), logvar.float()))

        return loss

    # ------------------------------------------------------------------ encode / decode

    @property
    def encoded_shape(self) -> tuple[int, ...]:
        """(C, r, r, r) with r = R / f."""
        self._check_fitted()
        side = self.resolution_ // downsampling(self.architecture, tuple(self.channels))
        return (self.latent_channels, side, side, side)

    def encode(self, volumes: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Binary volumes (N, R, R, R) to normalised latents, float32 (N, C, r, r, r)."""
        self._check_fitted()
        volumes = as_binary_volumes(volumes, self.resolution_)
        means = self._posterior_means(volumes)
        return (means - _channels(self.shift_)) / _channels(self.scale_)

    def decode(self, encoded: torch.Tensor) -> np.ndarray:
        """Latents (N, C, r, r, r) on any device to bool volumes (N, R, R, R), logits > 0."""
        self._check_fitted()
        latents = as_encoded(encoded, self.encoded_shape)
        latents = latents * _channels(self.scale_) + _channels(self.shift_)
        logits = self._batched(self.network_.decode, latents)
        return (logits[:, 0] > 0).numpy()

    def features(self, volumes: np.ndarray | torch.Tensor) -> np.ndarray:
        """Pooled encoder features of binary volumes (N, R, R, R), float64 (N, F)."""
        self._check_fitted()
        volumes = as_binary_volumes(volumes, self.resolution_)
        occupancy = torch.from_numpy(volumes)[:, None]
        return self._batched(self.network_.features, occupancy).double().numpy()

    def to(self, device: torch.device | str) -> "AutoencoderRepresentation":
        """Move the network (encode and decode then run there); return ``self``."""
        self._check_fitted()
        self.network_.to(device)
        return self

    def _posterior_means(self, volumes: np.ndarray) -> torch.Tensor:
        occupancy = torch.from_numpy(volumes)[:, None]
        return self._batched(lambda x: self.network_.posterior(x)[0], occupancy)

    @torch.no_grad()
    def _batched(self, function: Callable[[torch.Tensor], torch.Tensor],
                 inputs: torch.Tensor) -> torch.Tensor:
        """``function`` over fixed batches of ``BATCH`` rows on the network's device, the
        last one padded with zeros; float32 results on the CPU."""
        device = next(self.network_.parameters()).device
        outputs = []
        for chunk in inputs.split(BATCH):
            rows = len(chunk)
            padded = torch.cat([chunk, chunk.new_zeros((BATCH - rows,) + chunk.shape[1:])])
            outputs.append(function(padded.to(device, torch.float32))[:rows].float().cpu())
        return torch.cat(outputs)

    # ----------------------------------------------------------------------- state

    def _get_state(self) -> State:
        state: State = {"resolution": self.resolution_, "shift": self.shift_,
                        "scale": self.scale_}
        for key, value in self.network_.state_dict().items():
            state[f"network.{key}"] = value.cpu()
        return state

    def _set_state(self, state: State) -> None:
        self.resolution_ = int(state["resolution"])
        self.shift_ = tensor_state(state, "shift", self.name)
        self.scale_ = tensor_state(state, "scale", self.name)
        weights = {key.removeprefix("network."): tensor_state(state, key, self.name)
                   for key in state if key.startswith("network.")}
        network = self._network(self.resolution_, torch.zeros((self.resolution_,) * 3))
        network.load_state_dict(weights)
        self.network_ = network.requires_grad_(False).eval()
        self.fit_report_ = {}

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters, with ``channels`` as a list (as a YAML file gives it)."""
        return {**super().get_params(), "channels": list(self.channels)}


def _channels(values: torch.Tensor) -> torch.Tensor:
    """(C,) -> (1, C, 1, 1, 1), to broadcast over latents (N, C, r, r, r)."""
    return values.reshape(1, -1, 1, 1, 1)
