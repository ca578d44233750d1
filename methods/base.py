"""The contract every generative method keeps.

A method is fitted on a training set in representation space (latent vectors
or voxel grids: it never sees volumes) and then samples at any step budget.
Like a scikit-learn estimator, its constructor stores hyperparameters (one
typed dataclass, ``Params``) unchanged; learned state is set only by ``fit``;
``sample`` before ``fit`` raises a clear error.
"""

from __future__ import annotations

import copy
import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Protocol

import numpy as np
import torch

from bench.core.errors import BenchError
from bench.core.io import atomic_path
from bench.core.params import with_overrides
from bench.core.registry import Registry
from bench.core.training import TrainConfig, read_snapshot
from methods.backbones import BackboneConfig

SAVE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Params:
    """Hyperparameters of a method; subclasses add typed fields with defaults."""


_Params = Params  # the class attribute Method.Params shadows the name inside Method


class GroundTruth(Protocol):
    """Real skulls that no split of the dataset holds, for the reference generators.

    The run provides it (:mod:`bench.data.oracle`); a method that learns
    never reads it.
    """

    def subjects(self, n: int, seed: int) -> np.ndarray:
        """``n`` real skulls, bool (n, R, R, R); skull i depends only on (seed, i)."""

    def encode(self, volumes: np.ndarray) -> torch.Tensor:
        """Volumes (N, R, R, R) in the run's representation, (N, *shape)."""


@dataclass(frozen=True)
class FitConfig:
    """What every deep method of one run shares: backbone and training budget.

    ``checkpoint_dir`` is where training checkpoints go (and are resumed
    from); None trains without checkpoints. ``truth`` is the run's ground
    truth, which only the reference generators read.
    """

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint_dir: Path | None = None
    truth: GroundTruth | None = None


@dataclass
class FitReport:
    """What ``fit`` did.

    Attributes:
        method: registered name.
        seed: the fit's seed.
        steps: optimiser steps taken (0 for methods without training).
        losses: training loss per step (empty without training).
        wall_time_s: wall-clock seconds of the fit.
        parameter_count: trainable parameters of the network (0 without one).
        extra: method-specific figures (e.g. reflow pairs, coupling cost).
    """

    method: str
    seed: int
    steps: int = 0
    losses: list[float] = field(default_factory=list)
    wall_time_s: float = 0.0
    parameter_count: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def final_loss(self) -> float | None:
        """Mean loss of the last 10 % of steps, or None without training."""
        if not self.losses:
            return None
        tail = self.losses[-max(len(self.losses) // 10, 1):]
        return float(sum(tail) / len(tail))


class SampleResult(NamedTuple):
    """Samples in representation space (n, *shape) and the network evaluations used."""

    samples: torch.Tensor
    nfe: int


class Method(ABC):
    """Base class of generative methods; register subclasses with ``@register_method``.

    Subclasses set ``Params`` (a frozen dataclass of hyperparameters) and
    ``description`` (one line for ``bench list``), and implement ``_fit``,
    ``_sample``, ``_state`` and ``_restore``. A *reference* (``reference =
    True``: the oracles, the floors, train-copy) is shown beside the methods
    and never ranked; its samples may be volumes rather than representation
    tensors (``space = "volumes"``), which the run uses without decoding, and a
    method that samples the run's ground truth cannot be saved (``saveable =
    False``). A method trained by the shared loop sets ``trains = True`` and
    implements ``_load_weights``, so that it can be sampled along its training
    budget (:meth:`at_training_step`).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params
    reference: ClassVar[bool] = False
    space: ClassVar[str] = "representation"
    saveable: ClassVar[bool] = True
    trains: ClassVar[bool] = False

    def __init__(self, params: _Params | None = None, **overrides: Any) -> None:
        base = params if params is not None else self.Params()
        if not isinstance(base, self.Params):
            raise BenchError(f"method {self.name!r}: params must be {self.Params.__name__}, "
                             f"got {type(base).__name__}")
        self.params = with_overrides("method", self.name, base, overrides)
        self.fitted_ = False
        self.data_shape_: tuple[int, ...] | None = None

    def fit(self, train: torch.Tensor, val: torch.Tensor | None, config: FitConfig, seed: int,
            device: torch.device | str = "cpu") -> FitReport:
        """Learn the distribution of ``train`` (N, *shape) in representation space."""
        if train.ndim < 2 or len(train) < 2:
            raise BenchError(f"method {self.name!r}: fit needs at least 2 training samples of "
                             f"shape (N, ...), got {tuple(train.shape)}")
        self.data_shape_ = tuple(train.shape[1:])
        report = self._fit(train, val, config, seed, torch.device(device))
        self.fitted_ = True
        return report

    def sample(self, n: int, steps: int, seed: int,
               device: torch.device | str = "cpu") -> SampleResult:
        """Draw ``n`` samples with a budget of ``steps`` sampling steps.

        Sample i depends only on (seed, i), not on n or on batching.
        """
        self._check_fitted()
        if n < 1 or steps < 1:
            raise BenchError(f"method {self.name!r}: n and steps must be positive, "
                             f"got n={n}, steps={steps}")
        return self._sample(n, steps, seed, torch.device(device))

    def save(self, path: str | Path) -> None:
        """Write the fitted method atomically; read it back with :meth:`load`."""
        self._check_fitted()
        payload = {"format_version": SAVE_FORMAT_VERSION, "method": self.name,
                   "params": dataclasses.asdict(self.params),
                   "data_shape": list(self._data_shape()), "state": self._state()}
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> "Method":
        """Read a method written by :meth:`save` (weights only, no pickled code)."""
        try:
            payload = torch.load(path, map_location=device, weights_only=True)
        except (OSError, RuntimeError, EOFError) as error:
            raise BenchError(f"{path}: cannot read a saved method ({error})") from error
        if payload.get("format_version") != SAVE_FORMAT_VERSION:
            raise BenchError(f"{path}: format version {payload.get('format_version')}, this "
                             f"code reads {SAVE_FORMAT_VERSION}; fit the method again")
        if cls.name and payload["method"] != cls.name:
            raise BenchError(f"{path}: holds method {payload['method']!r}, not {cls.name!r}")
        method_cls = METHODS.get(payload["method"])
        method = method_cls(method_cls.Params(**payload["params"]))
        method.data_shape_ = tuple(payload["data_shape"])
        method._restore(payload["state"], torch.device(device))
        method.fitted_ = True
        return method

    def at_training_step(self, step: int, checkpoint_dir: str | Path) -> tuple["Method", float]:
        """A copy of this fitted method with the EMA weights its training held at ``step``,
        and the seconds of training up to that step.

        Read from the EMA snapshots that the fit kept in ``checkpoint_dir``
        (:func:`bench.core.training.read_snapshot`); this method is unchanged.
        """
        self._check_fitted()
        if not self.trains:
            raise BenchError(f"method {self.name!r} is not trained step by step, so it has no "
                             f"training budget to evaluate at step {step}")
        snapshot = read_snapshot(self._snapshot_dir(Path(checkpoint_dir)), step)
        earlier = copy.deepcopy(self)
        earlier._load_weights(snapshot.ema)
        return earlier, snapshot.train_seconds

    def _snapshot_dir(self, checkpoint_dir: Path) -> Path:
        """Where the training whose budget is evaluated keeps its snapshots."""
        return checkpoint_dir

    def _load_weights(self, ema: dict[str, torch.Tensor]) -> None:
        """Replace the sampling network's weights by ``ema`` (methods with ``trains``)."""
        raise BenchError(f"method {self.name!r} sets trains = True but does not implement "
                         f"_load_weights")

    def _check_fitted(self) -> None:
        if not self.fitted_:
            raise BenchError(f"method {self.name!r} is not fitted: call fit(train, val, config, "
                             f"seed, device) or Method.load(path) first")

    def _data_shape(self) -> tuple[int, ...]:
        """``data_shape_``, which ``fit`` sets before ``_fit`` and ``load`` before ``_restore``."""
        if self.data_shape_ is None:
            raise BenchError(f"method {self.name!r} has no data shape: call fit(train, val, "
                             f"config, seed, device) or Method.load(path) first")
        return self.data_shape_

    @abstractmethod
    def _fit(self, train: torch.Tensor, val: torch.Tensor | None, config: FitConfig, seed: int,
             device: torch.device) -> FitReport:
        """Learn from ``train``; set all learned state on ``self``."""

    @abstractmethod
    def _sample(self, n: int, steps: int, seed: int, device: torch.device) -> SampleResult:
        """Draw samples; called only after fit."""

    @abstractmethod
    def _state(self) -> dict[str, Any]:
        """Learned state as tensors and plain values (what ``torch.load(weights_only=True)``
        reads)."""

    @abstractmethod
    def _restore(self, state: dict[str, Any], device: torch.device) -> None:
        """Set learned state from ``_state``'s output."""


METHODS: Registry[type[Method]] = Registry("method", Method, entry_point_group="bench.methods",
                                           params_base=Params)
"""Registered methods by name: built-ins on ``import methods``, plugins by ``--plugin`` or
the ``bench.methods`` entry-point group (see :mod:`methods.registry`)."""


def standard_normal(n: int, shape: tuple[int, ...], seed: int,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """(n, *shape) standard normal noise where row i depends only on (seed, i).

    One CPU generator per row keeps sample i fixed whatever n or the batching,
    and identical on every device.
    """
    rows = []
    for index in range(n):
        generator = torch.Generator().manual_seed(_row_seed(seed, index))
        rows.append(torch.randn(shape, generator=generator))
    return torch.stack(rows).to(device)


def _row_seed(seed: int, index: int) -> int:
    return (seed * 1_000_003 + index) % (2**63 - 1)
