"""The CI gate's comparison: what counts as a regression."""

import pandas as pd

from bench.check import compare, headline, read_baseline, write_baseline

BASELINE = {"otfm": {"1-NNA-CD": 70.0, "MMD-CD": 40.0, "failure-rate": 0.0},
            "gaussian": {"1-NNA-CD": 90.0, "MMD-CD": 60.0, "failure-rate": 0.0}}


def test_unchanged_results_pass():
    assert compare(BASELINE, BASELINE) == []


def test_values_within_tolerance_pass():
    current = {"otfm": {"1-NNA-CD": 74.0, "MMD-CD": 49.0, "failure-rate": 4.0},
               "gaussian": BASELINE["gaussian"]}
    assert compare(current, BASELINE) == []


def test_worse_metrics_and_lost_floor_are_regressions():
    current = {"otfm": {"1-NNA-CD": 95.0, "MMD-CD": 80.0, "failure-rate": 20.0},
               "gaussian": BASELINE["gaussian"]}
    found = {(r.method, r.metric, r.reason.split(";")[0]) for r in compare(current, BASELINE)}
    assert ("otfm", "1-NNA-CD", "baseline 70") in found
    assert ("otfm", "MMD-CD", "baseline 40") in found
    assert ("otfm", "failure-rate", "baseline 0") in found
    assert ("otfm", "1-NNA-CD", "not better than the gaussian floor") in found


def test_missing_method_and_nan_are_regressions():
    current = {"gaussian": BASELINE["gaussian"]}
    assert [r.reason for r in compare(current, BASELINE)] == ["missing from this run"]
    current = {"otfm": {"1-NNA-CD": float("nan"), "MMD-CD": 40.0, "failure-rate": 0.0},
               "gaussian": BASELINE["gaussian"]}
    assert any(r.metric == "1-NNA-CD" for r in compare(current, BASELINE))


def test_headline_takes_seed_means_at_the_largest_budget(tmp_path):
    rows = pd.DataFrame([
        {"run": "r", "method": "otfm", "seed": s, "steps": steps, "nfe": steps,
         "group": "distribution", "metric": "1-NNA-CD", "value": value,
         "higher_is_better": False, "unit": "%"}
        for s, steps, value in [(0, 1, 99.0), (1, 1, 97.0), (0, 20, 60.0), (1, 20, 70.0)]])
    assert headline(rows) == {"otfm": {"1-NNA-CD": 65.0}}
    write_baseline(tmp_path / "b.json", headline(rows))
    assert read_baseline(tmp_path / "b.json") == {"otfm": {"1-NNA-CD": 65.0}}
