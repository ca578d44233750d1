"""Backbones: the residual MLP for latents, MONAI's 3D UNet for voxel grids."""

import pytest
import torch

from bench.core.errors import BenchError
from methods.backbones import (UNET_TIME_SCALE, BackboneConfig, ResidualMLP, VoxelUNet,
                               build_backbone, parameter_count)

TINY_UNET = BackboneConfig(unet_channels=(8, 16), unet_attention=(False, True),
                           unet_res_blocks=1, unet_head_channels=8, unet_norm_groups=8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def perturb(module, seed=0):
    """Move every weight by seeded noise (the UNet's last convolution starts at zero)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


def test_auto_picks_mlp_for_vectors_and_unet_for_grids():
    assert isinstance(build_backbone((6,), BackboneConfig(), seed=0), ResidualMLP)
    assert isinstance(build_backbone((1, 16, 16, 16), TINY_UNET, seed=0), VoxelUNet)


def test_mlp_keeps_the_shape_and_has_the_closed_form_parameter_count():
    dim, width, depth, embedding = 5, 16, 3, 8
    network = build_backbone((dim,), BackboneConfig(width=width, depth=depth,
                                                    time_embedding=embedding), seed=0)
    out = network(torch.randn(7, dim), torch.rand(7))
    assert out.shape == (7, dim)
    time = embedding * width + width + width * width + width
    block = 2 * width + 2 * (width * width + width)          # LayerNorm, two Linear
    expected = time + (dim * width + width) + depth * block + (width * dim + dim)
    assert parameter_count(network) == expected


def test_parameter_count_leaves_out_frozen_weights():
    network = build_backbone((5,), BackboneConfig(width=16, depth=1, time_embedding=8), seed=0)
    total = parameter_count(network)
    network.input.requires_grad_(False)
    assert parameter_count(network) == total - (5 * 16 + 16)


def test_restoring_a_saved_method_leaves_the_global_generator_alone(tmp_path):
    import methods  # noqa: F401  (registers the built-in methods)
    from bench.core.training import TrainConfig
    from methods.base import FitConfig, Method
    from methods.registry import create_method

    config = FitConfig(backbone=BackboneConfig(width=16, depth=1, time_embedding=8),
                       train=TrainConfig(steps=2, batch_size=4, warmup_steps=1))
    for name in ("otfm", "ddpm"):
        method = create_method(name)
        method.fit(torch.randn(8, 3, generator=torch.Generator().manual_seed(0)), None, config, 0)
        method.save(tmp_path / f"{name}.pt")
        state = torch.get_rng_state()
        Method.load(tmp_path / f"{name}.pt")
        assert torch.equal(torch.get_rng_state(), state), name


def test_seed_fixes_the_weights_without_touching_the_global_generator():
    state = torch.get_rng_state()
    a = build_backbone((5,), BackboneConfig(width=16), seed=1)
    b = build_backbone((5,), BackboneConfig(width=16), seed=1)
    c = build_backbone((5,), BackboneConfig(width=16), seed=2)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters()))


def test_tiny_unet_at_16_cubed_keeps_the_shape_and_learns():
    network = build_backbone((1, 16, 16, 16), TINY_UNET, seed=0)
    x, t = torch.randn(2, 1, 16, 16, 16), torch.tensor([0.1, 0.9])
    assert network(x, t).shape == x.shape
    count = parameter_count(network)
    assert count == sum(p.numel() for p in network.unet.parameters()) and count > 10_000
    print(f"tiny 3D UNet (channels {TINY_UNET.unet_channels}): {count} parameters")

    # the output convolution starts at zero, so gradients reach the rest after one step
    optimiser = torch.optim.SGD(network.parameters(), lr=0.1)
    for _ in range(2):
        optimiser.zero_grad()
        loss = (network(x, t) - x).square().mean()
        loss.backward()
        optimiser.step()
    grads = {name: p.grad for name, p in network.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["unet.conv_in.conv.weight"].abs().sum() > 0
    assert (network(x, t) - x).square().mean() < loss


def test_unet_receives_time_scaled_to_a_thousand():
    network = build_backbone((1, 8, 8, 8), TINY_UNET, seed=0)
    perturb(network)
    x, t = torch.randn(3, 1, 8, 8, 8), torch.tensor([0.0, 0.25, 1.0])
    with torch.no_grad():
        direct = network.unet(x, timesteps=t * UNET_TIME_SCALE)
        assert torch.equal(network(x, t), direct)
        assert not torch.allclose(network(x, t), network.unet(x, timesteps=t))
    assert UNET_TIME_SCALE == 1000.0


def test_unet_keeps_several_channels():
    network = build_backbone((2, 8, 8, 8), TINY_UNET, seed=0)
    assert network(torch.randn(1, 2, 8, 8, 8), torch.rand(1)).shape == (1, 2, 8, 8, 8)


@pytest.mark.parametrize("shape, config, message", [
    ((1, 18, 18, 18), BackboneConfig(unet_channels=(32, 64, 64)), "divisible by 4"),
    ((1, 16, 16, 12), BackboneConfig(unet_channels=(32, 32, 64, 64),
                                     unet_attention=(False,) * 4), "divisible by 8"),
    ((1, 16, 16, 16), BackboneConfig(unet_channels=(8, 16)), "unet_attention"),
    ((1, 16, 16, 16), BackboneConfig(unet_channels=(24, 48), unet_attention=(False, False)),
     "multiples of backbone.unet_norm_groups=32"),
    ((1, 16, 16, 16), BackboneConfig(unet_channels=(32, 48), unet_attention=(False, False),
                                     unet_norm_groups=16), "unet_head_channels=32"),
    ((16, 16, 16), BackboneConfig(kind="unet"), r"\(C, D, H, W\)"),
    ((1, 16, 16, 16), BackboneConfig(kind="mlp"), "latent vectors"),
    ((8,), BackboneConfig(kind="transformer"), "allowed: auto, mlp, unet"),
])
def test_bad_backbone_settings_are_refused(shape, config, message):
    with pytest.raises(BenchError, match=message):
        build_backbone(shape, config, seed=0)


def test_default_unet_config_builds_at_32_cubed():
    network = build_backbone((1, 32, 32, 32), BackboneConfig(), seed=0)
    assert parameter_count(network) > 100_000


def test_mlp_can_be_the_identity_at_any_scale():
    """DDPM's epsilon ~ x_t at high noise needs each row's scale, which a normalisation
    before the output would discard: with the blocks switched off and input and output
    inverse linear maps, the network is exactly the identity."""
    dim, width = 4, 8
    network = build_backbone((dim,), BackboneConfig(width=width, depth=2, time_embedding=8),
                             seed=0)
    with torch.no_grad():
        for block in network.blocks:
            block[-1].weight.zero_()
            block[-1].bias.zero_()
        network.input.weight.copy_(torch.eye(width, dim))
        network.input.bias.zero_()
        network.output.weight.copy_(torch.eye(dim, width))
        network.output.bias.zero_()
    x = torch.randn(6, dim) * torch.tensor([[0.1], [1.0], [3.0], [10.0], [0.5], [2.0]])
    torch.testing.assert_close(network(x, torch.rand(6)), x)
