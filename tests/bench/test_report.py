"""Leaderboard tables from long result rows whose answer is known by construction."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.report import ROBUSTNESS_METRICS, leaderboard, with_robustness

A_VALUES = [1.0, 2.0, 3.0, 4.0, 5.0]
B_VALUES = [11.0, 13.0, 12.0, 14.5, 14.5]  # a + (10, 11, 9, 10.5, 9.5): worse on every seed


def long_rows(metric, steps, values_by_method, group="distribution", higher=False):
    return pd.DataFrame([
        {"run": "r", "method": method, "seed": seed, "steps": steps, "nfe": steps,
         "group": group, "metric": metric, "value": value, "higher_is_better": higher,
         "unit": "mm^2"}
        for method, values in values_by_method.items() for seed, value in enumerate(values)])


def test_mean_interval_best_and_paired_test():
    table = leaderboard(long_rows("MMD-CD", 10, {"a": A_VALUES, "b": B_VALUES}),
                        "distribution", 10)
    half = stats.t.ppf(0.975, 4) * np.std(B_VALUES, ddof=1) / np.sqrt(5)
    assert table.loc["b", ("MMD-CD", "mean")] == pytest.approx(np.mean(B_VALUES))
    assert table.loc["b", ("MMD-CD", "ci")] == pytest.approx(half)
    assert table.loc["a", ("MMD-CD", "best")] and not table.loc["b", ("MMD-CD", "best")]
    assert table.loc["b", ("MMD-CD", "differs")] and not table.loc["a", ("MMD-CD", "differs")]
    assert table.loc["a", ("MMD-CD", "rank")] == 1 and table.loc["b", ("MMD-CD", "rank")] == 2


def test_higher_is_better_flips_the_best():
    table = leaderboard(long_rows("COV-CD", 10, {"a": A_VALUES, "b": B_VALUES}, higher=True),
                        "distribution", 10)
    assert table.loc["b", ("COV-CD", "best")] and table.loc["a", ("COV-CD", "differs")]


def test_robustness_rows_cover_headline_metrics_with_a_curve_only():
    # failure-rate is a headline metric but has one budget here; KMMD-descriptors has a
    # curve but is no headline metric: neither gets robustness rows.
    rows = pd.concat([
        long_rows("MMD-CD", 1, {"a": [9.0] * 5}), long_rows("MMD-CD", 10, {"a": A_VALUES}),
        long_rows("KMMD-descriptors", 1, {"a": [9.0] * 5}),
        long_rows("KMMD-descriptors", 10, {"a": A_VALUES}),
        long_rows("failure-rate", 10, {"a": [4.0] * 5}, group="anatomy")])
    assert {"MMD-CD", "failure-rate"} <= set(ROBUSTNESS_METRICS)
    assert "KMMD-descriptors" not in ROBUSTNESS_METRICS
    added = with_robustness(rows, 10)
    robustness = added[added["group"] == "robustness"]
    assert sorted(robustness["metric"]) == ["MMD-CD:NFE-to-5%", "MMD-CD:max-step-change"]
    by_name = robustness.set_index("metric")["value"]
    assert by_name["MMD-CD:NFE-to-5%"] == 10  # mean 3 at NFE 10 against 9 at NFE 1
    assert by_name["MMD-CD:max-step-change"] == pytest.approx(6.0)
