"""Implant design from the defective skull alone: retrieval and fusion, the U-Net, the task."""

import numpy as np
import pytest
import torch

from bench.core.errors import BenchError
from downstream.base import DegenerateTrainingSet
from downstream.defects import DEFECT_KINDS, cut_defect
from downstream.implant import ImplantTask, RetrievalDesigner, cut_test_defects, implant_loss
from downstream.overlap import dice


def test_retrieval_from_a_database_holding_the_skull_recovers_its_implant(train64, skulls64):
    designer = RetrievalDesigner(neighbours=1).fit(train64)
    for i, kind in enumerate(DEFECT_KINDS):
        defect = cut_defect(train64[i], skulls64.voxel_size_mm, kind, np.random.default_rng(i))
        implant = designer.design(defect.defective[None])[0]
        assert not (implant & defect.defective).any()
        # The skull itself is its nearest neighbour: only the one-voxel margin is lost.
        assert dice(defect.implant, implant) > 0.9, kind


def test_retrieval_from_other_skulls_and_from_no_bone(train64, test64, skulls64):
    designer = RetrievalDesigner(neighbours=5).fit(train64)
    defect = cut_defect(test64.volumes[0], skulls64.voxel_size_mm, "bilateral",
                        np.random.default_rng(0))
    implant = designer.design(defect.defective[None])[0]
    assert 0.3 < dice(defect.implant, implant) < 1.0
    lonely = RetrievalDesigner(neighbours=5).fit(np.zeros_like(train64[:3]))
    assert not lonely.design(defect.defective[None]).any()


def test_task_scores_held_out_skulls_per_type(train64, test64, skulls64):
    task = ImplantTask()
    runs = [ImplantTask().train(train64, skulls64.voxel_size_mm, seed=0)
            .evaluate(test64, seed=1) for _ in range(2)]
    values = {v.name: v.value for v in runs[0]}
    assert list(values) == [spec.name for spec in task.metrics]
    assert list(values)[:4] == ["implant-dice", "implant-border-dice", "implant-hd95-mm",
                                "implant-empty-rate"]
    assert {f"implant-dice-{kind}" for kind in DEFECT_KINDS} <= set(values)
    assert 0.3 < values["implant-dice"] <= 1.0 and 0.0 < values["implant-hd95-mm"] < 100.0
    assert [v.value for v in runs[0]] == [v.value for v in runs[1]]
    per_type = np.mean([values[f"implant-dice-{kind}"] for kind in DEFECT_KINDS])
    assert values["implant-dice"] == pytest.approx(per_type)  # types balanced: 20 cases, 4 each


def test_an_empty_prediction_is_counted_not_averaged_away(test64, skulls64):
    task = ImplantTask(neighbours=1).train(test64.volumes[:1], skulls64.voxel_size_mm, 0)
    task.model_ = RetrievalDesigner(1).fit(np.zeros_like(test64.volumes[:1]))  # no bone at all
    values = {v.name: v.value for v in task.evaluate(test64, seed=0)}
    assert values["implant-dice"] == 0.0 and values["implant-empty-rate"] == 100.0
    assert values["implant-hd95-mm"] == pytest.approx(np.sqrt(3) * 256.0)  # the diagonal
    cases = task.cases_
    assert set(cases["metric"]) == {"implant-dice", "implant-border-dice", "implant-hd95-mm"}
    assert len(cases) == 3 * 2 * len(test64)


def test_test_defects_cycle_through_the_types_and_depend_on_the_seed(skulls32):
    test = skulls32.select(np.arange(7, 12))
    params = ImplantTask(defects_per_skull=2).params
    defects = cut_test_defects(test, 0, params)
    assert [d.kind for d in defects] == list(DEFECT_KINDS) * 2
    again = cut_test_defects(test, 0, params)
    other = cut_test_defects(test, 1, params)
    assert again is defects  # cut once per process
    assert not all(np.array_equal(a.region, b.region) for a, b in zip(defects, other))


def test_unet_trains_one_step_and_designs_on_cpu(skulls32):
    train, test = skulls32.volumes[:8], skulls32.select(np.arange(8, 10))
    task = ImplantTask(model="unet", unet_features=(4, 4, 8, 8, 16, 4), unet_steps=1,
                       unet_batch_size=1)
    task.train(train, skulls32.voxel_size_mm, seed=0)
    assert len(task.model_.losses_) == 1 and np.isfinite(task.model_.losses_[0])
    values = {v.name: v.value for v in task.evaluate(test, seed=0)}
    assert all(np.isfinite(values[f"implant-{score}"]) for score in ("dice", "hd95-mm"))
    assert np.isnan(values["implant-dice-random_2"])  # 4 cases: the fifth type has none
    defect = cut_test_defects(test, 0, task.params)[0]
    implant = task.model_.design(defect.defective[None])
    assert implant.shape == (1, 32, 32, 32) and not (implant[0] & defect.defective).any()


def test_implant_loss_is_small_for_the_right_answer():
    target = torch.zeros(1, 1, 8, 8, 8)
    target[..., 2:5, 2:5, 2:5] = 1.0
    right = implant_loss(40 * (2 * target - 1), target)
    wrong = implant_loss(-40 * (2 * target - 1), target)
    assert float(right) < 1e-3
    assert float(wrong) > 1.0


def test_task_input_checks():
    with pytest.raises(BenchError, match="model"):
        ImplantTask(model="gan")
    with pytest.raises(BenchError, match="unet_features"):
        ImplantTask(unet_features=(4, 8))
    with pytest.raises(BenchError, match="multiple of 16"):
        ImplantTask(model="unet", unet_steps=1).train(
            np.ones((2, 24, 24, 24), dtype=bool), 8.0, seed=0)
    with pytest.raises(DegenerateTrainingSet):
        ImplantTask().train(np.zeros((3, 16, 16, 16), dtype=bool), 16.0, seed=0)


def test_configuration_values_from_yaml_are_accepted_and_checked():
    task = ImplantTask(defect={"max_volume_ml": 40.0, "secondary_spheres": [1, 3]},
                       unet_features=[4, 4, 8, 8, 16, 4])
    assert task.params.defect.max_volume_ml == 40.0
    assert task.params.defect.secondary_spheres == (1, 3)
    assert task.params.unet_features == (4, 4, 8, 8, 16, 4)
    with pytest.raises(BenchError, match="defect has no parameter"):
        ImplantTask(defect={"volume": 3})
    with pytest.raises(BenchError, match="positive integer"):
        ImplantTask(neighbours=3.5)
