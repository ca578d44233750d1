"""The CI gate's comparison: what counts as a regression."""

import pandas as pd

from bench.check import compare, headline, read_baseline, write_baseline

BASELINE = {"otfm": {"1-NNA-CD": 70.0, "MMD-CD": 40.0, "failure-rate": 0.0},
            "gaussian": {"1-NNA-CD": 90.0, "MMD-CD": 60.0, "failure-rate": 10.0}}


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
    assert ("otfm", "MMD-CD", "not better than the gaussian floor") in found
    assert ("otfm", "failure-rate", "not better than the gaussian floor") in found


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


def test_gate_catches_a_wrong_velocity_sign(tmp_path, monkeypatch):
    """A broken otfm (velocity target negated) regresses against a correct run's baseline."""
    import methods  # noqa: F401
    from bench.config import load_config
    from bench.report import collect_results
    from bench.run import run_benchmark
    from methods.flow_matching.path import GaussianPath, PathSample

    monkeypatch.setenv("SKULLBENCH_CACHE", str(tmp_path / "cache"))
    config = load_config("ci", [
        "dataset.n=80", "methods=[otfm, gaussian]", "seeds=1", "train.steps=200",
        "sampling.steps=[10]", "sampling.n_samples=12", "metrics.points=128",
        "metrics.emd=false", "metrics.diversity_pairs=2", "downstream.enabled=false"])
    run_benchmark(config, tmp_path / "good", quiet=True)
    good = headline(collect_results(tmp_path / "good"))
    assert not [r for r in compare(good, good) if "baseline" in r.reason]

    correct = GaussianPath.sample

    def wrong_sign(self, x_0, x_1, t, *args, **kwargs):
        sample = correct(self, x_0, x_1, t, *args, **kwargs)
        return PathSample(x_t=sample.x_t, t=sample.t, velocity=-sample.velocity)

    monkeypatch.setattr(GaussianPath, "sample", wrong_sign)
    run_benchmark(config, tmp_path / "bad", quiet=True)
    regressions = compare(headline(collect_results(tmp_path / "bad")), good)
    assert any(r.method == "otfm" and "baseline" in r.reason for r in regressions)
