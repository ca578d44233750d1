"""Cost of a step of the shared training loop against a bare PyTorch loop (`make bench`).

Both train one network on batches drawn with replacement by a seeded generator,
with the same flow-matching loss, AdamW and number of steps, on one CPU thread,
in two cases: the quick preset's ResidualMLP(64, 256, 4) on 64-D latents, batch
256, and the latent preset's MONAI U-Net (16, 32) on 4 x 8^3 latents, batch 32.
The harness adds gradient clipping, the learning-rate schedule, the EMA update,
the finite-loss check and the loss log; the issues' target is at most 5 % more
per step. The figures land in the benchmark's extra_info (``--benchmark-json``)
and are printed; nothing here fails on time.
"""

import time
from dataclasses import dataclass

import pytest
import torch

from bench.core.training import TrainConfig, train_network
from methods.backbones import BackboneConfig, build_backbone
from methods.flow_matching import ConstantNoisePath, FlowMatchingLoss, IndependentCoupling

SKIP = 5                              # first steps of a loop left untimed (optimiser state)


@dataclass(frozen=True)
class Case:
    """One network to time: its data shape, backbone and batch, and how long to time it
    (``rounds`` alternations of the three loops, ``steps`` steps each)."""

    name: str
    shape: tuple[int, ...]
    backbone: BackboneConfig
    batch: int
    rounds: int
    steps: int


CASES = [
    Case("mlp", (64,), BackboneConfig(kind="mlp", width=256, depth=4, time_embedding=64),
         batch=256, rounds=10, steps=60),
    Case("latent-unet", (4, 8, 8, 8),
         BackboneConfig(kind="unet", unet_channels=(16, 32), unet_attention=(False, False),
                        unet_res_blocks=1, unet_head_channels=16, unet_norm_groups=16),
         batch=32, rounds=4, steps=30),
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# cfm's loss: independent pairs on the straight path (the bare loop uses it too).
flow_loss = FlowMatchingLoss(ConstantNoisePath(0.0), IndependentCoupling())


def training_data(case):
    return torch.randn(2048, *case.shape, generator=torch.Generator().manual_seed(0))


def bare_loop(network, data, steps, batch, fused=None, loss=flow_loss):
    """What one would write by hand: sample, loss, backward, AdamW step."""
    optimiser = torch.optim.AdamW(network.parameters(), lr=1e-3, fused=fused)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        index = torch.randint(len(data), (batch,), generator=generator)
        value = loss(network, data[index], generator)
        optimiser.zero_grad(set_to_none=True)
        value.backward()
        optimiser.step()
    return value.item()


def harness_loop(network, data, steps, batch, loss=flow_loss):
    config = TrainConfig(steps=steps, batch_size=batch, learning_rate=1e-3, warmup_steps=10)
    return train_network(network, loss, data, config, 0, "cpu", "bench").losses[-1]


class StampedLoss:
    """``flow_loss`` that notes when each call starts: consecutive calls are one full step."""

    def __init__(self):
        self.stamps = []

    def __call__(self, network, batch, generator):
        self.stamps.append(time.perf_counter())
        return flow_loss(network, batch, generator)


def step_times_ms(loop, case, data, **options):
    """Milliseconds of each step after the first :data:`SKIP`."""
    loss = StampedLoss()
    loop(build_backbone(case.shape, case.backbone, seed=0), data, case.steps, case.batch,
         loss=loss, **options)
    stamps = torch.tensor(loss.stamps[SKIP:], dtype=torch.float64)
    return (1e3 * stamps.diff()).tolist()


def overhead_figures(case, data):
    """Per-step times of the three loops, alternated round by round so that they share the
    machine's load; the median and 20th percentile of each, and the harness's overhead."""
    loops = {"bare": (bare_loop, {}), "bare_fused_adamw": (bare_loop, {"fused": True}),
             "harness": (harness_loop, {})}
    times = {name: [] for name in loops}
    for _ in range(case.rounds):
        for name, (loop, options) in loops.items():
            times[name] += step_times_ms(loop, case, data, **options)
    figures = {}
    for name, values in times.items():
        values = torch.tensor(values)
        figures[f"{name}_ms_per_step_median"] = round(values.median().item(), 4)
        figures[f"{name}_ms_per_step_p20"] = round(values.quantile(0.2).item(), 4)
    for name in ("bare", "bare_fused_adamw"):
        for stat in ("median", "p20"):
            ratio = (figures[f"harness_ms_per_step_{stat}"]
                     / figures[f"{name}_ms_per_step_{stat}"])
            figures[f"overhead_vs_{name}_percent_{stat}"] = round(100 * (ratio - 1), 2)
    return figures


def timed_loss(benchmark, loop, case):
    """Time ``loop`` on a fresh network (``case.steps`` steps; 3 when benchmarks are off),
    note its milliseconds a step, and return its last loss."""
    data, steps = training_data(case), case.steps if not benchmark.disabled else 3

    def setup():
        return (build_backbone(case.shape, case.backbone, seed=0), data, steps, case.batch), {}

    loss = benchmark.pedantic(loop, setup=setup, rounds=5, warmup_rounds=1)
    if not benchmark.disabled:
        benchmark.extra_info["ms_per_step"] = 1e3 * benchmark.stats.stats.min / steps
    return loss


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_bare_pytorch_loop(benchmark, case):
    loss = timed_loss(benchmark, bare_loop, case)
    assert loss == loss                                        # finite, not NaN


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_harness_loop(benchmark, case):
    loss = timed_loss(benchmark, harness_loop, case)
    assert loss == loss                                        # finite, not NaN
    if benchmark.disabled:
        return
    figures = overhead_figures(case, training_data(case))
    benchmark.extra_info.update(figures)
    print(f"\n{case.name} training step, ms per step (median / 20th percentile of "
          f"{case.rounds * (case.steps - SKIP - 1)} steps each, one thread):")
    for name in ("bare", "bare_fused_adamw", "harness"):
        print(f"  {name:18s} {figures[f'{name}_ms_per_step_median']:.3f} / "
              f"{figures[f'{name}_ms_per_step_p20']:.3f}")
    for name in ("bare", "bare_fused_adamw"):
        print(f"  harness overhead vs {name}: "
              f"{figures[f'overhead_vs_{name}_percent_median']:+.1f} % (median), "
              f"{figures[f'overhead_vs_{name}_percent_p20']:+.1f} % (20th percentile)")
