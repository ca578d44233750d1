"""The alignment task: partial test scans, pose scores, the aligner and its baselines."""

import numpy as np
import pytest

from bench.core.errors import BenchError
from downstream.alignment import AlignmentParams, AlignmentTask, posed_test_cases, pose_scores
from downstream.base import DegenerateTrainingSet
from downstream.poses import euler_rotation, frankfort_normals, plane_angle_error_deg


def test_true_poses_score_zero_error_and_full_success(test64):
    params = AlignmentParams()
    cases = posed_test_cases(test64, seed=0, params=params)
    scores, per_case = pose_scores(cases, cases.rotations, cases.translations, params)
    for name in ("align-rot-err-deg", "align-frankfort-deg", "align-midsagittal-deg"):
        assert scores[name] == pytest.approx(0.0, abs=1e-3), name
    assert scores["align-landmark-mm"] == pytest.approx(0.0, abs=1e-6)
    assert scores["align-surface-mm"] == pytest.approx(0.0, abs=1e-6)
    assert scores["align-success-rate"] == 100.0
    assert len(per_case) == 5 * len(test64)


def test_a_tilt_about_x_moves_the_frankfort_plane_and_not_the_midsagittal_one(test64):
    params = AlignmentParams()
    cases = posed_test_cases(test64, seed=0, params=params)
    tilt = euler_rotation(np.array([4.0, 0.0, 0.0]))  # 4 degrees about the x axis
    wrong = cases.rotations @ tilt
    scores, _ = pose_scores(cases, wrong, cases.translations, params)
    assert scores["align-rot-err-deg"] == pytest.approx(4.0, abs=1e-6)
    assert scores["align-midsagittal-deg"] == pytest.approx(0.0, abs=1e-6)
    # The Frankfort normals are near z, so a tilt about x moves them by about 4 degrees.
    assert 3.5 < scores["align-frankfort-deg"] <= 4.0 + 1e-6
    assert scores["align-success-rate"] < 100.0


def test_plane_errors_by_construction():
    normals = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    turn = np.stack([euler_rotation(np.array([0.0, 10.0, 0.0]))] * 2)  # about y
    errors = plane_angle_error_deg(normals, turn, np.stack([np.eye(3)] * 2))
    np.testing.assert_allclose(errors, [10.0, 10.0])
    landmarks = {"porion_left": np.array([[60.0, 0, 0]]), "porion_right": np.array([[-60.0, 0, 0]]),
                 "orbitale_left": np.array([[30.0, 70.0, 0]]),
                 "orbitale_right": np.array([[-30.0, 70.0, np.nan]])}
    np.testing.assert_allclose(frankfort_normals(landmarks), [[0.0, 0.0, 1.0]], atol=1e-12)


def test_scans_are_partial_per_subject_and_seeded(test64):
    params = AlignmentParams()
    a = posed_test_cases(test64, seed=3, params=params)
    b = posed_test_cases(test64.select(np.arange(4)), seed=3, params=params)
    assert np.array_equal(a.rotations[:4], b.rotations)
    assert np.array_equal(a.clouds[2], b.clouds[2])
    c = posed_test_cases(test64, seed=4, params=params)
    assert not np.allclose(a.rotations, c.rotations)
    whole = posed_test_cases(test64, seed=3, params=AlignmentParams(lower_cut_mm=0.0,
                                                                    upper_cut_mm=0.0))
    assert all(len(p) < len(w) for p, w in zip(a.canonical, whole.canonical))


@pytest.mark.slow
def test_learned_aligner_beats_identity_on_held_out_scans(skulls64, train64, test64):
    task = AlignmentTask().train(train64, skulls64.voxel_size_mm, seed=0)
    values = {v.name: v.value for v in task.evaluate(test64, seed=0)}
    identity = task.baselines(train64, test64, seed=0)["identity"]
    for name in ("align-rot-err-deg", "align-frankfort-deg", "align-landmark-mm"):
        assert values[name] < 0.8 * identity[name], name
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


def test_without_landmarks_the_landmark_scores_are_nan(skulls32):
    train = skulls32.volumes[:8]
    test = skulls32.select(np.arange(8, 12))
    bare = type(test)(**{**test.__dict__, "landmarks": {}})
    values = {v.name: v.value for v in AlignmentTask(steps=3, batch_size=4).train(
        train, skulls32.voxel_size_mm, seed=1).evaluate(bare, seed=2)}
    for name in ("align-frankfort-deg", "align-landmark-mm", "align-success-rate"):
        assert np.isnan(values[name]), name
    for name in ("align-rot-err-deg", "align-midsagittal-deg", "align-surface-mm"):
        assert np.isfinite(values[name]), name


def test_task_input_checks(skulls32):
    with pytest.raises(BenchError, match="pose_range"):
        AlignmentTask(pose_range="easy")
    with pytest.raises(BenchError, match="steps"):
        AlignmentTask(steps=0)
    with pytest.raises(BenchError, match="lower_cut_mm"):
        AlignmentTask(lower_cut_mm=-1.0)
    with pytest.raises(BenchError, match="not trained"):
        AlignmentTask().evaluate(skulls32, seed=0)
    with pytest.raises(DegenerateTrainingSet, match="no.*bone|any bone"):
        AlignmentTask(steps=1).train(np.zeros((3, 32, 32, 32), dtype=bool), 8.0, seed=0)
