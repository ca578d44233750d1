"""Train on synthetic, test on real: rows, reference sets and failures."""

import numpy as np
import pytest

from bench.core.errors import BenchError
from downstream.protocol import (DownstreamConfig, cell_rows, evaluation_set, gaussian_rows,
                                 real_rows, synthetic_rows, train_and_evaluate)

QUICK = DownstreamConfig(params={"alignment": {"steps": 3, "batch_size": 4},
                                 "completion": {"n_components": 4}}, n_test=3)
NAMES = ["align-rot-err-deg", "align-trans-err-mm", "align-landmark-err-mm",
         "align-success-rate", "align-icp-rot-err-deg", "align-icp-trans-err-mm",
         "align-icp-landmark-err-mm", "align-icp-success-rate", "completion-dice",
         "completion-border-dice", "completion-hd95-mm"]


@pytest.fixture(scope="module")
def data(skulls32):
    """Real train (6), 'synthetic' samples (other real skulls, 4) and the test set (2 + 2)."""
    return skulls32.volumes[:6], skulls32.volumes[6:8], skulls32.select(np.arange(8, 12))


def test_cell_rows_are_synthetic_then_mixed(data):
    real, synthetic, test = data
    rows = cell_rows(synthetic, real, test, seed=0, config=QUICK)
    assert [name for name, _ in rows] == ["synthetic"] * 11 + ["real+synthetic"] * 11
    assert [value.name for _, value in rows] == NAMES * 2
    assert all(value.group == "downstream" for _, value in rows)
    assert all(np.isfinite(value.value) for _, value in rows)


def test_reference_rows_and_pairing_by_seed(data):
    real, synthetic, test = data
    assert {name for name, _ in real_rows(real, test, 0, QUICK)} == {"real"}
    assert {name for name, _ in gaussian_rows(synthetic, test, 0, QUICK)} == {"gaussian"}
    a = synthetic_rows(synthetic, test, 1, QUICK)
    b = train_and_evaluate("synthetic", synthetic, test, 1, QUICK)
    assert [v.value for _, v in a] == [v.value for _, v in b]


def test_empty_samples_give_nan_rows_not_a_crash(data):
    _, _, test = data
    rows = synthetic_rows(np.zeros((4, 32, 32, 32), dtype=bool), test, 0, QUICK)
    assert [value.name for _, value in rows] == NAMES
    assert all(np.isnan(value.value) for _, value in rows)


def test_evaluation_set_is_the_first_n_test_skulls(data):
    _, _, test = data
    assert evaluation_set(test, 3).subject_ids == test.subject_ids[:3]
    assert evaluation_set(test, 100).subject_ids == test.subject_ids


def test_config_checks():
    with pytest.raises(BenchError, match="unknown downstream task"):
        DownstreamConfig(tasks=("segmentation",)).check()
    with pytest.raises(BenchError, match="not among the tasks"):
        DownstreamConfig(tasks=("alignment",), params={"completion": {}}).check()
    with pytest.raises(BenchError, match="no parameter"):
        DownstreamConfig(params={"alignment": {"stpes": 3}}).check()
    with pytest.raises(BenchError, match="n_test"):
        DownstreamConfig(n_test=0).check()
