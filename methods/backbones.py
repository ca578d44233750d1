"""Networks shared by the deep methods: one per representation kind.

Every backbone maps (x, t) to a tensor shaped like x: x is (B, *shape) in
representation space and t is (B,) in [0, 1] (flow time, or diffusion step
divided by the number of training steps). Latent vectors (B, D) get a
residual MLP; voxel grids (B, C, D, H, W) get MONAI's 3D DiffusionModelUNet.
Within a run every deep method builds its network from the same
:class:`BackboneConfig`, so they share architecture and parameter count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from monai.networks.nets import DiffusionModelUNet
from torch import nn

from bench.core.errors import BenchError
from bench.core.training import seeded

# The UNet's timestep input is t * UNET_TIME_SCALE: t in [0, 1] becomes [0, 1000],
# the range of DDPM step indices that MONAI's sinusoidal embedding is made for
# (a DDPM of 1000 training steps passing t = k / 1000 gives the UNet k itself).
UNET_TIME_SCALE = 1000.0


@dataclass(frozen=True)
class BackboneConfig:
    """Which network, and its size.

    Attributes:
        kind: "mlp" (latent vectors), "unet" (voxel grids, MONAI's
            DiffusionModelUNet) or "auto" (by the shape of the data).
        width: hidden units of the MLP.
        depth: residual blocks of the MLP.
        time_embedding: size of the MLP's sinusoidal time features.
        unet_channels: feature channels per UNet level; the grid is halved
            between levels, len - 1 times in all.
        unet_attention: per level, whether it has self-attention.
        unet_res_blocks: residual blocks per UNet level.
        unet_head_channels: channels per attention head (the middle block
            always attends; levels attend where unet_attention says so).
        unet_norm_groups: GroupNorm groups; every entry of unet_channels must
            be a multiple.
    """

    kind: str = "auto"
    width: int = 256
    depth: int = 4
    time_embedding: int = 64
    unet_channels: tuple[int, ...] = (32, 64, 64)
    unet_attention: tuple[bool, ...] = (False, False, False)
    unet_res_blocks: int = 1
    unet_head_channels: int = 32
    unet_norm_groups: int = 32


def build_backbone(data_shape: tuple[int, ...], config: BackboneConfig, *,
                   seed: int) -> nn.Module:
    """The network for data of per-sample shape ``data_shape``.

    Args:
        data_shape: (D,) for latent vectors, (C, D, H, W) for voxel grids.
        config: which network and its size.
        seed: seeds the initial weights without touching the global random
            state (a network about to load saved weights still takes one, so
            that building it never consumes the caller's random numbers).
    """
    data_shape = tuple(int(size) for size in data_shape)
    kind = config.kind
    if kind == "auto":
        kind = "mlp" if len(data_shape) == 1 else "unet"
    if kind not in ("mlp", "unet"):
        raise BenchError(f"unknown backbone kind {kind!r}; allowed: auto, mlp, unet")
    if kind == "mlp" and len(data_shape) != 1:
        raise BenchError(f"backbone 'mlp' needs latent vectors, got samples of shape "
                         f"{data_shape}; use backbone.kind=unet for voxel grids")
    if kind == "unet":
        _check_unet(data_shape, config)
    with seeded(seed):
        if kind == "mlp":
            return ResidualMLP(data_shape[0], config.width, config.depth, config.time_embedding)
        return VoxelUNet(data_shape[0], config)


def parameter_count(module: nn.Module) -> int:
    """Number of trainable parameters (elements of tensors that require gradients)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


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
        # No normalisation before the output: a LayerNorm there discards each row's scale,
        # so the network could not represent epsilon ~ x_t at high noise, and DDPM's x0
        # prediction (that error divided by sqrt(alpha_bar) ~ 0.006) blew samples up.
        self.output = nn.Linear(width, dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x (B, dim), t (B,) in [0, 1] -> (B, dim)."""
        time = self.time(sinusoidal_embedding(t, self.time_embedding))
        hidden = self.input(x)
        for block in self.blocks:
            hidden = hidden + block(hidden + time)
        return self.output(hidden)


class VoxelUNet(nn.Module):
    """MONAI's 3D DiffusionModelUNet behind the backbone interface ``forward(x, t)``.

    The UNet receives ``timesteps = t * UNET_TIME_SCALE`` (t in [0, 1] to
    [0, 1000]); input and output have the same channels.

    Args:
        channels: image channels C of the (B, C, D, H, W) grids.
        config: the unet_* fields set the levels, attention and widths.
    """

    def __init__(self, channels: int, config: BackboneConfig) -> None:
        super().__init__()
        self.unet = DiffusionModelUNet(
            spatial_dims=3, in_channels=channels, out_channels=channels,
            channels=tuple(config.unet_channels), attention_levels=tuple(config.unet_attention),
            num_res_blocks=config.unet_res_blocks, num_head_channels=config.unet_head_channels,
            norm_num_groups=config.unet_norm_groups)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x (B, C, D, H, W), t (B,) in [0, 1] -> (B, C, D, H, W)."""
        return self.unet(x, timesteps=t.to(x.device).float() * UNET_TIME_SCALE)


def _check_unet(data_shape: tuple[int, ...], config: BackboneConfig) -> None:
    """Refuse, with a fix, the shapes and settings MONAI would reject less clearly."""
    if len(data_shape) != 4 or min(data_shape) < 1:
        raise BenchError(f"backbone 'unet' needs voxel grids of shape (C, D, H, W), got "
                         f"samples of shape {data_shape}; use backbone.kind=mlp for latent "
                         f"vectors")
    channels, attention = tuple(config.unet_channels), tuple(config.unet_attention)
    if not channels or len(attention) != len(channels):
        raise BenchError(f"backbone.unet_attention needs one entry per level of "
                         f"backbone.unet_channels={channels}, got {attention}")
    factor = 2 ** (len(channels) - 1)
    if any(side % factor for side in data_shape[1:]):
        raise BenchError(f"backbone 'unet' with {len(channels)} levels halves the grid "
                         f"{len(channels) - 1} times, so every side must be divisible by "
                         f"{factor}; got grids of {data_shape[1:]}. Use a resolution divisible "
                         f"by {factor} or fewer backbone.unet_channels")
    if any(width % config.unet_norm_groups for width in channels):
        raise BenchError(f"backbone.unet_channels={channels} must all be multiples of "
                         f"backbone.unet_norm_groups={config.unet_norm_groups}")
    # The middle block always attends, at the channels of the last level.
    attending = [width for width, attends in zip(channels, attention) if attends]
    for width in attending + [channels[-1]]:
        if width % config.unet_head_channels:
            raise BenchError(f"backbone.unet_head_channels={config.unet_head_channels} must "
                             f"divide the channels of the last level and of every level with "
                             f"attention; {width} channels is not a multiple")
