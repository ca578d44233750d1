"""The contract every downstream task keeps, and the task registry.

A task is a clinical use of skull data with a model that learns from skull
volumes alone (no landmarks, no labels: a generative method's samples carry
neither) and is scored on real held-out skulls:

    task = create_task("alignment", steps=300)
    task.train(volumes, voxel_size_mm=4.0, seed=0)     # bool (N, R, R, R)
    rows = task.evaluate(test_dataset, seed=0)          # list[MetricValue]

Like a method, a task's constructor stores its hyperparameters (one frozen
dataclass, ``Params``) unchanged; learned state is set only by ``train``;
``evaluate`` before ``train`` raises :class:`~bench.core.errors.BenchError`. The
``seed`` of ``evaluate`` fixes the test perturbations (poses, defects), so
every training set scored with the same seed meets the same test cases; a run
scores every cell with one (:data:`downstream.protocol.TEST_SEED`).
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, TypeVar

import numpy as np
import pandas as pd
import torch

from bench.data.dataset import SkullDataset
from bench.core.errors import BenchError
from bench.core.registry import Registry
from bench.core.volumes import as_binary_volumes
from bench.core.params import with_overrides
from bench.core.values import MetricValue, ValueSpec

GROUP = "downstream"


class DegenerateTrainingSet(BenchError):
    """The training volumes give a task nothing to learn from (e.g. no bone at all).

    Raised by ``train``; :mod:`downstream.protocol` turns it into NaN rows, so a
    method whose samples are empty scores as a failure instead of stopping the run.
    """


@dataclass(frozen=True)
class Params:
    """Hyperparameters of a task; subclasses add typed fields with defaults."""


_Params = Params  # the class attribute Task.Params shadows the name inside Task


class Task(ABC):
    """Base class of downstream tasks; register subclasses with ``@register_task``.

    Subclasses set ``Params``, ``metrics`` (the
    :class:`~bench.core.values.ValueSpec` of every value ``evaluate`` returns,
    in order) and ``description``, and implement
    ``_train`` and ``_evaluate``.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params
    metrics: ClassVar[tuple[ValueSpec, ...]] = ()
    baseline_names: ClassVar[tuple[str, ...]] = ()
    """The names :meth:`baselines` returns (known before it runs, for the run's plan)."""
    cases_: pd.DataFrame | None = None
    """Per-test-case scores of the last ``evaluate`` (columns case, metric, value), for the
    report's bootstrap over test cases; None for a task that keeps none."""

    def __init__(self, params: _Params | None = None, **overrides: Any) -> None:
        base = params if params is not None else self.Params()
        if not isinstance(base, self.Params):
            raise BenchError(f"task {self.name!r}: params must be {self.Params.__name__}, "
                             f"got {type(base).__name__}")
        self.params = with_overrides("task", self.name, base, overrides)
        self._check_params()
        self.trained_ = False
        self.voxel_size_mm_: float | None = None
        self.resolution_: int | None = None

    def train(self, volumes: np.ndarray, voxel_size_mm: float, seed: int,
              device: torch.device | str = "cpu") -> "Task":
        """Learn from training skulls and return ``self``.

        Args:
            volumes: bool (N, R, R, R) skulls in canonical pose in the common grid.
            voxel_size_mm: edge of one voxel (the field of view is R times it).
            seed: seeds every random draw of training.
            device: where networks train (tasks without one ignore it).
        """
        try:
            volumes = as_binary_volumes(volumes)
        except BenchError as error:
            raise BenchError(f"task {self.name!r}: training {error}") from None
        if not np.isfinite(voxel_size_mm) or voxel_size_mm <= 0:
            raise BenchError(f"task {self.name!r}: voxel_size_mm must be a positive number, "
                             f"got {voxel_size_mm!r}")
        self.voxel_size_mm_ = float(voxel_size_mm)
        self.resolution_ = int(volumes.shape[1])
        self._train(volumes, seed, torch.device(device))
        self.trained_ = True
        return self

    def evaluate(self, test: SkullDataset, seed: int,
                 device: torch.device | str = "cpu") -> list[MetricValue]:
        """Score the trained model on real test skulls; one value per ``metrics`` entry."""
        if not self.trained_:
            raise BenchError(f"task {self.name!r} is not trained: call train(volumes, "
                             f"voxel_size_mm, seed) before evaluate")
        if len(test) == 0:
            raise BenchError(f"task {self.name!r}: the test set is empty")
        if test.resolution != self.resolution_ or \
                not np.isclose(test.voxel_size_mm, self._voxel_size_mm()):
            raise BenchError(f"task {self.name!r}: trained on {self.resolution_}^3 voxels of "
                             f"{self.voxel_size_mm_:g} mm but the test set has "
                             f"{test.resolution}^3 voxels of {test.voxel_size_mm:g} mm; use "
                             f"one grid for training and test")
        values = self._evaluate(test, seed, torch.device(device))
        return self.metric_values(values)

    @classmethod
    def metric_values(cls, values: dict[str, float]) -> list[MetricValue]:
        """``values`` (name -> number) as MetricValue rows in the order of ``metrics``."""
        missing = [spec.name for spec in cls.metrics if spec.name not in values]
        if missing:
            raise RuntimeError(f"task {cls.name!r} did not compute {missing}")
        return [MetricValue(spec.name, float(values[spec.name]), spec.higher_is_better,
                            spec.unit, GROUP) for spec in cls.metrics]

    @classmethod
    def failed_values(cls) -> list[MetricValue]:
        """Every metric as NaN: the rows of a task that could not be trained."""
        return cls.metric_values({spec.name: float("nan") for spec in cls.metrics})

    def baselines(self, train: np.ndarray, test: SkullDataset, seed: int
                  ) -> dict[str, dict[str, float]]:
        """Models that learn nothing from samples, reported once per run beside the methods
        and never ranked: name -> metric name -> value. None by default.

        Args:
            train: bool (N, R, R, R), the real training skulls.
            test: the real test skulls the task is scored on.
            seed: fixes the test perturbations, as in :meth:`evaluate`.
        """
        return {}

    def _check_params(self) -> None:
        """Raise BenchError for a hyperparameter outside its allowed values."""

    def _voxel_size_mm(self) -> float:
        """``voxel_size_mm_``, which ``train`` sets before ``_train``."""
        if self.voxel_size_mm_ is None:
            raise BenchError(f"task {self.name!r} is not trained: call train(volumes, "
                             f"voxel_size_mm, seed) first")
        return self.voxel_size_mm_

    @abstractmethod
    def _train(self, volumes: np.ndarray, seed: int, device: torch.device) -> None:
        """Learn from bool volumes (N, R, R, R); set all learned state on ``self``."""

    @abstractmethod
    def _evaluate(self, test: SkullDataset, seed: int, device: torch.device
                  ) -> dict[str, float]:
        """Metric name -> value on ``test``; called only after train."""


def check_choice(task: str, field: str, value: object, allowed: tuple[str, ...]) -> None:
    """Raise BenchError unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        close = difflib.get_close_matches(str(value), allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise BenchError(f"task {task!r}: {field} must be one of {', '.join(allowed)}, got "
                         f"{value!r}{hint}")


def check_counts(task: str, **values: int) -> None:
    """Raise BenchError for any value that is not a positive integer."""
    for field, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise BenchError(f"task {task!r}: {field} must be a positive integer, got {value!r}")


def check_positive(task: str, **values: float) -> None:
    """Raise BenchError for any value that is not a positive finite number."""
    for field, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not np.isfinite(value) or value <= 0:
            raise BenchError(f"task {task!r}: {field} must be a positive number, got {value!r}")


# ----------------------------------------------------------------------------- registry

TASKS: Registry[type[Task]] = Registry("downstream task", Task, entry_point_group="bench.tasks",
                                       params_base=Params)
"""Registered tasks by name; plugins by ``--plugin`` or the ``bench.tasks`` entry-point group."""
T = TypeVar("T", bound=type[Task])


def register_task(name: str) -> Callable[[T], T]:
    """Class decorator: register a :class:`Task` subclass under ``name``."""
    return TASKS.decorator(name)


def get_task(name: str) -> type[Task]:
    """The class registered as ``name``; an unknown name lists the valid ones."""
    return TASKS.get(name)


def create_task(name: str, **params: Any) -> Task:
    """An untrained instance of task ``name`` with hyperparameters overridden."""
    return get_task(name)(**params)
