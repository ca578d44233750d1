"""Train on synthetic, test on real: the downstream rows of a run.

For each cell (method or reference, seed) every task is trained on the
cell's samples and evaluated on real held-out skulls; for a method, also on
a few real skulls plus the samples, the case of a data-poor clinic:

    training set   trained on                                        computed
    synthetic      the samples                                       every cell
    augmented      ``few_real`` (20) real training skulls + samples  every method cell
    augmented      the same few real skulls alone (``few-real``)     once per seed
    (baselines)    what a task needs no samples for (``identity``,   once per run
                   ``icp``: :meth:`downstream.base.Task.baselines`)

Every function returns ``(training_set, MetricValue)`` pairs and the tasks'
per-test-case scores; the caller adds run, method, seed and steps.

The test cases are fixed, as a benchmark's test set is: the test split's
skulls (the first ``n_test`` in dataset order where a small run asks for
fewer), perturbed (poses, cuts, defects) with :data:`TEST_SEED` whatever the
cell's seed. So every cell meets the same cases, the seed interval measures
how much the training set varies and not which cases were drawn, and the
report's bootstrap over cases (paired across seeds) measures the rest. The
cell's seed fixes the tasks' training draws and the few real skulls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

import downstream.alignment  # noqa: F401  (registers the task)
import downstream.implant  # noqa: F401  (registers the task)
from bench.core.errors import BenchError
from bench.core.values import MetricValue
from bench.data.dataset import SkullDataset
from downstream.base import DegenerateTrainingSet, create_task, get_task

SYNTHETIC = "synthetic"
AUGMENTED = "augmented"
FEW_REAL = "few-real"
_FEW_STREAM = 0xF3_7
TEST_SEED = 0
"""The seed of the test perturbations (poses, cuts, defects) of every cell."""
Rows = list[tuple[str, MetricValue]]


@dataclass(frozen=True)
class DownstreamConfig:
    """What the downstream stage of a run does.

    Attributes:
        tasks: registered task names, in row order.
        params: task name -> hyperparameter overrides (e.g. ``{"alignment": {"steps": 300}}``).
        n_test: test skulls used (the first ones of the test split); None: all of them.
        few_real: real training skulls of the augmented rows.
        device: where the tasks' networks train and run.
    """

    tasks: tuple[str, ...] = ("alignment", "implant")
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    n_test: int | None = None
    few_real: int = 20
    device: str = "cpu"

    def check(self) -> None:
        """Raise BenchError for unknown tasks, unknown parameters or bad counts."""
        for name in self.tasks:
            get_task(name)
        for name, overrides in self.params.items():
            if name not in self.tasks:
                raise BenchError(f"downstream params given for task {name!r}, which is not "
                                 f"among the tasks {list(self.tasks)}")
            create_task(name, **overrides)
        counts = {"few_real": self.few_real}
        if self.n_test is not None:
            counts["n_test"] = self.n_test
        for key, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BenchError(f"downstream {key} must be a positive integer, got {value!r}")


@dataclass
class Scored:
    """The rows of one training set's tasks, and their per-test-case scores.

    Attributes:
        rows: (training set, value) pairs.
        cases: columns training_set, task, case, metric, value.
    """

    rows: Rows
    cases: pd.DataFrame

    def __add__(self, other: "Scored") -> "Scored":
        return Scored(self.rows + other.rows,
                      pd.concat([self.cases, other.cases], ignore_index=True))


def evaluation_set(test: SkullDataset, n_test: int | None) -> SkullDataset:
    """The first ``n_test`` skulls of ``test`` (all of them for None or when there are
    fewer)."""
    return test if n_test is None else test.select(np.arange(min(n_test, len(test))))


def few_real(train: np.ndarray, seed: int, count: int) -> np.ndarray:
    """``count`` real training skulls, drawn without replacement with the seed."""
    rng = np.random.default_rng([_FEW_STREAM, seed])
    return train[np.sort(rng.choice(len(train), min(count, len(train)), replace=False))]


def train_and_evaluate(training_set: str, volumes: np.ndarray, test: SkullDataset, seed: int,
                       config: DownstreamConfig = DownstreamConfig()) -> Scored:
    """Every task trained on ``volumes`` (N, R, R, R) with ``seed`` and scored on the
    evaluation set's fixed cases (:data:`TEST_SEED`).

    A task that cannot learn from the volumes (:class:`DegenerateTrainingSet`,
    e.g. samples without any bone) gives NaN for all its metrics.
    """
    config.check()
    test = evaluation_set(test, config.n_test)
    device = torch.device(config.device)
    rows: Rows = []
    cases = []
    for name in config.tasks:
        task = create_task(name, **config.params.get(name, {}))
        try:
            task.train(volumes, test.voxel_size_mm, seed, device)
        except DegenerateTrainingSet:
            values = task.failed_values()
        else:
            values = task.evaluate(test, TEST_SEED, device)
            if task.cases_ is not None:
                cases.append(task.cases_.assign(training_set=training_set, task=name))
        rows.extend((training_set, value) for value in values)
    frame = pd.concat(cases, ignore_index=True) if cases else pd.DataFrame(
        columns=["case", "metric", "value", "training_set", "task"])
    return Scored(rows, frame)


def sample_rows(samples: np.ndarray, real_train: np.ndarray, test: SkullDataset, seed: int,
                config: DownstreamConfig, augmented: bool) -> Scored:
    """The rows of one cell: tasks trained on the samples, and with ``augmented`` on the
    few real skulls plus the samples."""
    scored = train_and_evaluate(SYNTHETIC, samples, test, seed, config)
    if augmented:
        mixed = np.concatenate([few_real(real_train, seed, config.few_real),
                                np.asarray(samples, dtype=bool)])
        scored = scored + train_and_evaluate(AUGMENTED, mixed, test, seed, config)
    return scored


def few_real_rows(real_train: np.ndarray, test: SkullDataset, seed: int,
                  config: DownstreamConfig) -> Scored:
    """The tasks trained on the few real skulls alone, filed with the augmented rows."""
    return train_and_evaluate(AUGMENTED, few_real(real_train, seed, config.few_real), test,
                              seed, config)


def baseline_rows(real_train: np.ndarray, test: SkullDataset,
                  config: DownstreamConfig) -> dict[str, Rows]:
    """Every task's baselines (:meth:`~downstream.base.Task.baselines`): name -> rows,
    filed with the synthetic rows so that they sit beside the methods."""
    test = evaluation_set(test, config.n_test)
    found: dict[str, Rows] = {}
    for name in config.tasks:
        task = create_task(name, **config.params.get(name, {}))
        for baseline, values in task.baselines(real_train, test, TEST_SEED).items():
            found.setdefault(baseline, []).extend(
                (SYNTHETIC, value) for value in task.metric_values(values))
    return found
