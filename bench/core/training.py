"""The one training loop every deep method shares.

AdamW, linear warm-up then cosine decay of the learning rate, gradient
clipping and an exponential moving average (EMA) of the weights, which is
what methods sample with. On CUDA the forward pass runs under bfloat16
autocast (never on CPU). A loss or gradient norm that becomes NaN or infinite
stops training with an error naming the method, seed and step.

Checkpoints (``config.checkpoint_every > 0`` and a ``checkpoint_dir``) are
written atomically and hold everything the loop needs to continue bitwise
identically: network, EMA, optimiser, scheduler, generator states, step and
losses. A later call with the same ``checkpoint_dir`` resumes from them; a
checkpoint of a different set-up is refused, never silently continued.

EMA snapshots (:func:`read_snapshot`) keep, at every checkpoint step, every step
of ``config.evaluate_at`` and the last step, only what sampling needs: the EMA
weights and the training wall time up to that step. They let the harness score
a method along its training budget from one training run. A snapshot at step
b of an S-step run is the EMA of a schedule not yet annealed at b, not the end
of a b-step run.

Under torchrun (an initialised ``torch.distributed`` group, see
:mod:`bench.core.distributed`) the same loop trains with DistributedDataParallel.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from bench.core.distributed import (ProcessGroup, current_group, gather_rows,
                                    local_batch_size, mean_over_ranks, rank_seed)
from bench.core.errors import BenchError, NonFiniteError
from bench.core.io import atomic_path

# loss_fn(network, batch, generator) -> scalar loss; the generator is the
# loop's own (a CPU generator), so the noise a loss draws is seeded with the fit.
# Under DistributedDataParallel ``network`` is the wrapper: call it, do not
# reach into its attributes.
LossFn = Callable[[nn.Module, torch.Tensor, torch.Generator], torch.Tensor]

CHECKPOINT_NAME = "train_checkpoint.pt"
CHECKPOINT_FORMAT = 2
SNAPSHOT_FORMAT = 1
# Settings that change how a run goes on or what it keeps, but not what it computes.
_NOT_FINGERPRINTED = ("checkpoint_every", "progress", "evaluate_at")


@dataclass(frozen=True)
class TrainConfig:
    """Training budget and optimiser settings, the same for every deep method of a run.

    Attributes:
        steps: optimiser steps.
        batch_size: samples per step, summed over all processes under torchrun.
        learning_rate: peak AdamW learning rate, reached at the end of warm-up.
        weight_decay: AdamW's decoupled weight decay.
        warmup_steps: steps of linear warm-up before the cosine decay.
        ema_decay: EMA weight of the old average per step, in [0, 1], reached after a
            warm-up (see :func:`ema_decay_at`).
        grad_clip: largest global gradient norm; 0 turns clipping off.
        mixed_precision: bfloat16 autocast on CUDA (ignored on CPU).
        checkpoint_every: steps between checkpoints; 0 writes none.
        progress: show a progress bar with the loss (off for CI logs).
        evaluate_at: training steps, besides the last, whose EMA weights are kept as
            snapshots (in ``checkpoint_dir``) to score quality along the budget; steps
            at or beyond ``steps`` are the last step's (so that a preset's budgets
            survive ``--set train.steps=...``).
    """

    steps: int = 2000
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    mixed_precision: bool = True
    checkpoint_every: int = 0
    progress: bool = False
    evaluate_at: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        checks = [("steps", self.steps >= 1, "at least 1"),
                  ("batch_size", self.batch_size >= 1, "at least 1"),
                  ("learning_rate", self.learning_rate > 0, "positive"),
                  ("weight_decay", self.weight_decay >= 0, "0 or more"),
                  ("warmup_steps", self.warmup_steps >= 0, "0 or more"),
                  ("ema_decay", 0.0 <= self.ema_decay <= 1.0, "in [0, 1]"),
                  ("grad_clip", self.grad_clip >= 0, "0 (off) or positive"),
                  ("checkpoint_every", self.checkpoint_every >= 0, "0 (off) or positive")]
        for name, ok, allowed in checks:
            if not ok:
                raise BenchError(f"train.{name} must be {allowed}, got {getattr(self, name)!r}")
        if min(self.evaluate_at, default=1) < 1 or len(set(self.evaluate_at)) != len(
                self.evaluate_at):
            raise BenchError(f"train.evaluate_at {list(self.evaluate_at)}: give distinct "
                             f"positive training steps, e.g. [250, 500, 1000]")

    def snapshot_steps(self) -> list[int]:
        """The steps whose EMA weights are kept: the checkpoint steps, ``evaluate_at`` and
        the last step."""
        every = self.checkpoint_every
        checkpoints = range(every, self.steps + 1, every) if every > 0 else []
        return sorted({*checkpoints, *(step for step in self.evaluate_at if step < self.steps),
                       self.steps})


@dataclass(frozen=True)
class Snapshot:
    """The EMA weights a training run held at one step (see :func:`read_snapshot`).

    Attributes:
        step: optimiser steps taken when it was kept.
        ema: the EMA network's state dict.
        train_seconds: wall-clock seconds of training up to that step, summed over
            resumes.
    """

    step: int
    ema: dict[str, torch.Tensor]
    train_seconds: float


@dataclass
class TrainResult:
    """Outcome of :func:`train_network`.

    Attributes:
        ema: the EMA copy of the network (what methods sample with), not trainable.
        losses: training loss per step (mean over processes under torchrun).
        steps: steps trained in total, including those before a resume.
        wall_time_s: wall-clock seconds of this call.
        parameter_count: trainable parameters of the network.
        grad_norms: global gradient norm per step, before clipping.
        resumed_from: the step a checkpoint resumed from (0 for a fresh start).
    """

    ema: nn.Module
    losses: list[float] = field(default_factory=list)
    steps: int = 0
    wall_time_s: float = 0.0
    parameter_count: int = 0
    grad_norms: list[float] = field(default_factory=list)
    resumed_from: int = 0


def train_network(network: nn.Module, loss_fn: LossFn, data: torch.Tensor, config: TrainConfig,
                  seed: int, device: torch.device | str, name: str, *,
                  checkpoint_dir: str | Path | None = None,
                  sync_every: int | None = None) -> TrainResult:
    """Train ``network`` on ``data`` (N, *shape) by minimising ``loss_fn``.

    Batches are drawn with replacement by a CPU generator seeded with ``seed``
    (one per rank under torchrun), which is also passed to ``loss_fn`` for its
    noise, so the same seed on CPU gives bitwise identical weights. Initial
    weights are the caller's (see ``methods.backbones.build_backbone(seed=)``).

    Args:
        network: the model; trained in place.
        loss_fn: scalar loss of one batch, ``loss_fn(network, batch, generator)``.
        data: the training set in representation space, (N, *shape).
        config: budget and optimiser settings.
        seed: seeds batch order and the noise drawn inside the loop.
        device: where to train.
        name: method name, for error messages and the progress bar.
        checkpoint_dir: folder of the checkpoint; with ``config.checkpoint_every > 0``
            a checkpoint is written there every that many steps and at the end, and
            a checkpoint found there at the start is resumed. With checkpoints or
            ``config.evaluate_at``, the EMA snapshots of
            :meth:`TrainConfig.snapshot_steps` go there too (with neither, the folder
            is not used at all). Under torchrun rank 0 writes them and every rank
            reads them: use a shared filesystem.
        sync_every: steps between the host reading the losses back (finite check,
            progress bar, logging); every step is checked, this only sets how soon.
            Default 1 on CPU, 50 on accelerators (no device sync per step).

    Returns:
        The EMA network, losses and gradient norms of every step.

    Raises:
        BenchError: a non-finite loss or gradient norm (naming method, seed and
            step), a checkpoint of a different set-up, or an unreadable one.
    """
    start = time.perf_counter()
    device = torch.device(device)
    if len(data) < 1:
        raise BenchError(f"method {name!r}: no training data (got shape {tuple(data.shape)})")
    if sync_every is not None and sync_every < 1:
        raise BenchError(f"sync_every must be a positive number of steps, got {sync_every}")
    loop = _Loop.create(network, data, config, seed, device, name, checkpoint_dir)
    resumed_from = loop.step
    loop.run(loss_fn, sync_every or (1 if device.type == "cpu" else 50))
    return TrainResult(ema=loop.ema, losses=loop.losses, steps=loop.step,
                       wall_time_s=time.perf_counter() - start,
                       parameter_count=sum(p.numel() for p in network.parameters()
                                           if p.requires_grad),
                       grad_norms=loop.grad_norms, resumed_from=resumed_from)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed the CPU generator for the block (a network's initial weights), then restore the
    global random state, so that building a network never consumes the caller's numbers."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def snapshot_path(checkpoint_dir: str | Path, step: int) -> Path:
    """Where the EMA snapshot of ``step`` lives in a checkpoint folder."""
    return Path(checkpoint_dir) / f"ema-step{step}.pt"


def kept_steps(checkpoint_dir: str | Path) -> list[int]:
    """The steps of the EMA snapshots in a checkpoint folder, ascending."""
    return sorted(int(found.stem.removeprefix("ema-step"))
                  for found in Path(checkpoint_dir).glob("ema-step*.pt"))


def read_snapshot(checkpoint_dir: str | Path, step: int) -> Snapshot:
    """The EMA snapshot that :func:`train_network` kept at ``step`` in ``checkpoint_dir``.

    Raises:
        BenchError: no snapshot of that step (naming the steps there are), or an
            unreadable one.
    """
    path = snapshot_path(checkpoint_dir, step)
    if not path.is_file():
        raise BenchError(f"{path}: no EMA snapshot of training step {step} (kept: "
                         f"{kept_steps(checkpoint_dir) or 'none'}); the training kept "
                         f"snapshots at its checkpoint steps and train.evaluate_at when it "
                         f"ran: pick one of those, or delete the cell's folder to train it "
                         f"again")
    payload = _read_payload(path, SNAPSHOT_FORMAT, "an EMA snapshot",
                            "delete the cell's folder to train it again")
    return Snapshot(step=int(payload["step"]), ema=payload["ema"],
                    train_seconds=float(payload["train_seconds"]))


def warmup_cosine(config: TrainConfig) -> Callable[[int], float]:
    """Learning-rate factor of optimiser step ``k`` (0-based): linear warm-up, then cosine.

    ``(k + 1) / W`` for ``k < W`` (W = warm-up steps), then
    ``(1 + cos(pi * (k - W) / (S - W))) / 2`` for S total steps: 1 right after
    warm-up, falling towards 0 at the last step.
    """

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def ema_decay_at(step: int, decay: float) -> float:
    """The EMA decay of the update after optimiser step ``step`` (counted from 0).

    ``min(decay, (1 + step) / (10 + step))``, the warm-up of TensorFlow's
    ExponentialMovingAverage (``num_updates``): the first updates mostly take
    the new weights, so the random initialisation is forgotten. Without it,
    0.999^2000 = 13.5 % of the initial weights remained in the quick preset's
    EMA, and DDPM, whose x0 prediction divides epsilon's error by
    sqrt(alpha_bar_T) ~ 0.006, drew latents 15 times the data's norm.
    """
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(averaged: list[torch.Tensor], current: list[torch.Tensor], decay: float) -> None:
    """EMA step ``a <- decay * a + (1 - decay) * c`` for every pair, in one fused call."""
    torch._foreach_lerp_(averaged, current, 1.0 - decay)


@torch.no_grad()
def clip_gradients_(params: list[torch.Tensor], max_norm: float, *,
                    lazy: bool = False) -> torch.Tensor:
    """Scale gradients to a global L2 norm of at most ``max_norm``; return the norm before.

    The coefficient is torch.nn.utils.clip_grad_norm_'s, ``min(1, max_norm / (norm +
    1e-6))``, applied with multi-tensor kernels. ``lazy`` (for host tensors, where
    reading the norm costs nothing) skips the multiply when it would be by 1.
    ``max_norm`` infinite only measures the norm.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=params[0].device if params else None)
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0,
                                                                    dtype=torch.float32)))
    if math.isinf(max_norm):
        return norm
    if lazy:
        coefficient = max_norm / (norm.item() + 1e-6)
        if coefficient < 1.0:
            torch._foreach_mul_(grads, coefficient)
    else:
        torch._foreach_mul_(grads, torch.clamp(max_norm / (norm + 1e-6), max=1.0))
    return norm


def config_fingerprint(network: nn.Module, data: torch.Tensor, config: TrainConfig, seed: int,
                       name: str, world_size: int) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: settings, seed, data and network shapes."""
    settings = {key: value for key, value in dataclasses.asdict(config).items()
                if key not in _NOT_FINGERPRINTED}
    shapes = [[key, list(value.shape), str(value.dtype)]
              for key, value in network.state_dict().items()]
    network_hash = hashlib.sha256(json.dumps(shapes).encode()).hexdigest()[:16]
    return {"method": name, "seed": seed, "processes": world_size,
            "data": [list(data.shape[1:]), str(data.dtype)], "network": network_hash,
            **{f"train.{key}": value for key, value in settings.items()}}


class _Loop:
    """State of one training run: network, EMA, optimiser, schedule, generator, logs."""

    def __init__(self, network: nn.Module, data: torch.Tensor, config: TrainConfig, seed: int,
                 device: torch.device, name: str, group: ProcessGroup,
                 checkpoint: Path | None, snapshot_dir: Path | None) -> None:
        self.network, self.config, self.seed, self.name = network, config, seed, name
        self.device, self.group, self.checkpoint = device, group, checkpoint
        self.snapshot_dir, self.snapshot_steps = snapshot_dir, set(config.snapshot_steps())
        self.seconds_before, self.started = 0.0, time.perf_counter()
        self.data = data.to(device)
        self.ema = _frozen_copy(network)
        fused = device.type in ("cpu", "cuda")
        self.optimiser = torch.optim.AdamW(network.parameters(), lr=config.learning_rate,
                                           weight_decay=config.weight_decay, fused=fused)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimiser, warmup_cosine(config))
        self.generator = torch.Generator().manual_seed(rank_seed(seed, group.rank))
        self.step = 0
        self.losses: list[float] = []
        self.grad_norms: list[float] = []
        self.model: nn.Module = network
        self.fingerprint = config_fingerprint(network, data, config, seed, name, group.size)

    @classmethod
    def create(cls, network: nn.Module, data: torch.Tensor, config: TrainConfig, seed: int,
               device: torch.device, name: str, checkpoint_dir: str | Path | None) -> "_Loop":
        """Set up on ``device``, resume from a checkpoint if there is one, wrap for DDP."""
        group = current_group()
        if group.size > 1 and device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        network.to(device).train()
        checkpoint = snapshot_dir = None
        if checkpoint_dir is not None and config.checkpoint_every > 0:
            checkpoint = Path(checkpoint_dir) / CHECKPOINT_NAME
        if checkpoint_dir is not None and (config.checkpoint_every > 0 or config.evaluate_at):
            snapshot_dir = Path(checkpoint_dir)
        loop = cls(network, data, config, seed, device, name, group, checkpoint, snapshot_dir)
        if checkpoint is not None and checkpoint.is_file():
            loop.restore(checkpoint, _read_checkpoint(checkpoint))
        if group.size > 1:
            # DDP broadcasts rank 0's weights; the EMA starts from (or keeps) the same.
            loop.model = DistributedDataParallel(
                network, device_ids=[device.index] if device.type == "cuda" else None)
            if loop.step == 0:
                loop.ema.load_state_dict(network.state_dict())
        return loop

    def run(self, loss_fn: LossFn, sync_every: int) -> None:
        """Train from ``self.step`` to ``config.steps``."""
        config, generator = self.config, self.generator
        params: list[torch.Tensor] = [p for p in self.network.parameters() if p.requires_grad]
        ema_params: list[torch.Tensor] = [
            p for p, q in zip(self.ema.parameters(), self.network.parameters()) if q.requires_grad]
        buffers, ema_buffers = list(self.network.buffers()), list(self.ema.buffers())
        max_norm = config.grad_clip if config.grad_clip > 0 else math.inf
        lazy_clip = self.device.type == "cpu"
        batch = local_batch_size(config.batch_size, self.group)
        autocast = self._autocast()
        pending: list[torch.Tensor] = []
        bar = tqdm(total=config.steps, initial=self.step, desc=self.name, unit="step",
                   disable=not (config.progress and self.group.is_main))
        self.started = time.perf_counter()
        with bar:
            for step in range(self.step, config.steps):
                index = torch.randint(len(self.data), (batch,), generator=generator)
                with autocast:
                    loss = loss_fn(self.model, self.data[index.to(self.device)], generator)
                self.optimiser.zero_grad(set_to_none=True)
                loss.backward()
                norm = clip_gradients_(params, max_norm, lazy=lazy_clip)
                self.optimiser.step()
                self.schedule.step()
                update_ema(ema_params, params, ema_decay_at(step, config.ema_decay))
                if buffers:
                    torch._foreach_copy_(ema_buffers, buffers)
                pending += (loss.detach().float().reshape(()), norm)
                self.step = step + 1
                due = self._checkpoint_due()
                keep = self.snapshot_dir is not None and self.step in self.snapshot_steps
                if due or keep or len(pending) >= 2 * sync_every or self.step == config.steps:
                    self._absorb(pending, bar)
                    pending = []
                # The snapshot first: a kill between the two replays the steps up to it.
                if keep:
                    self.keep_snapshot()
                if due:
                    self.save()
        self.optimiser.zero_grad(set_to_none=True)

    def _checkpoint_due(self) -> bool:
        every = self.config.checkpoint_every
        return self.checkpoint is not None and (self.step % every == 0
                                                or self.step == self.config.steps)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.config.mixed_precision and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _absorb(self, pending: list[torch.Tensor], bar: tqdm) -> None:
        """Bring the last steps' (loss, norm) pairs to the host; stop on a non-finite one."""
        values = mean_over_ranks(torch.stack(pending).view(-1, 2), self.group).tolist()
        first = self.step - len(values)
        for row, (loss, norm) in enumerate(values):
            if not (math.isfinite(loss) and math.isfinite(norm)):
                what = (f"the training loss became {loss}" if not math.isfinite(loss) else
                        f"the gradient norm became {norm} (loss {loss:.6g})")
                raise NonFiniteError(f"method {self.name!r}, seed {self.seed}: {what} at step "
                                     f"{first + row} of {self.config.steps}; lower "
                                     f"train.learning_rate, check the data, or use another "
                                     f"seed")
        self.losses += [loss for loss, _ in values]
        self.grad_norms += [norm for _, norm in values]
        if not bar.disable:
            bar.update(len(values))
            bar.set_postfix(loss=f"{values[-1][0]:.4g}", refresh=False)

    @property
    def train_seconds(self) -> float:
        """Wall-clock seconds of training so far, over every resume."""
        return self.seconds_before + time.perf_counter() - self.started

    def keep_snapshot(self) -> None:
        """Write the EMA snapshot of this step atomically (rank 0 only)."""
        if self.snapshot_dir is None or not self.group.is_main:
            return
        payload = {"format_version": SNAPSHOT_FORMAT, "fingerprint": self.fingerprint,
                   "step": self.step, "ema": self.ema.state_dict(),
                   "train_seconds": self.train_seconds}
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(snapshot_path(self.snapshot_dir, self.step)) as tmp:
            torch.save(payload, tmp)

    def save(self) -> None:
        """Write the checkpoint atomically (rank 0 only; every rank must call this)."""
        if self.checkpoint is None:
            raise BenchError(f"method {self.name!r}: training has no checkpoint to write")
        generators = gather_rows(self.generator.get_state(), self.group, self.device)
        if not self.group.is_main:
            return
        payload = {"format_version": CHECKPOINT_FORMAT, "fingerprint": self.fingerprint,
                   "step": self.step, "network": self.network.state_dict(),
                   "ema": self.ema.state_dict(), "optimiser": self.optimiser.state_dict(),
                   "scheduler": self.schedule.state_dict(), "generators": generators,
                   "losses": torch.tensor(self.losses, dtype=torch.float64),
                   "grad_norms": torch.tensor(self.grad_norms, dtype=torch.float64),
                   "train_seconds": self.train_seconds}
        with atomic_path(self.checkpoint) as tmp:
            torch.save(payload, tmp)

    def restore(self, path: Path, payload: dict[str, Any]) -> None:
        """Continue from the checkpoint that :meth:`save` wrote to ``path`` (same fingerprint)."""
        _check_fingerprint(path, payload, self.fingerprint)
        self.network.load_state_dict(payload["network"])
        self.ema.load_state_dict(payload["ema"])
        self.optimiser.load_state_dict(payload["optimiser"])
        self.schedule.load_state_dict(payload["scheduler"])
        self.generator.set_state(payload["generators"][self.group.rank].contiguous())
        self.step = int(payload["step"])
        self.losses = payload["losses"].tolist()
        self.grad_norms = payload["grad_norms"].tolist()
        self.seconds_before = float(payload["train_seconds"])


def _frozen_copy(network: nn.Module) -> nn.Module:
    """A copy of ``network`` that autograd ignores (the EMA)."""
    return copy.deepcopy(network).requires_grad_(False).eval()


def _read_checkpoint(path: Path) -> dict[str, Any]:
    return _read_payload(path, CHECKPOINT_FORMAT, "a training checkpoint",
                         "delete it to train from the start")


def _read_payload(path: Path, format_version: int, what: str, fix: str) -> dict[str, Any]:
    """A file the loop wrote with ``torch.save``, of the given format; else a BenchError."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: any unpickling error
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        raise BenchError(f"{path}: cannot read {what} ({type(error).__name__}: {reason}); "
                         f"{fix}") from error
    if not isinstance(payload, dict) or payload.get("format_version") != format_version:
        raise BenchError(f"{path}: not {what} of format {format_version}; {fix}")
    return payload


def _check_fingerprint(path: Path, payload: dict[str, Any], expected: dict[str, Any]) -> None:
    found = payload.get("fingerprint", {})
    differences = [f"{key}: checkpoint {found.get(key)!r}, now {value!r}"
                   for key, value in expected.items() if found.get(key) != value]
    if differences:
        raise BenchError(f"{path}: this checkpoint is from a different training set-up "
                         f"({'; '.join(differences)}); delete it to train from the start, or "
                         f"restore the original settings to resume")
