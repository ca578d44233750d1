"""Networks of the ``ae`` representation: 3D convolutional autoencoders of occupancy grids.

Both are KL-regularised autoencoders in the sense of latent diffusion
(Rombach et al. 2022): the encoder gives a Gaussian posterior N(mu, sigma^2)
per latent element, training decodes a draw from it, and a small KL term
keeps the latent smooth. Two encoder/decoder pairs share one wrapper:

- ``lean``: strided convolutions down, transposed convolutions up, SiLU and no
  normalisation. It is the CPU network. Measured on 2 CPU threads, one Adam
  step on a batch of 8 occupancy grids of 64^3 (latent 4 x 8^3) took 0.13 s
  with channels (8, 16, 32) and 0.32 s with (16, 32, 64), against 5.9 s for
  MONAI's AutoencoderKL with channels (8, 16, 32, 32), one residual block per
  level and no attention (14.6 s with (16, 32, 64, 64)): at MONAI's speed the
  fit at 64^3 would take hours on a laptop, at the lean one's minutes.
- ``monai-kl``: MONAI's ``AutoencoderKL`` (residual blocks, GroupNorm), the
  network of MAISI and of MONAI's brain latent diffusion model, for GPUs.

Both decode to logits added to a learned *template*: a per-voxel bias
initialised at the logit of the training set's mean occupancy. The decoder
then learns how a skull differs from the average skull, as a statistical
shape model does, which makes the thin bone shell reconstructible in minutes.
"""

from __future__ import annotations

from typing import cast

import torch
from monai.networks.nets import AutoencoderKL
from monai.networks.nets.autoencoderkl import AEKLDownsample
from torch import nn

ARCHITECTURES = ("lean", "monai-kl")
LOGVAR_RANGE = (-30.0, 20.0)
"""Clamp of the posterior's log-variance, as MONAI's AutoencoderKL clamps it."""


class LeanEncoder(nn.Module):
    """Strided 4^3 convolutions, each halving the grid, then a 3^3 convolution and a 1^3
    projection to the posterior's mean and log-variance (2 * latent_channels)."""

    def __init__(self, channels: tuple[int, ...], latent_channels: int) -> None:
        super().__init__()
        widths = (1,) + tuple(channels)
        self.levels = nn.ModuleList(
            nn.Sequential(nn.Conv3d(a, b, 4, stride=2, padding=1), nn.SiLU())
            for a, b in zip(widths[:-1], widths[1:]))
        self.head = nn.Sequential(nn.Conv3d(channels[-1], channels[-1], 3, padding=1), nn.SiLU(),
                                  nn.Conv3d(channels[-1], 2 * latent_channels, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (B, 1, R, R, R) -> (posterior parameters (B, 2 C, R/f, R/f, R/f), the
        activations of every level)."""
        activations = []
        for level in self.levels:
            x = level(x)
            activations.append(x)
        return self.head(x), activations


class LeanDecoder(nn.Module):
    """Two 3^3 convolutions on the latent grid, then transposed 4^3 convolutions, each
    doubling the grid, to one channel of logits."""

    def __init__(self, channels: tuple[int, ...], latent_channels: int) -> None:
        super().__init__()
        top = channels[-1]
        self.head = nn.Sequential(nn.Conv3d(latent_channels, top, 3, padding=1), nn.SiLU(),
                                  nn.Conv3d(top, top, 3, padding=1), nn.SiLU())
        widths = tuple(reversed(channels)) + (1,)
        layers: list[nn.Module] = []
        for index, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.ConvTranspose3d(a, b, 4, stride=2, padding=1))
            if index < len(widths) - 2:
                layers.append(nn.SiLU())
        self.levels = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, C, R/f, R/f, R/f) -> logits (B, 1, R, R, R)."""
        return self.levels(self.head(z))


class SkullAutoencoder(nn.Module):
    """A KL-regularised autoencoder of occupancy with a learned template.

    Args:
        architecture: "lean" or "monai-kl" (see the module docstring).
        channels: feature channels per level; the grid is divided by
            ``2 ** len(channels)`` (lean) or ``2 ** (len(channels) - 1)`` (monai-kl).
        latent_channels: channels C of the latent grid.
        mean_occupancy: float tensor (R, R, R), the training set's mean occupancy;
            its logit initialises the template.
        norm_groups: GroupNorm groups of monai-kl (every channel count a multiple).
    """

    def __init__(self, architecture: str, channels: tuple[int, ...], latent_channels: int,
                 mean_occupancy: torch.Tensor, norm_groups: int = 8) -> None:
        super().__init__()
        self.architecture = architecture
        self.latent_channels = latent_channels
        if architecture == "lean":
            self.encoder: nn.Module = LeanEncoder(channels, latent_channels)
            self.decoder: nn.Module = LeanDecoder(channels, latent_channels)
        else:
            self.kl = AutoencoderKL(
                spatial_dims=3, in_channels=1, out_channels=1, channels=channels,
                latent_channels=latent_channels, num_res_blocks=1,
                attention_levels=(False,) * len(channels), norm_num_groups=norm_groups,
                with_encoder_nonlocal_attn=False, with_decoder_nonlocal_attn=False)
        occupancy = mean_occupancy.double().clamp(1e-3, 1.0 - 1e-3)
        self.template = nn.Parameter(torch.log(occupancy / (1.0 - occupancy)).float()[None, None])

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Occupancy x (B, 1, R, R, R) in [0, 1] -> (mu, log-variance), each (B, C, r, r, r)."""
        mu, logvar, _ = self._encode(x)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents z (B, C, r, r, r) -> occupancy logits (B, 1, R, R, R)."""
        decoded = self.decoder(z) if self.architecture == "lean" else self.kl.decode(z)
        return decoded + self.template

    def forward(self, x: torch.Tensor, noise: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: logits of the decoded draw ``mu + exp(logvar / 2) * noise``, with
        mu and logvar. ``noise`` is standard normal of the latent shape (B, C, r, r, r)."""
        mu, logvar = self.posterior(x)
        return self.decode(mu + torch.exp(0.5 * logvar) * noise), mu, logvar

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled encoder features (B, F): the spatial mean of every level's activations and
        of the posterior mean, concatenated (the role of Inception's pool features in FID)."""
        mu, _, activations = self._encode(x)
        return torch.cat([a.mean(dim=(2, 3, 4)) for a in activations + [mu]], dim=1)

    def _encode(self, x: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        if self.architecture == "lean":
            parameters, activations = self.encoder(x)
            mu, logvar = parameters.chunk(2, dim=1)
        else:
            hidden, activations = _monai_encoder_pass(self.kl, x)
            mu, logvar = self.kl.quant_conv_mu(hidden), self.kl.quant_conv_log_sigma(hidden)
        return mu, logvar.clamp(*LOGVAR_RANGE), activations


def _monai_encoder_pass(kl: AutoencoderKL, x: torch.Tensor
                        ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """MONAI's encoder, block by block as its forward runs them, keeping the activation
    that enters each downsampling and the last one."""
    activations = []
    for block in cast(nn.ModuleList, kl.encoder.blocks):
        if isinstance(block, AEKLDownsample):
            activations.append(x)
        x = block(x)
    return x, activations + [x]


def downsampling(architecture: str, channels: tuple[int, ...]) -> int:
    """Factor f between the grid side R and the latent side r = R / f."""
    return 2 ** (len(channels) if architecture == "lean" else len(channels) - 1)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)), averaged over every latent element."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).mean()
