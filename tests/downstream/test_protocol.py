"""Train on samples, test on real skulls: rows, the few-real and baseline rows, failures."""

import numpy as np
import pytest

from bench.core.errors import BenchError
from downstream.alignment import AlignmentTask
from downstream.implant import ImplantTask
from downstream.protocol import (AUGMENTED, SYNTHETIC, DownstreamConfig, baseline_rows,
                                 evaluation_set, few_real, few_real_rows, sample_rows,
                                 train_and_evaluate)

QUICK = DownstreamConfig(params={"alignment": {"steps": 3, "batch_size": 4}}, n_test=3,
                         few_real=3)
NAMES = [spec.name for spec in AlignmentTask.metrics + ImplantTask.metrics]


@pytest.fixture(scope="module")
def data(skulls32):
    """Real train (6), 'synthetic' samples (other real skulls, 4) and the test set (2 + 2)."""
    return skulls32.volumes[:6], skulls32.volumes[6:8], skulls32.select(np.arange(8, 12))


def test_method_rows_are_synthetic_then_augmented(data):
    real, synthetic, test = data
    scored = sample_rows(synthetic, real, test, seed=0, config=QUICK, augmented=True)
    assert [name for name, _ in scored.rows] == [SYNTHETIC] * len(NAMES) + [AUGMENTED] * len(
        NAMES)
    assert [value.name for _, value in scored.rows] == NAMES * 2
    assert all(value.group == "downstream" for _, value in scored.rows)
    assert set(scored.cases["training_set"]) == {SYNTHETIC, AUGMENTED}
    assert set(scored.cases["task"]) == {"alignment", "implant"}
    alone = sample_rows(synthetic, real, test, seed=0, config=QUICK, augmented=False)
    assert {name for name, _ in alone.rows} == {SYNTHETIC}


def test_the_few_real_skulls_are_drawn_with_the_seed_and_score_as_augmented(data):
    real, _, test = data
    drawn = few_real(real, 1, 3)
    assert len(drawn) == 3 and all(any(np.array_equal(d, r) for r in real) for d in drawn)
    np.testing.assert_array_equal(drawn, few_real(real, 1, 3))
    assert not np.array_equal(drawn, few_real(real, 2, 3))
    assert {name for name, _ in few_real_rows(real, test, 0, QUICK).rows} == {AUGMENTED}


def test_baselines_are_the_identity_pose_and_icp(data):
    real, _, test = data
    found = baseline_rows(real, test, QUICK)
    assert set(found) == {"identity", "icp"}
    for name in ("identity", "icp"):
        values = {value.name: value.value for _, value in found[name]}
        assert list(values) == [spec.name for spec in AlignmentTask.metrics]
        assert np.isfinite(values["align-rot-err-deg"]) and values["align-rot-err-deg"] > 0


def test_empty_samples_give_nan_rows_not_a_crash(data):
    _, _, test = data
    scored = train_and_evaluate(SYNTHETIC, np.zeros((4, 32, 32, 32), dtype=bool), test, 0, QUICK)
    assert [value.name for _, value in scored.rows] == NAMES
    assert all(np.isnan(value.value) for _, value in scored.rows)


def test_evaluation_set_is_the_first_n_test_skulls(data):
    _, _, test = data
    assert evaluation_set(test, 3).subject_ids == test.subject_ids[:3]
    assert evaluation_set(test, 100).subject_ids == test.subject_ids


def test_config_checks():
    with pytest.raises(BenchError, match="unknown downstream task"):
        DownstreamConfig(tasks=("segmentation",)).check()
    with pytest.raises(BenchError, match="not among the tasks"):
        DownstreamConfig(tasks=("alignment",), params={"implant": {}}).check()
    with pytest.raises(BenchError, match="no parameter"):
        DownstreamConfig(params={"alignment": {"stpes": 3}}).check()
    with pytest.raises(BenchError, match="n_test"):
        DownstreamConfig(n_test=0).check()
    with pytest.raises(BenchError, match="few_real"):
        DownstreamConfig(few_real=0).check()
