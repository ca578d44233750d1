"""The shared training loop: schedule, EMA, determinism, checkpoints, errors, torchrun."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from bench.core.distributed import ProcessGroup, local_batch_size, rank_seed
from bench.core.errors import BenchError
from bench.core.training import (CHECKPOINT_NAME, TrainConfig, clip_gradients_, read_snapshot,
                                 snapshot_path, train_network, update_ema, warmup_cosine)
from methods.backbones import BackboneConfig, build_backbone

REPO = Path(__file__).resolve().parents[3]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def flow_loss(network, batch, generator):
    """Conditional flow matching on the straight path x_t = (1 - t) x_0 + t x_1."""
    x_0 = torch.randn(batch.shape, generator=generator)
    t = torch.rand(len(batch), generator=generator)
    x_t = (1 - t[:, None]) * x_0 + t[:, None] * batch
    return (network(x_t, t) - (batch - x_0)).square().mean()


def toy_data(n=256, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=generator) * 0.3 + torch.tensor([1.0, -1.0, 2.0, 0.0])


def toy_network(seed=0, width=16):
    return build_backbone((4,), BackboneConfig(width=width, depth=1, time_embedding=8), seed=seed)


def toy_config(**changes):
    settings = dict(steps=20, batch_size=16, learning_rate=1e-2, warmup_steps=3, ema_decay=0.9)
    settings.update(changes)
    return TrainConfig(**settings)


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


class Killed(Exception):
    """Stands for the process dying part-way through a run."""


def killed_at(step, loss_fn=flow_loss):
    """``loss_fn`` that dies when called for step ``step`` (0-based)."""
    calls = iter(range(10**9))

    def loss(network, batch, generator):
        if next(calls) == step:
            raise Killed
        return loss_fn(network, batch, generator)

    return loss


# --- learning-rate schedule and EMA -------------------------------------------------------


def test_warmup_then_cosine_at_known_steps():
    factor = warmup_cosine(TrainConfig(steps=110, warmup_steps=10))
    assert factor(0) == pytest.approx(0.1)
    assert factor(4) == pytest.approx(0.5)
    assert factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0)
    assert factor(35) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert factor(60) == pytest.approx(0.5)
    assert factor(109) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.99)))
    assert factor(110) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(TrainConfig(steps=100, warmup_steps=0))(0) == pytest.approx(1.0)


def test_loop_follows_the_schedule(tmp_path):
    config = toy_config(steps=20, warmup_steps=5, checkpoint_every=7)
    with pytest.raises(Killed):
        train_network(toy_network(), killed_at(7), toy_data(), config, 0, "cpu", "toy",
                      checkpoint_dir=tmp_path)
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert state["step"] == 7
    # the learning rate of the next step (index 7) is in force
    expected = config.learning_rate * warmup_cosine(config)(7)
    assert state["optimiser"]["param_groups"][0]["lr"] == pytest.approx(expected)
    assert expected < config.learning_rate


def test_update_ema_matches_closed_form():
    decay = 0.9
    values = [3.0, -1.0, 4.0, 1.5, -5.0, 9.0, 2.0]
    averaged = [torch.tensor([values[0]], dtype=torch.float64)]
    for value in values[1:]:
        update_ema(averaged, [torch.tensor([value], dtype=torch.float64)], decay)
    n = len(values) - 1
    closed = decay**n * values[0] + sum((1 - decay) * decay**(n - k) * values[k]
                                        for k in range(1, n + 1))
    assert averaged[0].item() == pytest.approx(closed, rel=1e-12)


def test_loop_ema_is_the_average_of_the_trained_weights():
    network = nn.Linear(1, 1, bias=False)
    seen = []

    def loss(net, batch, generator):
        seen.append(net.weight.item())          # p_k, the weight before step k
        return (net.weight.squeeze() - batch.mean()).square()

    config = toy_config(steps=40, ema_decay=0.8, grad_clip=0.0)
    result = train_network(network, loss, torch.full((8, 1), 5.0), config, 0, "cpu", "toy")
    weights = seen + [network.weight.item()]
    # a_0 = p_0; a_k = d_k a_(k-1) + (1 - d_k) p_k with d_k = min(0.8, k / (9 + k)).
    decays = [min(config.ema_decay, k / (9 + k)) for k in range(1, config.steps + 1)]
    assert decays[0] == pytest.approx(0.1) and decays[-1] == 0.8  # warm-up, then the decay
    expected = weights[0]
    for decay, weight in zip(decays, weights[1:]):
        expected = decay * expected + (1 - decay) * weight
    assert len(set(weights)) == config.steps + 1   # the weight moved every step
    assert result.ema.weight.item() == pytest.approx(expected, rel=1e-5)
    assert not result.ema.weight.requires_grad


# --- determinism and resume ---------------------------------------------------------------


def test_same_seed_gives_bitwise_identical_weights():
    runs = []
    for seed in (3, 3, 4):
        network = toy_network()
        result = train_network(network, flow_loss, toy_data(), toy_config(), seed, "cpu", "toy")
        runs.append((network, result))
    (a, ra), (b, rb), (c, rc) = runs
    assert_same_weights(a, b)
    assert_same_weights(ra.ema, rb.ema)
    assert ra.losses == rb.losses and len(ra.losses) == 20
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters()))
    assert ra.losses != rc.losses


def test_resume_after_a_kill_is_bitwise_identical(tmp_path):
    config = toy_config(steps=200, checkpoint_every=100)
    whole = toy_network()
    uninterrupted = train_network(whole, flow_loss, toy_data(), config, 5, "cpu", "toy")

    network = toy_network()
    with pytest.raises(Killed):
        train_network(network, killed_at(100), toy_data(), config, 5, "cpu", "toy",
                      checkpoint_dir=tmp_path)
    restarted = toy_network()
    resumed = train_network(restarted, flow_loss, toy_data(), config, 5, "cpu", "toy",
                            checkpoint_dir=tmp_path)

    assert resumed.resumed_from == 100 and resumed.steps == 200
    assert_same_weights(restarted, whole)
    assert_same_weights(resumed.ema, uninterrupted.ema)
    assert resumed.losses == uninterrupted.losses
    assert resumed.grad_norms == uninterrupted.grad_norms


def test_finished_checkpoint_is_returned_without_training(tmp_path):
    config = toy_config(steps=10, checkpoint_every=4)
    first = train_network(toy_network(), flow_loss, toy_data(), config, 0, "cpu", "toy",
                          checkpoint_dir=tmp_path)
    again = train_network(toy_network(), killed_at(0), toy_data(), config, 0, "cpu", "toy",
                          checkpoint_dir=tmp_path)
    assert again.resumed_from == 10 and again.losses == first.losses
    assert_same_weights(again.ema, first.ema)


def test_checkpoints_load_weights_only_and_leave_no_temporary_files(tmp_path):
    config = toy_config(steps=12, checkpoint_every=5)
    train_network(toy_network(), flow_loss, toy_data(), config, 0, "cpu", "toy",
                  checkpoint_dir=tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "ema-step10.pt", "ema-step12.pt", "ema-step5.pt", CHECKPOINT_NAME]
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert state["step"] == 12 and len(state["losses"]) == 12
    assert state["generators"].dtype == torch.uint8 and state["generators"].shape[0] == 1
    assert set(state) >= {"network", "ema", "optimiser", "scheduler", "fingerprint"}
    assert state["fingerprint"]["seed"] == 0 and state["fingerprint"]["train.steps"] == 12


def test_no_checkpoint_without_a_folder_or_interval(tmp_path):
    train_network(toy_network(), flow_loss, toy_data(), toy_config(steps=5), 0, "cpu", "toy",
                  checkpoint_dir=tmp_path)
    assert not any(tmp_path.iterdir())


# --- EMA snapshots along the budget ------------------------------------------------------


def test_snapshots_are_kept_at_checkpoints_evaluate_at_and_the_last_step(tmp_path):
    config = toy_config(steps=20, checkpoint_every=8, evaluate_at=(3, 8))
    assert config.snapshot_steps() == [3, 8, 16, 20]
    result = train_network(toy_network(), flow_loss, toy_data(), config, 0, "cpu", "toy",
                           checkpoint_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.glob("ema-step*.pt")) == [
        "ema-step16.pt", "ema-step20.pt", "ema-step3.pt", "ema-step8.pt"]
    last = read_snapshot(tmp_path, 20)
    assert last.step == 20
    for name, value in result.ema.state_dict().items():
        assert torch.equal(last.ema[name], value), name
    seconds = [read_snapshot(tmp_path, step).train_seconds for step in (3, 8, 16, 20)]
    assert seconds == sorted(seconds) and seconds[0] > 0


def test_a_snapshot_is_the_ema_the_run_held_at_that_step(tmp_path):
    uninterrupted = tmp_path / "whole"
    train_network(toy_network(), flow_loss, toy_data(), toy_config(evaluate_at=(7,)), 0, "cpu",
                  "toy", checkpoint_dir=uninterrupted)
    stopped = tmp_path / "stopped"
    with pytest.raises(Killed):  # dies in step 8, after the checkpoint of step 7
        train_network(toy_network(), killed_at(7), toy_data(), toy_config(checkpoint_every=7),
                      0, "cpu", "toy", checkpoint_dir=stopped)
    held = torch.load(stopped / CHECKPOINT_NAME, weights_only=True)["ema"]
    kept = read_snapshot(uninterrupted, 7).ema
    assert kept.keys() == held.keys()
    assert all(torch.equal(kept[name], held[name]) for name in held)


def test_keeping_snapshots_changes_no_weight(tmp_path):
    plain, keeping = toy_network(), toy_network()
    train_network(plain, flow_loss, toy_data(), toy_config(), 2, "cpu", "toy")
    train_network(keeping, flow_loss, toy_data(), toy_config(evaluate_at=(5, 10)), 2, "cpu",
                  "toy", checkpoint_dir=tmp_path)
    assert_same_weights(plain, keeping)


def test_training_time_adds_up_over_a_resume(tmp_path):
    config = toy_config(steps=40, checkpoint_every=20)
    with pytest.raises(Killed):
        train_network(toy_network(), killed_at(25), toy_data(), config, 0, "cpu", "toy",
                      checkpoint_dir=tmp_path)
    before = read_snapshot(tmp_path, 20).train_seconds
    train_network(toy_network(), flow_loss, toy_data(), config, 0, "cpu", "toy",
                  checkpoint_dir=tmp_path)
    assert read_snapshot(tmp_path, 40).train_seconds > before


def test_a_missing_snapshot_names_the_kept_steps_and_the_fix(tmp_path):
    train_network(toy_network(), flow_loss, toy_data(), toy_config(evaluate_at=(4,)), 0, "cpu",
                  "toy", checkpoint_dir=tmp_path)
    with pytest.raises(BenchError) as error:
        read_snapshot(tmp_path, 5)
    message = str(error.value)
    assert str(snapshot_path(tmp_path, 5)) in message
    assert "[4, 20]" in message and "delete the cell's folder" in message
    snapshot_path(tmp_path, 4).write_bytes(b"torn")
    with pytest.raises(BenchError, match="cannot read an EMA snapshot"):
        read_snapshot(tmp_path, 4)


@pytest.mark.parametrize("evaluate_at", [(0,), (5, 5)])
def test_evaluate_at_must_be_distinct_positive_steps(evaluate_at):
    with pytest.raises(BenchError, match=r"train.evaluate_at .*distinct positive"):
        toy_config(evaluate_at=evaluate_at)


def test_evaluate_at_beyond_the_budget_is_the_last_step():
    assert toy_config(steps=20, evaluate_at=(5, 20, 40)).snapshot_steps() == [5, 20]


@pytest.mark.parametrize("change, key", [
    (dict(config=dict(steps=30)), "train.steps"),
    (dict(config=dict(batch_size=32)), "train.batch_size"),
    (dict(width=32), "network"),
    (dict(seed=1), "seed"),
])
def test_checkpoint_of_another_setup_is_refused(tmp_path, change, key):
    train_network(toy_network(), flow_loss, toy_data(), toy_config(checkpoint_every=5), 0,
                  "cpu", "toy", checkpoint_dir=tmp_path)
    config = toy_config(checkpoint_every=5, **change.get("config", {}))
    network = toy_network(width=change.get("width", 16))
    with pytest.raises(BenchError) as error:
        train_network(network, flow_loss, toy_data(), config, change.get("seed", 0), "cpu",
                      "toy", checkpoint_dir=tmp_path)
    message = str(error.value)
    assert str(tmp_path / CHECKPOINT_NAME) in message
    assert key in message and "delete it" in message


def test_unreadable_checkpoint_is_refused(tmp_path):
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    with pytest.raises(BenchError, match="cannot read.*delete it"):
        train_network(toy_network(), flow_loss, toy_data(), toy_config(checkpoint_every=5), 0,
                      "cpu", "toy", checkpoint_dir=tmp_path)


# --- numerical failures and clipping ------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("sync_every", [1, 4])
def test_non_finite_loss_names_method_seed_and_step(tmp_path, bad, sync_every):
    calls = iter(range(10**9))

    def loss(network, batch, generator):
        value = flow_loss(network, batch, generator)
        return value * bad if next(calls) == 5 else value

    config = toy_config(steps=20, checkpoint_every=4)
    with pytest.raises(BenchError) as error:
        train_network(toy_network(), loss, toy_data(), config, 7, "cpu", "otfm",
                      checkpoint_dir=tmp_path, sync_every=sync_every)
    message = str(error.value)
    assert "'otfm'" in message and "seed 7" in message and "step 5 " in message
    assert str(bad) in message
    # the last checkpoint predates the failure and holds finite weights
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert state["step"] == 4
    assert all(torch.isfinite(value).all() for value in state["network"].values())


def test_non_finite_gradient_is_an_error():
    def loss(network, batch, generator):
        weight = network.weight
        return torch.sqrt(weight - weight.detach()).sum()   # 0, with an infinite gradient

    with pytest.raises(BenchError, match=r"'toy', seed 0: the gradient norm became .* step 0"):
        train_network(nn.Linear(3, 1), loss, toy_data(), toy_config(), 0, "cpu", "toy")


@pytest.mark.parametrize("grad_clip, largest, smallest", [(1e-9, 2e-3, 0.0), (0.0, 0.11, 0.09)])
def test_gradient_clipping_bounds_the_update(grad_clip, largest, smallest):
    # A gradient of 1e6 per weight moves Adam's first step by lr whatever its size; clipped
    # to a global norm of 1e-9 it falls far below Adam's eps (1e-8) and the step nearly
    # vanishes: |update| = lr * g / (g + eps) with g = 1e-10.
    network = nn.Linear(100, 1, bias=False)
    before = network.weight.detach().clone()

    def loss(net, batch, generator):
        return 1e6 * net.weight.sum()

    config = toy_config(steps=1, warmup_steps=0, learning_rate=0.1, grad_clip=grad_clip)
    result = train_network(network, loss, toy_data(), config, 0, "cpu", "toy")
    update = (network.weight.detach() - before).abs()
    assert smallest <= update.min() and update.max() <= largest
    assert result.grad_norms[0] == pytest.approx(1e7, rel=1e-5)   # recorded before clipping


@pytest.mark.parametrize("max_norm", [0.5, 3.0, 1e3])
@pytest.mark.parametrize("lazy", [False, True])
def test_clip_gradients_matches_torch(max_norm, lazy):
    generator = torch.Generator().manual_seed(0)
    shapes = [(7, 3), (5,), (2, 2, 2)]
    ours = [torch.zeros(shape, requires_grad=True) for shape in shapes]
    reference = [torch.zeros(shape, requires_grad=True) for shape in shapes]
    for a, b in zip(ours, reference):
        a.grad = torch.randn(a.shape, generator=generator)
        b.grad = a.grad.clone()
    norm = clip_gradients_(ours, max_norm, lazy=lazy)
    expected = nn.utils.clip_grad_norm_(reference, max_norm)
    assert norm.item() == pytest.approx(expected.item(), rel=1e-6)
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a.grad, b.grad)


# --- devices, progress, configuration -----------------------------------------------------


def test_cpu_training_never_autocasts():
    states = []

    def loss(network, batch, generator):
        states.append((torch.is_autocast_enabled("cpu"), torch.is_autocast_enabled("cuda")))
        value = flow_loss(network, batch, generator)
        assert value.dtype == torch.float32
        return value

    train_network(toy_network(), loss, toy_data(), toy_config(steps=3, mixed_precision=True),
                  0, "cpu", "toy")
    assert states == [(False, False)] * 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_autocasts_to_bfloat16():
    dtypes = []

    def loss(network, batch, generator):
        output = network(batch, torch.rand(len(batch), device=batch.device))
        dtypes.append(output.dtype)
        return output.float().square().mean()

    result = train_network(toy_network(), loss, toy_data(), toy_config(steps=3), 0, "cuda",
                           "toy")
    assert dtypes == [torch.bfloat16] * 3 and len(result.losses) == 3


def test_progress_bar_shows_the_loss_only_when_asked(capsys):
    train_network(toy_network(), flow_loss, toy_data(), toy_config(progress=True), 0, "cpu",
                  "toy")
    assert "loss=" in capsys.readouterr().err
    train_network(toy_network(), flow_loss, toy_data(), toy_config(), 0, "cpu", "toy")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("field, value", [("steps", 0), ("batch_size", 0), ("ema_decay", 1.5),
                                          ("learning_rate", 0.0), ("grad_clip", -1.0)])
def test_bad_settings_are_refused_by_name(field, value):
    with pytest.raises(BenchError, match=f"train.{field}"):
        TrainConfig(**{field: value})


def test_batch_must_split_evenly_over_processes():
    assert local_batch_size(12, ProcessGroup(1, 3)) == 4
    with pytest.raises(BenchError, match="batch_size=10.*3 processes"):
        local_batch_size(10, ProcessGroup(0, 3))


def test_rank_seeds_are_distinct_and_rank_zero_keeps_the_seed():
    assert rank_seed(7, 0) == 7
    seeds = {rank_seed(7, rank) for rank in range(8)} | {rank_seed(8, rank) for rank in range(8)}
    assert len(seeds) == 16 and rank_seed(7, 3) == rank_seed(7, 3)


def test_trains_a_voxel_unet():
    config = BackboneConfig(unet_channels=(8, 8), unet_attention=(False, False),
                            unet_norm_groups=8, unet_head_channels=8)
    network = build_backbone((1, 8, 8, 8), config, seed=0)
    data = torch.randn(6, 1, 8, 8, 8, generator=torch.Generator().manual_seed(0))

    def loss(net, batch, generator):
        t = torch.rand(len(batch), generator=generator)
        return (net(batch, t) - batch).square().mean()

    result = train_network(network, loss, data, toy_config(steps=4, batch_size=2), 0, "cpu",
                           "unet")
    assert len(result.losses) == 4 and result.losses[-1] < result.losses[0]


# --- torchrun with DistributedDataParallel --------------------------------------------------


def test_two_processes_under_torchrun_end_with_identical_weights(tmp_path):
    out, checkpoints = tmp_path / "out", tmp_path / "checkpoints"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", "-m", "bench.torchrun_check", "--out", str(out),
               "--steps", "30", "--checkpoint-dir", str(checkpoints)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "weights identical on all ranks: yes" in done.stdout
    ranks = [torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    for key in ("network", "ema"):
        for name, value in ranks[0][key].items():
            assert torch.equal(value, ranks[1][key][name]), (key, name)
    losses = ranks[0]["losses"]
    assert losses == ranks[1]["losses"] and len(losses) == 30
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5])
    # rank 0 wrote one checkpoint holding both ranks' (different) generator states, and
    # the EMA snapshots of the checkpoint steps
    assert sorted(path.name for path in checkpoints.iterdir()) == [
        "ema-step10.pt", "ema-step20.pt", "ema-step30.pt", CHECKPOINT_NAME]
    state = torch.load(checkpoints / CHECKPOINT_NAME, weights_only=True)
    assert state["step"] == 30 and state["fingerprint"]["processes"] == 2
    assert state["generators"].shape[0] == 2
    assert not torch.equal(state["generators"][0], state["generators"][1])
