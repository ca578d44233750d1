"""Robustness over seeds and step budgets, against definitions and scipy."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from metrics.robustness import (max_step_change, nfe_to_within, robustness_values, seed_summary,
                                step_robustness)


def rows(values_by_steps, method="m", metric="MMD-CD", higher=False):
    """Long rows: values_by_steps maps steps -> list of per-seed values (nfe = steps)."""
    records = [{"run": "r", "method": method, "seed": seed, "steps": steps, "nfe": steps,
                "group": "distribution", "metric": metric, "value": value,
                "higher_is_better": higher, "unit": "mm^2"}
               for steps, values in values_by_steps.items() for seed, value in enumerate(values)]
    return pd.DataFrame(records)


def test_seed_interval_equals_scipy_t_interval():
    values = [3.0, 4.5, 2.0, 5.5, 4.0]
    summary = seed_summary(rows({10: values}))
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values),
                                 scale=stats.sem(values))
    assert summary["mean"].iloc[0] == pytest.approx(np.mean(values))
    assert summary["sd"].iloc[0] == pytest.approx(np.std(values, ddof=1))
    assert summary["ci_low"].iloc[0] == pytest.approx(low)
    assert summary["ci_high"].iloc[0] == pytest.approx(high)


def test_one_seed_gives_an_undefined_interval_not_zero():
    summary = seed_summary(rows({10: [3.0]}))
    assert np.isnan(summary["ci_low"].iloc[0]) and np.isnan(summary["ci_high"].iloc[0])


def test_nfe_to_within_five_percent_lower_is_better():
    # Best is 1.0 at NFE 100; 1.04 at NFE 20 is the first within 5 %.
    nfe = [1, 5, 20, 50, 100]
    assert nfe_to_within(nfe, [9.0, 2.0, 1.04, 1.01, 1.0], higher_is_better=False) == 20


def test_nfe_to_within_five_percent_higher_is_better_and_unsorted_input():
    nfe = [50, 1, 10]
    values = [80.0, 40.0, 77.0]  # best 80; 77 >= 76 is within 5 %
    assert nfe_to_within(nfe, values, higher_is_better=True) == 10


def test_max_step_change_orders_by_nfe():
    assert max_step_change([10, 1, 5], [2.0, 9.0, 3.0]) == pytest.approx(6.0)
    assert np.isnan(max_step_change([1], [2.0]))


def test_a_broken_step_budget_makes_the_change_unknown():
    # NaN at the middle budget: the change is not the 0.1 between the other two.
    assert np.isnan(max_step_change([1, 5, 10], [2.0, np.nan, 2.1]))


def test_step_robustness_uses_seed_means_and_makes_robustness_values():
    frame = rows({1: [10.0, 12.0], 5: [3.0, 3.2], 20: [2.0, 2.1], 50: [2.0, 2.0]})
    table = step_robustness(frame)
    record = table.iloc[0]
    assert record["nfe_to_within"] == 20  # means 11, 3.1, 2.05, 2.0: 2.05 is within 5 % of 2.0
    assert record["max_step_change"] == pytest.approx(7.9)
    values = robustness_values(table, "m")
    assert {v.name for v in values} == {"MMD-CD:NFE-to-5%", "MMD-CD:max-step-change"}
    assert all(v.group == "robustness" and not v.higher_is_better for v in values)


def test_metric_of_one_step_budget_has_no_step_robustness():
    # A downstream score exists at the largest budget only: NFE-to-5 % would be that
    # budget and the change zero, a perfect score that says nothing.
    frame = pd.concat([rows({1: [9.0, 8.0], 20: [2.0, 2.1]}),
                       rows({20: [0.8, 0.9]}, metric="synthetic:completion-dice", higher=True)])
    table = step_robustness(frame)
    assert list(table["metric"]) == ["MMD-CD"]
