"""The alignment task: test poses, pose scores, both models on synthskull, input checks."""

import numpy as np
import pytest

from bench.core.errors import BenchError
from downstream.alignment import AlignmentParams, AlignmentTask, posed_test_cases, pose_scores
from downstream.base import DegenerateTrainingSet


def test_true_poses_score_zero_error_and_full_success(test64):
    params = AlignmentParams()
    cases = posed_test_cases(test64, seed=0, params=params)
    scores = pose_scores("align", cases, cases.rotations, cases.translations, params)
    assert scores["align-rot-err-deg"] == pytest.approx(0.0, abs=1e-4)
    assert scores["align-trans-err-mm"] == pytest.approx(0.0, abs=1e-9)
    assert scores["align-landmark-err-mm"] == pytest.approx(0.0, abs=1e-6)
    assert scores["align-success-rate"] == 100.0


def test_identity_estimate_scores_the_drawn_poses(test64):
    params = AlignmentParams()
    cases = posed_test_cases(test64, seed=0, params=params)
    n = len(cases.rotations)
    scores = pose_scores("id", cases, np.tile(np.eye(3), (n, 1, 1)), np.zeros((n, 3)), params)
    assert scores["id-trans-err-mm"] == pytest.approx(
        np.linalg.norm(cases.translations, axis=1).mean())
    assert 5.0 < scores["id-rot-err-deg"] < 60.0
    assert scores["id-success-rate"] < 50.0


def test_test_poses_are_per_subject_and_seeded(test64):
    params = AlignmentParams()
    a = posed_test_cases(test64, seed=3, params=params)
    b = posed_test_cases(test64.select(np.arange(4)), seed=3, params=params)
    assert np.array_equal(a.rotations[:4], b.rotations)
    assert np.array_equal(a.clouds[2], b.clouds[2])
    c = posed_test_cases(test64, seed=4, params=params)
    assert not np.allclose(a.rotations, c.rotations)


@pytest.mark.slow
def test_learned_aligner_beats_identity_on_held_out_skulls(skulls64, train64, test64):
    task = AlignmentTask().train(train64, skulls64.voxel_size_mm, seed=0)
    values = {v.name: v.value for v in task.evaluate(test64, seed=0)}
    params = task.params
    cases = posed_test_cases(test64, seed=0, params=params)
    n = len(cases.rotations)
    identity = pose_scores("id", cases, np.tile(np.eye(3), (n, 1, 1)), np.zeros((n, 3)), params)
    assert values["align-rot-err-deg"] < 0.6 * identity["id-rot-err-deg"]
    assert values["align-trans-err-mm"] < 0.6 * identity["id-trans-err-mm"]
    assert values["align-landmark-err-mm"] < 0.6 * identity["id-landmark-err-mm"]
    assert values["align-icp-rot-err-deg"] < 5.0
    assert values["align-icp-success-rate"] >= 50.0
    assert task.losses_[-1] < task.losses_[0]


def test_task_is_deterministic_and_reports_every_metric(skulls32):
    train, test = skulls32.volumes[:8], skulls32.select(np.arange(8, 12))
    runs = [AlignmentTask(steps=5, batch_size=4).train(train, skulls32.voxel_size_mm, seed=1)
            .evaluate(test, seed=2) for _ in range(2)]
    assert [v.name for v in runs[0]] == [s.name for s in AlignmentTask.metrics]
    assert [v.value for v in runs[0]] == [v.value for v in runs[1]]
    assert all(v.group == "downstream" for v in runs[0])
    assert all(np.isfinite(v.value) for v in runs[0])
    hard = AlignmentTask(steps=5, batch_size=4, pose_range="hard")
    values = hard.train(train, skulls32.voxel_size_mm, seed=1).evaluate(test, seed=2)
    assert all(np.isfinite(v.value) for v in values)


def test_task_input_checks(skulls32):
    with pytest.raises(BenchError, match="pose_range"):
        AlignmentTask(pose_range="easy")
    with pytest.raises(BenchError, match="steps"):
        AlignmentTask(steps=0)
    with pytest.raises(BenchError, match="not trained"):
        AlignmentTask().evaluate(skulls32, seed=0)
    with pytest.raises(DegenerateTrainingSet, match="no.*bone|any bone"):
        AlignmentTask(steps=1).train(np.zeros((3, 32, 32, 32), dtype=bool), 8.0, seed=0)
