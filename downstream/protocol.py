"""Train on synthetic, test on real: the downstream rows of a run.

For each cell (method, seed), every task is trained on the method's samples
and evaluated on real held-out skulls; beside it, the same task trained on
other sets gives the reference rows:

    training set      trained on                                   computed
    synthetic         the method's samples                         per cell
    real+synthetic    the real training split and the samples      per cell
    real              the real training split (the ceiling)        once per run
    gaussian          the gaussian baseline's samples (the floor)  once per run

Every function returns ``(training_set, MetricValue)`` pairs; the caller adds
run, method, seed and steps to make result rows. The test skulls are the
first ``n_test`` (30) subjects of the test split in dataset order, the same
for every method and seed; the seed fixes the training draws and the test
perturbations (poses, defects), so cells with one seed are paired.

Cost (``tests/performance/test_downstream_cost.py``): on 2 CPU cores shared
with other work (load average about 8), 64^3 synthskull, 100 real training
skulls, 100 samples and 30 test skulls, one cell (``synthetic`` and
``real+synthetic`` rows) took 19 to 21 s and the ``real`` rows of one seed
6 to 8 s: the regressor's 300 steps about 2.5 s, ICP on 30 skulls about 1.4 s,
the shape model's fit 0.2 to 1.6 s and its 30 completions with scoring
1.2 to 2.5 s per training set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

import downstream.alignment  # noqa: F401  (registers the task)
import downstream.completion  # noqa: F401  (registers the task)
from bench.data.dataset import SkullDataset
from bench.core.errors import BenchError
from downstream.base import DegenerateTrainingSet, create_task, get_task
from bench.core.values import MetricValue

TRAINING_SETS = ("synthetic", "real+synthetic", "real", "gaussian")
Rows = list[tuple[str, MetricValue]]


@dataclass(frozen=True)
class DownstreamConfig:
    """What the downstream stage of a run does.

    Attributes:
        tasks: registered task names, in row order.
        params: task name -> hyperparameter overrides (e.g. ``{"alignment": {"steps": 300}}``).
        n_test: test skulls used (the first ones of the test split).
        device: where the tasks' networks train and run.
    """

    tasks: tuple[str, ...] = ("alignment", "completion")
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    n_test: int = 30
    device: str = "cpu"

    def check(self) -> None:
        """Raise BenchError for unknown tasks, unknown parameters or a bad n_test."""
        for name in self.tasks:
            get_task(name)
        for name, overrides in self.params.items():
            if name not in self.tasks:
                raise BenchError(f"downstream params given for task {name!r}, which is not "
                                 f"among the tasks {list(self.tasks)}")
            create_task(name, **overrides)
        if isinstance(self.n_test, bool) or not isinstance(self.n_test, int) or self.n_test < 1:
            raise BenchError(f"downstream n_test must be a positive integer, got {self.n_test!r}")


def evaluation_set(test: SkullDataset, n_test: int) -> SkullDataset:
    """The first ``n_test`` skulls of ``test`` (or all of them when there are fewer)."""
    return test.select(np.arange(min(n_test, len(test))))


def train_and_evaluate(training_set: str, volumes: np.ndarray, test: SkullDataset, seed: int,
                       config: DownstreamConfig = DownstreamConfig()) -> Rows:
    """Every task trained on ``volumes`` (N, R, R, R) and scored on the evaluation set.

    A task that cannot learn from the volumes (:class:`DegenerateTrainingSet`,
    e.g. samples without any bone) gives NaN for all its metrics.
    """
    config.check()
    test = evaluation_set(test, config.n_test)
    device = torch.device(config.device)
    rows: Rows = []
    for name in config.tasks:
        task = create_task(name, **config.params.get(name, {}))
        try:
            task.train(volumes, test.voxel_size_mm, seed, device)
        except DegenerateTrainingSet:
            values = task.failed_values()
        else:
            values = task.evaluate(test, seed, device)
        rows.extend((training_set, value) for value in values)
    return rows


def synthetic_rows(synthetic: np.ndarray, test: SkullDataset, seed: int,
                   config: DownstreamConfig = DownstreamConfig()) -> Rows:
    """Tasks trained on one method's samples (N, R, R, R): the ``synthetic`` rows."""
    return train_and_evaluate("synthetic", synthetic, test, seed, config)


def mixed_rows(real_train: np.ndarray, synthetic: np.ndarray, test: SkullDataset, seed: int,
               config: DownstreamConfig = DownstreamConfig()) -> Rows:
    """Tasks trained on the real training split plus the samples: ``real+synthetic`` rows."""
    volumes = np.concatenate([np.asarray(real_train, dtype=bool),
                              np.asarray(synthetic, dtype=bool)])
    return train_and_evaluate("real+synthetic", volumes, test, seed, config)


def real_rows(real_train: np.ndarray, test: SkullDataset, seed: int,
              config: DownstreamConfig = DownstreamConfig()) -> Rows:
    """Tasks trained on the real training split: the ``real`` rows (the ceiling)."""
    return train_and_evaluate("real", real_train, test, seed, config)


def gaussian_rows(gaussian: np.ndarray, test: SkullDataset, seed: int,
                  config: DownstreamConfig = DownstreamConfig()) -> Rows:
    """Tasks trained on the gaussian baseline's samples: the ``gaussian`` rows (the floor)."""
    return train_and_evaluate("gaussian", gaussian, test, seed, config)


def cell_rows(synthetic: np.ndarray, real_train: np.ndarray, test: SkullDataset, seed: int,
              config: DownstreamConfig = DownstreamConfig()) -> Rows:
    """The per-cell rows: ``synthetic`` then ``real+synthetic``."""
    return (synthetic_rows(synthetic, test, seed, config)
            + mixed_rows(real_train, synthetic, test, seed, config))
