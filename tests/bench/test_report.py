"""Leaderboard tables and the verdict from long result rows whose answer is known by
construction."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.report import Catalogue, with_robustness
from bench.tables import (STATISTICS, gap_closed, leaderboard, numeric_table,
                          ranks_by_training_budget, shown_methods, text_table)
from bench.verdict import verdict

A_VALUES = [1.0, 2.0, 3.0, 4.0, 5.0]
B_VALUES = [11.0, 13.0, 12.0, 14.5, 14.5]  # a + (10, 11, 9, 10.5, 9.5): worse on every seed


def long_rows(metric, steps, values_by_method, group="distribution", higher=False):
    return pd.DataFrame([
        {"run": "r", "method": method, "seed": seed, "steps": steps, "nfe": steps,
         "train_steps": 100, "group": group, "metric": metric, "value": value,
         "higher_is_better": higher, "unit": "mm^2"}
        for method, values in values_by_method.items() for seed, value in enumerate(values)])


def stat(table, method, metric, column):
    return table[(table["method"] == method) & (table["metric"] == metric)][column].iloc[0]


def test_mean_interval_best_and_paired_test():
    table = leaderboard(long_rows("MMD-CD", 10, {"a": A_VALUES, "b": B_VALUES}), 10)
    half = stats.t.ppf(0.975, 4) * np.std(B_VALUES, ddof=1) / np.sqrt(5)
    assert stat(table, "b", "MMD-CD", "mean") == pytest.approx(np.mean(B_VALUES))
    assert stat(table, "b", "MMD-CD", "ci_high") - np.mean(B_VALUES) == pytest.approx(half)
    assert stat(table, "a", "MMD-CD", "best") and not stat(table, "b", "MMD-CD", "best")
    assert stat(table, "b", "MMD-CD", "differs") and not stat(table, "a", "MMD-CD", "differs")
    assert stat(table, "a", "MMD-CD", "rank") == 1 and stat(table, "b", "MMD-CD", "rank") == 2
    assert stat(table, "a", "MMD-CD", "n_seeds") == 5


def test_higher_is_better_flips_the_best():
    table = leaderboard(long_rows("COV-CD", 10, {"a": A_VALUES, "b": B_VALUES}, higher=True), 10)
    assert stat(table, "b", "COV-CD", "best") and stat(table, "a", "COV-CD", "differs")


def test_references_are_shown_but_never_ranked():
    rows = long_rows("MMD-CD", 10, {"a": A_VALUES, "b": B_VALUES, "ceiling": [0.0] * 5})
    table = leaderboard(rows, 10, ranked=["a", "b"])
    assert stat(table, "a", "MMD-CD", "best") and not stat(table, "ceiling", "MMD-CD", "best")
    assert np.isnan(stat(table, "ceiling", "MMD-CD", "rank"))
    assert not stat(table, "ceiling", "MMD-CD", "differs")
    text = text_table(table, "md", ["a", "b", "ceiling"])
    assert text.loc["mean rank ↓"].tolist() == ["1.00", "2.00", "–"]


def test_a_table_shows_every_ranked_method_but_only_the_references_it_has_rows_for():
    table = leaderboard(long_rows("MMD-CD", 10, {"a": A_VALUES, "ceiling": [0.0] * 5}), 10,
                        ranked=["a", "b"])
    assert shown_methods(table, ["a", "b", "ceiling", "icp"], ["a", "b"]) == ["a", "b", "ceiling"]


def test_training_ranks_leave_out_a_method_without_a_curve():
    early = long_rows("MMD-CD", 10, {"a": B_VALUES}).assign(train_steps=50)
    late = long_rows("MMD-CD", 10, {"a": A_VALUES})
    ranks = ranks_by_training_budget(pd.concat([early, late]), 10, ["a", "b"])
    assert list(ranks.columns) == ["a"] and list(ranks.index) == [50, 100]


def test_the_csv_layout_is_numeric_and_the_text_layout_has_methods_as_columns():
    rows = pd.concat([long_rows("MMD-CD", 10, {"a": A_VALUES, "b": B_VALUES}),
                      long_rows("COV-CD", 10, {"a": A_VALUES, "b": B_VALUES}, higher=True)])
    table = leaderboard(rows, 10)
    csv = numeric_table(table)
    assert list(csv.columns) == STATISTICS and len(csv) == 4
    for column in ("mean", "ci_low", "ci_high", "rank"):
        assert pd.api.types.is_float_dtype(csv[column])
    text = text_table(table, "md")
    assert list(text.columns) == ["a", "b"]
    assert list(text.index) == ["COV-CD ↑ [mm^2]", "MMD-CD ↓ [mm^2]", "mean rank ↓"]
    assert text.loc["MMD-CD ↓ [mm^2]", "a"].startswith("**3 ± ")
    assert text.loc["MMD-CD ↓ [mm^2]", "b"].endswith("†")
    assert text.loc["mean rank ↓"].tolist() == ["1.50", "1.50"]


def test_robustness_rows_cover_tagged_metrics_with_a_curve_only():
    # failure-rate is tagged but has one budget here; KMMD-descriptors has a curve but no
    # tag: neither gets robustness rows.
    rows = pd.concat([
        long_rows("MMD-CD", 1, {"a": [9.0] * 5}), long_rows("MMD-CD", 10, {"a": A_VALUES}),
        long_rows("KMMD-descriptors", 1, {"a": [9.0] * 5}),
        long_rows("KMMD-descriptors", 10, {"a": A_VALUES}),
        long_rows("failure-rate", 10, {"a": [4.0] * 5}, group="anatomy")])
    catalogue = Catalogue([{"name": "MMD-CD", "tags": ["robustness"]},
                           {"name": "failure-rate", "tags": ["robustness"]},
                           {"name": "KMMD-*", "tags": []}])
    added = with_robustness(rows, 10, catalogue)
    robustness = added[added["group"] == "robustness"]
    assert sorted(robustness["metric"]) == ["MMD-CD:NFE-to-5%", "MMD-CD:max-step-change"]
    by_name = robustness.set_index("metric")["value"]
    assert by_name["MMD-CD:NFE-to-5%"] == 10  # mean 3 at NFE 10 against 9 at NFE 1
    assert by_name["MMD-CD:max-step-change"] == pytest.approx(6.0)


def test_the_verdict_names_the_best_the_margin_and_the_test():
    equal_ish = [3.1, 1.9, 3.2, 3.8, 5.1]  # a's values plus noise: no separation
    rows = pd.concat([long_rows("MMD-CD", 10, {"a": A_VALUES, "b": B_VALUES}),
                      long_rows("COV-CD", 10, {"a": A_VALUES, "b": equal_ish}, higher=True)])
    text = verdict(leaderboard(rows, 10), rows, ["a", "b"], 10)
    pvalue = stats.ttest_rel(A_VALUES, B_VALUES).pvalue
    assert ("over the 2 headline metrics that rank methods, the best method is a on 1, b on 1"
            in text)
    assert (f"On MMD-CD, a (3 mm^2) is 10 mm^2 (76.9 %) lower than b (13 mm^2), a significant "
            f"difference (paired t-test, p = {pvalue:.2g})") in text
    assert "On COV-CD, b" in text and "not significant" in text
    single = verdict(leaderboard(rows[rows["method"] == "a"], 10), rows, ["a"], 10)
    assert single.startswith("At 10 sampling steps, a is the only ranked method")
    assert "On MMD-CD, a scores 3 mm^2." in single


def test_the_verdict_calls_no_method_better_than_the_oracle():
    rows = pd.concat([long_rows("MMD-CD", 10, {"a": A_VALUES, "b": B_VALUES,
                                               "oracle": [6.0, 6.5, 7.0, 6.5, 6.0]})])
    text = verdict(leaderboard(rows, 10, ["a", "b"]), rows, ["a", "b"], 10)
    assert "On MMD-CD, a (3 mm^2) scores better than the oracle" in text
    assert "no method is called better on it" in text
    assert "over the 0 headline metrics" in text
    gaps = gap_closed(pd.concat([rows, long_rows("MMD-CD", 10, {"floor": [21.0] * 5})]), 10,
                      ["a", "b"], "floor", "oracle")
    # a: (a - 21) / (oracle - 21) per seed; b likewise, paired by seed.
    expected = np.mean([(a - 21) / (o - 21) for a, o in zip(A_VALUES, [6, 6.5, 7, 6.5, 6])])
    assert stat(gaps, "a", "MMD-CD", "mean") == pytest.approx(100 * expected)
    assert stat(gaps, "a", "MMD-CD", "unit") == "%"
