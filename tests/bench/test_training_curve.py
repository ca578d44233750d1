"""Quality along the training budget: train.evaluate_at, its rows, caching, report, resume."""

import pandas as pd
import pytest

import bench.run
import methods  # noqa: F401  (registers the built-in methods)
from bench.config import load_config
from bench.core.errors import BenchError
from bench.report import collect_results, write_report
from bench.run import run_benchmark
from bench.store import RunFolder

TINY = ["dataset.n=60", "dataset.resolution=32", "sampling.steps=[1, 2]",
        "sampling.n_samples=8", "metrics.points=128", "metrics.exclude=[pointflow-emd]",
        "metrics.params.ms-ssim-diversity.pairs=2", "downstream.enabled=false", "seeds=2",
        "methods=[otfm]", "references=[gaussian, oracle-rep]", "train.steps=40",
        "train.checkpoint_every=20"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SKULLBENCH_CACHE", str(tmp_path / "cache"))


def config(*changes):
    return load_config("ci", TINY + list(changes))


def rows_of(out):
    return collect_results(RunFolder(out)).drop(columns="run")


def test_the_final_rows_are_those_of_a_run_without_evaluate_at(tmp_path):
    run_benchmark(config("train.evaluate_at=[10, 20]"), tmp_path / "curve", quiet=True)
    run_benchmark(config("train.evaluate_at=[]"), tmp_path / "plain", quiet=True)
    curve, plain = rows_of(tmp_path / "curve"), rows_of(tmp_path / "plain")
    final = curve[curve["train_steps"] == 40].reset_index(drop=True)
    pd.testing.assert_frame_equal(final, plain)
    earlier = curve[curve["train_steps"] < 40]
    assert sorted(set(earlier["train_steps"])) == [10, 20]
    assert set(earlier["method"]) == {"otfm"} and set(earlier["steps"]) == {2}
    assert {"MMD-CD", "COV-CD", "1-NNA-CD", "failure-rate"} == set(earlier["metric"])
    assert not earlier.drop(columns="value").duplicated().any()
    # an earlier budget's samples are not the final weights' samples
    mmd = curve[(curve["metric"] == "MMD-CD") & (curve["steps"] == 2)
                & (curve["method"] == "otfm")].set_index(["seed", "train_steps"])["value"]
    assert mmd[(0, 10)] != mmd[(0, 40)] and mmd[(1, 10)] != mmd[(1, 40)]


def test_adding_a_budget_scores_it_from_the_kept_snapshot_without_training(tmp_path):
    out = tmp_path / "run"
    first = run_benchmark(config("train.evaluate_at=[]"), out, quiet=True)
    assert all("fit" in o.timings for o in first if o.cell.method == "otfm")
    again = run_benchmark(config("train.evaluate_at=[20]"), out, quiet=True)
    by_method = {o.cell.label: o for o in again}
    assert by_method["otfm-s0"].status == "done" and "fit" not in by_method["otfm-s0"].timings
    assert by_method["gaussian-s0"].status == "cached"
    assert set(rows_of(out)["train_steps"]) == {20, 40}
    assert all(o.status == "cached" for o in run_benchmark(config("train.evaluate_at=[20]"),
                                                           out, quiet=True))


def test_a_budget_without_a_snapshot_fails_the_cell_by_name_and_keeps_its_rows(tmp_path):
    out = tmp_path / "run"
    run_benchmark(config("train.evaluate_at=[]"), out, quiet=True)
    again = run_benchmark(config("train.evaluate_at=[15]"), out, quiet=True)
    failed = [o for o in again if o.status == "failed"]
    assert {o.cell.method for o in failed} == {"otfm"}
    assert "no EMA snapshot of training step 15 (kept: [20, 40])" in failed[0].reason
    assert set(rows_of(out)["train_steps"]) == {40}


def test_the_report_plots_ranks_and_times_the_training_curve(tmp_path):
    out = tmp_path / "run"
    run_benchmark(config("train.evaluate_at=[10, 20]", "methods=[otfm, ddpm]"), out,
                  quiet=True)
    written = {path.name for path in write_report(out, tmp_path / "report")}
    assert {"training.md", "training.csv", "training.tex"} <= written
    ranks = pd.read_csv(tmp_path / "report" / "training.csv")
    assert list(ranks.columns) == ["train_steps", "ddpm", "otfm"]
    assert list(ranks["train_steps"]) == [10, 20, 40]
    assert ((ranks[["ddpm", "otfm"]] >= 1) & (ranks[["ddpm", "otfm"]] <= 2)).all().all()
    for metric in ("MMD-CD", "failure-rate"):
        assert (tmp_path / "report" / f"training-{metric}.png").stat().st_size > 10_000
    page = (tmp_path / "report" / "index.html").read_text()
    assert "ranking along the training budget" in page and "training-MMD-CD.png" in page
    assert "training steps" in page and ("ranking changes" in page or "keeps" in page)
    robustness = pd.read_csv(tmp_path / "report" / "robustness.csv")
    to_within = robustness[robustness["metric"] == "MMD-CD:train-steps-to-5%"]
    assert set(to_within["method"]) == {"ddpm", "otfm"}
    assert to_within["mean"].isin([10, 20, 40]).all()
    timings = pd.read_csv(tmp_path / "report" / "timings.csv")
    assert {"train-to-step10", "train-to-step20", "train-to-step40", "curve-sample",
            "curve-evaluate"} <= set(timings["stage"])


def test_curve_budgets_must_be_budgets_the_tables_show():
    with pytest.raises(BenchError, match=r"sampling.training_curve_steps: \[5\] are not among "
                                         r"sampling.steps \[1, 2\]"):
        config("sampling.training_curve_steps=[5]")


class Killed(Exception):
    """Stands for the process dying part-way through the training curve."""


def test_a_kill_during_the_training_curve_resumes_to_the_same_rows(tmp_path, monkeypatch):
    settings = config("train.evaluate_at=[10, 20]", "seeds=1")
    run_benchmark(settings, tmp_path / "whole", quiet=True)
    scored = []
    evaluate = bench.run.evaluate

    def dies_on_the_second_curve_point(reference, volumes, seed, metrics):
        if len(metrics) < 5:  # a curve point scores the headline metrics only
            scored.append(seed)
            if len(scored) == 2:
                raise Killed
        return evaluate(reference, volumes, seed, metrics)

    monkeypatch.setattr(bench.run, "evaluate", dies_on_the_second_curve_point)
    with pytest.raises(Killed):
        run_benchmark(settings, tmp_path / "killed", quiet=True)
    monkeypatch.setattr(bench.run, "evaluate", evaluate)
    run_benchmark(settings, tmp_path / "killed", quiet=True)
    pd.testing.assert_frame_equal(rows_of(tmp_path / "killed"), rows_of(tmp_path / "whole"))
