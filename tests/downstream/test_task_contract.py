"""The task contract and registry."""

from dataclasses import dataclass

import numpy as np
import pytest

import downstream
from bench.conformance import parametrize_with_checks
from bench.core.errors import BenchError
from bench.core.values import ValueSpec
from downstream.base import (TASKS, Params, Task, create_task, get_task,
                             register_task)


@dataclass(frozen=True)
class ToyParams(Params):
    scale: float = 1.0


class ToyTask(Task):
    """Reports the mean bone fraction of its training volumes times ``scale``."""

    Params = ToyParams
    metrics = (ValueSpec("toy-bone", True, ""), ValueSpec("toy-count", False, ""))

    def _train(self, volumes, seed, device):
        self.fraction_ = float(volumes.mean())

    def _evaluate(self, test, seed, device):
        return {"toy-count": len(test), "toy-bone": self.params.scale * self.fraction_}


@parametrize_with_checks([create_task("alignment", steps=20, icp_points=200),
                          create_task("implant")])
def test_the_task_contract(item, check):
    check(item)


def test_registry_holds_both_tasks():
    assert {"alignment", "implant"} <= set(TASKS.names())
    assert get_task("alignment") is downstream.AlignmentTask
    assert isinstance(create_task("implant"), downstream.ImplantTask)
    with pytest.raises(BenchError, match="did you mean 'alignment'"):
        get_task("alignment2")


def test_register_checks_class_and_duplicates():
    with pytest.raises(BenchError, match="not a subclass"):
        register_task("toy")(object)
    with pytest.raises(BenchError, match="already registered"):
        register_task("alignment")(ToyTask)
    assert "toy" not in TASKS.classes


def test_params_overrides_and_unknown_names():
    task = ToyTask(scale=2.0)
    assert task.params == ToyParams(scale=2.0)
    with pytest.raises(BenchError, match="did you mean 'scale'"):
        ToyTask(scael=2.0)
    with pytest.raises(BenchError, match="params must be ToyParams"):
        ToyTask(Params())
    with pytest.raises(BenchError, match="did you mean 'steps'"):
        create_task("alignment", step=3)


def test_train_and_evaluate_contract(skulls32):
    volumes = skulls32.volumes[:4]
    task = ToyTask(scale=2.0)
    with pytest.raises(BenchError, match="not trained"):
        task.evaluate(skulls32, seed=0)
    assert task.train(volumes.astype(np.uint8), skulls32.voxel_size_mm, seed=0) is task
    values = task.evaluate(skulls32, seed=0)
    assert [v.name for v in values] == ["toy-bone", "toy-count"]  # the order of ``metrics``
    assert values[0].value == pytest.approx(2 * volumes.mean())
    assert values[1].value == len(skulls32)
    assert all(v.group == "downstream" for v in values)
    assert values[0].higher_is_better and not values[1].higher_is_better
    nan = ToyTask.failed_values()
    assert [v.name for v in nan] == ["toy-bone", "toy-count"]
    assert all(np.isnan(v.value) for v in nan)


def test_input_checks(skulls32, skulls64):
    task = ToyTask()
    with pytest.raises(BenchError, match=r"shape \(N, R, R, R\)"):
        task.train(np.zeros((4, 8, 8), dtype=bool), 4.0, seed=0)
    with pytest.raises(BenchError, match="binary"):
        task.train(np.full((1, 8, 8, 8), 2), 4.0, seed=0)
    with pytest.raises(BenchError, match="voxel_size_mm"):
        task.train(np.zeros((1, 8, 8, 8), dtype=bool), 0.0, seed=0)
    task.train(skulls32.volumes[:2], skulls32.voxel_size_mm, seed=0)
    with pytest.raises(BenchError, match="one grid"):
        task.evaluate(skulls64, seed=0)
