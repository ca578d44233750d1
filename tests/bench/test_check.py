"""The CI gate's comparison: what counts as a regression, in each metric's direction."""

import pandas as pd
import pytest

import methods  # noqa: F401  (registers the built-in methods)
from bench.check import Gated, allowed, compare, headline, read_baseline, write_baseline
from bench.config import load_config
from bench.core.errors import BenchError
from bench.report import Catalogue, collect_results, final_rows
from bench.run import run_benchmark
from bench.store import RunFolder
from methods.flow_matching.path import GaussianPath, PathSample

BASELINE = {"otfm": {"1-NNA-CD": 70.0, "MMD-CD": 40.0, "failure-rate": 0.0, "COV-CD": 50.0},
            "gaussian": {"1-NNA-CD": 90.0, "MMD-CD": 60.0, "failure-rate": 10.0, "COV-CD": 30.0}}
SPECS = {"1-NNA-CD": (False, "%", False), "MMD-CD": (False, "mm^2", True),
         "failure-rate": (False, "%", True), "COV-CD": (True, "%", False)}


def gated(values: dict[str, dict[str, float]]) -> dict[str, Gated]:
    """method -> metric -> value as the gate's current figures (all metrics gated)."""
    return {metric: Gated(higher, unit, True, floor,
                          {method: row[metric] for method, row in values.items() if metric in row})
            for metric, (higher, unit, floor) in SPECS.items()}


def test_unchanged_results_pass():
    assert compare(gated(BASELINE), BASELINE) == []


def test_tolerance_follows_unit_and_direction():
    assert allowed(70.0, False, "%") == 75.0 and allowed(50.0, True, "%") == 45.0
    assert allowed(40.0, False, "mm^2") == 50.0 and allowed(40.0, True, "") == 30.0


def test_values_within_tolerance_pass():
    current = {"otfm": {"1-NNA-CD": 74.0, "MMD-CD": 49.0, "failure-rate": 4.0, "COV-CD": 46.0},
               "gaussian": BASELINE["gaussian"]}
    assert compare(gated(current), BASELINE) == []


def test_worse_metrics_and_lost_floor_are_regressions():
    current = {"otfm": {"1-NNA-CD": 95.0, "MMD-CD": 80.0, "failure-rate": 20.0, "COV-CD": 40.0},
               "gaussian": BASELINE["gaussian"]}
    found = {(r.method, r.metric, r.reason.split(";")[0])
             for r in compare(gated(current), BASELINE)}
    assert found == {("otfm", "1-NNA-CD", "baseline 70"), ("otfm", "MMD-CD", "baseline 40"),
                     ("otfm", "failure-rate", "baseline 0"), ("otfm", "COV-CD", "baseline 50"),
                     ("otfm", "MMD-CD", "not better than the gaussian floor"),
                     ("otfm", "failure-rate", "not better than the gaussian floor")}


def test_missing_method_and_nan_are_regressions():
    current = {"gaussian": BASELINE["gaussian"]}
    assert {r.reason for r in compare(gated(current), BASELINE)} == {"missing from this run"}
    current = {"otfm": {**BASELINE["otfm"], "1-NNA-CD": float("nan")},
               "gaussian": BASELINE["gaussian"]}
    assert [r.metric for r in compare(gated(current), BASELINE)] == ["1-NNA-CD"]


def rows_of(metric, unit, values):
    return pd.DataFrame([
        {"run": "r", "method": "otfm", "seed": s, "steps": steps, "nfe": steps,
         "group": "distribution", "metric": metric, "value": value,
         "higher_is_better": False, "unit": unit} for s, steps, value in values])


def test_headline_takes_seed_means_at_the_largest_budget_of_tagged_metrics(tmp_path):
    budgets = [(0, 1, 99.0), (1, 1, 97.0), (0, 20, 60.0), (1, 20, 70.0)]
    rows = pd.concat([rows_of("1-NNA-CD", "%", budgets), rows_of("KMMD-pca", "", [(0, 20, 1.0)])])
    catalogue = Catalogue([{"name": "1-NNA-CD", "tags": ["gate"]},
                           {"name": "KMMD-pca", "tags": []}])
    current = headline(rows, catalogue)
    assert list(current) == ["1-NNA-CD"] and current["1-NNA-CD"].means == {"otfm": 65.0}
    write_baseline(tmp_path / "b.json", current)
    assert read_baseline(tmp_path / "b.json") == {"otfm": {"1-NNA-CD": 65.0}}
    (tmp_path / "bad.json").write_text('{"methods": [1, 2]}')
    with pytest.raises(BenchError, match="regenerate it"):
        read_baseline(tmp_path / "bad.json")


def test_gate_catches_a_wrong_velocity_sign(tmp_path, monkeypatch):
    """A broken otfm (velocity target negated) regresses against a correct run's baseline."""
    monkeypatch.setenv("SKULLBENCH_CACHE", str(tmp_path / "cache"))
    config = load_config("ci", [
        "dataset.n=80", "methods=[otfm, gaussian]", "seeds=1", "train.steps=200",
        "sampling.steps=[10]", "sampling.n_samples=12", "metrics.points=128",
        "metrics.exclude=[pointflow-emd]", "metrics.params.ms-ssim-diversity.pairs=2",
        "downstream.enabled=false"])

    def gate_figures(name):
        run_benchmark(config, tmp_path / name, quiet=True)
        run = RunFolder(tmp_path / name)
        return headline(final_rows(collect_results(run)), Catalogue(run.catalogue()))

    good = gate_figures("good")
    write_baseline(tmp_path / "baseline.json", good)
    baseline = read_baseline(tmp_path / "baseline.json")
    assert not [r for r in compare(good, baseline) if "baseline" in r.reason]
    correct = GaussianPath.sample

    def wrong_sign(self, x_0, x_1, t, *args, **kwargs):
        sample = correct(self, x_0, x_1, t, *args, **kwargs)
        return PathSample(x_t=sample.x_t, t=sample.t, velocity=-sample.velocity)

    monkeypatch.setattr(GaussianPath, "sample", wrong_sign)
    regressions = compare(gate_figures("bad"), baseline)
    assert any(r.method == "otfm" and "baseline" in r.reason for r in regressions)
