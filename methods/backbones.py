"""Networks shared by the deep methods: one per representation kind.

Every backbone maps (x, t) to a tensor shaped like x: x is (B, *shape) in
representation space and t is (B,) in [0, 1] (flow time, or diffusion step
divided by the number of training steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from bench.errors import BenchError


@dataclass(frozen=True)
class BackboneConfig:
    """Which network, and its size.

    ``kind`` "mlp" (latent vectors) or "unet" (voxel grids, MONAI's
    DiffusionModelUNet); "auto" picks by the shape of the data.
    """

    kind: str = "auto"
    width: int = 256
    depth: int = 4
    time_embedding: int = 64
    unet_channels: tuple[int, ...] = (32, 64, 64)
    unet_attention: tuple[bool, ...] = (False, False, False)
    unet_res_blocks: int = 1


def build_backbone(data_shape: tuple[int, ...], config: BackboneConfig) -> nn.Module:
    """The network for data of per-sample shape ``data_shape``."""
    kind = config.kind
    if kind == "auto":
        kind = "mlp" if len(data_shape) == 1 else "unet"
    if kind == "mlp":
        if len(data_shape) != 1:
            raise BenchError(f"backbone 'mlp' needs latent vectors, got samples of shape "
                             f"{data_shape}; use backbone.kind=unet for voxel grids")
        return ResidualMLP(data_shape[0], config.width, config.depth, config.time_embedding)
    raise BenchError(f"unknown backbone kind {kind!r}; allowed: auto, mlp, unet")


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style features of t (B,) in [0, 1]: (B, dim)."""
    half = dim // 2
    frequencies = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)
    angles = 1000.0 * t[:, None].float() * frequencies[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class ResidualMLP(nn.Module):
    """A residual MLP with a time embedding added in every block.

    Args:
        dim: size of the latent vectors.
        width: hidden units.
        depth: residual blocks.
        time_embedding: size of the sinusoidal time features.
    """

    def __init__(self, dim: int, width: int = 256, depth: int = 4,
                 time_embedding: int = 64) -> None:
        super().__init__()
        self.time_embedding = time_embedding
        self.time = nn.Sequential(nn.Linear(time_embedding, width), nn.SiLU(),
                                  nn.Linear(width, width))
        self.input = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                          nn.Linear(width, width)) for _ in range(depth))
        self.output = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        time = self.time(sinusoidal_embedding(t, self.time_embedding))
        hidden = self.input(x)
        for block in self.blocks:
            hidden = hidden + block(hidden + time)
        return self.output(hidden)
