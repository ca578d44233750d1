"""bench run and bench report on a tiny grid of baselines: caching, failures, shards."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

import methods  # noqa: F401  (registers the built-in methods)
from bench.config import load_config
from bench.core.errors import BenchError
from bench.report import collect_results, summary_table, write_report
from bench.run import plan_cells, run_benchmark
from bench.store import (DCR_COLUMNS, DCR_FILE, PLAN_FILE, RESULT_COLUMNS, RunFolder,
                         code_fingerprint, source_fingerprint)
from methods.base import METHODS, FitReport, Method, SampleResult
from methods.registry import register_method

TINY = ["dataset.n=60", "dataset.resolution=32", "sampling.steps=[1, 2]",
        "sampling.n_samples=8", "metrics.points=128", "metrics.exclude=[pointflow-emd]",
        "metrics.params.ms-ssim-diversity.pairs=2", "downstream.n_test=3", "seeds=2"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SKULLBENCH_CACHE", str(tmp_path / "cache"))


class NaNSampler(Method):
    """Fits nothing and samples NaN: a method that breaks at sampling time."""

    description = "test method whose samples are NaN"

    def _fit(self, train, val, config, seed, device):
        return FitReport(method=self.name, seed=seed)

    def _sample(self, n, steps, seed, device):
        return SampleResult(torch.full((n, *self.data_shape_), float("nan")), steps)

    def _state(self):
        return {}

    def _restore(self, state, device):
        pass


class BuggySampler(NaNSampler):
    """Samples by dividing a list: a bug in the code, not a numerical failure."""

    description = "test method with a bug"

    def _sample(self, n, steps, seed, device):
        raise TypeError("unsupported operand type(s) for /: 'list' and 'int'")


@pytest.fixture
def nan_method():
    register_method("nan-sampler")(NaNSampler)
    register_method("buggy-sampler")(BuggySampler)
    yield "nan-sampler"
    METHODS.classes.pop("nan-sampler")
    METHODS.classes.pop("buggy-sampler")


def test_grid_runs_caches_and_reports(tmp_path):
    config = load_config("ci", TINY + ["methods=[otfm, train-copy]", "train.steps=30"])
    out = tmp_path / "run"
    first = run_benchmark(config, out, quiet=True)
    # oracle, oracle-rep, gaussian and train-copy (references) and otfm, 2 seeds each, then
    # the tasks trained on a few real skulls (each seed) and the tasks' baselines (once)
    assert [o.cell.method for o in first[:10:2]] == ["oracle", "oracle-rep", "gaussian",
                                                     "train-copy", "otfm"]
    assert [o.cell.label for o in first[10:]] == ["few-real-s0", "few-real-s1", "baselines-s0"]
    assert [o.status for o in first] == ["done"] * 13
    again = run_benchmark(config, out, quiet=True)
    assert [o.status for o in again] == ["cached"] * 13
    rows = collect_results(RunFolder(out))
    assert list(rows.columns) == RESULT_COLUMNS
    assert set(rows["method"]) == {"otfm", "train-copy", "oracle", "oracle-rep", "gaussian",
                                   "few-real", "identity", "icp"}
    assert set(rows[rows["method"] == "few-real"]["metric"].str.split(":").str[0]) == {
        "augmented"}
    otfm = rows[(rows["method"] == "otfm") & (rows["group"] == "downstream")]
    assert set(otfm["metric"].str.split(":").str[0]) == {"synthetic", "augmented"}
    assert {"distribution", "anatomy", "privacy", "volumetric", "downstream"} <= set(rows["group"])
    # References are scored at the largest step budget only.
    assert set(rows[rows["method"] == "oracle"]["steps"]) == {2}
    assert set(rows[rows["method"] == "otfm"]["steps"]) == {1, 2}
    # Copies of (pca reconstructions of) training skulls sit closer to the training set
    # than fresh real skulls do.
    dcr = rows[rows["metric"] == "DCR-ratio-Dice"].groupby("method")["value"].mean()
    assert dcr["train-copy"] < dcr["oracle"]
    per_sample = pd.concat(pd.read_csv(p) for p in (out / "cells").glob(f"*/{DCR_FILE}"))
    assert list(per_sample.columns) == DCR_COLUMNS
    generated = per_sample[per_sample["set"] == "generated"]
    assert generated.groupby(["method", "seed", "steps"]).size().eq(8).all()  # n_samples
    medians = generated.groupby(["method", "seed", "steps"])["dcr"].median()
    summary = rows[rows["metric"] == "DCR-median-generated-Dice"].set_index(
        ["method", "seed", "steps"])["value"]
    np.testing.assert_allclose(medians.sort_index(), summary.sort_index(), rtol=1e-9)
    summary = summary_table(out).splitlines()
    # few-real has augmented rows only, none of them headline
    assert [cell.strip() for cell in summary[0].split("|")[2:9]] == [
        "otfm", "oracle", "oracle-rep", "gaussian", "train-copy", "identity", "icp"]
    metrics_shown = [line.split("|")[1].strip() for line in summary[2:]]
    assert metrics_shown == ["1-NNA-CD ↓ [%]", "COV-CD ↑ [%]", "MMD-CD ↓ [mm^2]",
                             "failure-rate ↓ [%]", "synthetic:align-frankfort-deg ↓ [deg]",
                             "synthetic:implant-dice ↑"]
    paths = write_report(out)
    tables = {p.name: p.read_bytes() for p in paths if p.suffix in (".md", ".csv", ".tex")
              and p.name != "timings.csv"}
    write_report(out)
    assert tables == {name: (out / "report" / name).read_bytes() for name in tables}
    assert "**" in (out / "report" / "distribution.md").read_text()
    page = (out / "report" / "index.html").read_text()
    assert page.count("<table") >= 5
    assert 'src="dcr.png"' in page and (out / "report" / "dcr.png").stat().st_size > 1000
    assert json.loads((out / "environment.json").read_text())["packages"]["torch"]


def test_failed_cell_is_recorded_and_the_others_go_on(tmp_path, nan_method):
    config = load_config("ci", TINY + ["methods=[nan-sampler, gaussian]", "seeds=1",
                                       "downstream.enabled=false"])
    outcomes = {o.cell.label: o for o in run_benchmark(config, tmp_path / "run", quiet=True)}
    assert outcomes["nan-sampler-s0"].status == "failed"
    assert "NaN" in outcomes["nan-sampler-s0"].reason
    assert outcomes["gaussian-s0"].status == "done"
    failure = next((tmp_path / "run" / "cells").glob("nan-sampler-s0-*/failed.json"))
    assert json.loads(failure.read_text())["reason"].startswith("NonFiniteError:")


def test_a_bug_stops_the_run_instead_of_failing_a_cell(tmp_path, nan_method):
    config = load_config("ci", TINY + ["methods=[buggy-sampler, gaussian]", "seeds=1",
                                       "downstream.enabled=false"])
    with pytest.raises(TypeError, match="unsupported operand"):
        run_benchmark(config, tmp_path / "run", quiet=True)
    assert not list((tmp_path / "run" / "cells").glob("*/failed.json"))


@pytest.mark.parametrize("override, message", [
    ("methods=[gaussian, ddmp]", "did you mean 'ddpm'"),
    ("method_params={gaussian: {ridge: -1}}", "ridge"),
    ("method_params={ottfm: {solver: rk4}}", "did you mean 'otfm'"),
])
def test_unknown_method_or_hyperparameter_is_refused_before_any_cell(
        tmp_path, override, message):
    config = load_config("ci", TINY + [override, "seeds=1"])
    with pytest.raises(BenchError, match=message):
        run_benchmark(config, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


def test_shards_split_the_grid_and_merge_into_one_run(tmp_path):
    cells = plan_cells(["a", "b"], 3)
    shards = [plan_cells(["a", "b"], 3, (i, 3)) for i in (1, 2, 3)]
    assert sorted(c for s in shards for c in s) == sorted(cells)
    assert not set(shards[0]) & set(shards[1])
    config = load_config("ci", TINY + ["methods=[train-copy]", "references=[gaussian]",
                                       "seeds=2", "downstream.enabled=false"])
    run = tmp_path / "run"
    run_benchmark(config, run, (2, 2), quiet=True)
    plan = json.loads((run / PLAN_FILE).read_text())["cells"]
    assert [name.rsplit("-", 1)[0] for name in plan] == ["gaussian-s0", "gaussian-s1",
                                                         "train-copy-s0", "train-copy-s1"]
    assert RunFolder(run).unfinished() == plan[::2]  # shard 1's: cells 1 and 3
    run_benchmark(config, run, (1, 2), quiet=True)
    assert json.loads((run / PLAN_FILE).read_text())["cells"] == plan
    assert RunFolder(run).unfinished() == []
    rows = collect_results(RunFolder(run))
    assert set(rows["method"]) == {"gaussian", "train-copy"}


def test_changed_config_does_not_reuse_old_cells(tmp_path):
    base = TINY + ["methods=[gaussian]", "references=[]", "seeds=1", "downstream.enabled=false"]
    run_benchmark(load_config("ci", base), tmp_path / "run", quiet=True)
    outcomes = run_benchmark(load_config("ci", base + ["sampling.n_samples=6"]),
                             tmp_path / "run", quiet=True)
    assert [o.status for o in outcomes] == ["done"]
    assert len(list((tmp_path / "run" / "cells").iterdir())) == 2
    # The old cell stays on disk, but the report reads the current plan's cell only.
    rows = collect_results(RunFolder(tmp_path / "run"))
    assert len(rows[(rows["metric"] == "MMD-CD") & (rows["steps"] == 2)]) == 1
    write_report(tmp_path / "run", formats=("md",))
    timings = pd.read_csv(tmp_path / "run" / "report" / "timings.csv")
    assert timings["cell"].nunique() == 1


def test_a_run_with_another_seed_and_method_reuses_the_cells_it_shares(tmp_path):
    base = TINY + ["methods=[gaussian]", "references=[]", "seeds=1", "downstream.enabled=false"]
    run_benchmark(load_config("ci", base), tmp_path / "run", quiet=True)
    grown = load_config("ci", base + ["methods=[gaussian, train-copy]", "seeds=2"])
    outcomes = run_benchmark(grown, tmp_path / "run", quiet=True)
    outcomes = {o.cell.label: o.status for o in outcomes}
    assert outcomes == {"gaussian-s0": "cached", "gaussian-s1": "done",
                        "train-copy-s0": "done", "train-copy-s1": "done"}


def test_parallel_cells_give_the_same_files_as_one_at_a_time(tmp_path):
    settings = TINY + ["methods=[otfm]", "references=[gaussian]", "train.steps=30",
                       "downstream.n_test=2"]
    runs = {}
    for jobs in (1, 2):
        runs[jobs] = tmp_path / f"jobs{jobs}" / "run"  # one name: it is a column of the rows
        outcomes = run_benchmark(load_config("ci", settings + [f"jobs={jobs}"]), runs[jobs],
                                 quiet=True)
        assert [o.cell.label for o in outcomes] == ["gaussian-s0", "gaussian-s1", "otfm-s0",
                                                    "otfm-s1", "few-real-s0", "few-real-s1",
                                                    "baselines-s0"]
        assert {o.status for o in outcomes} == {"done"}
    plans = [json.loads((runs[jobs] / PLAN_FILE).read_text())["cells"] for jobs in (1, 2)]
    assert plans[0] == plans[1]  # jobs is not part of a cell's hash
    for name in plans[0]:
        for file in ("results.csv", "dcr.csv"):
            one, two = (runs[jobs] / "cells" / name / file for jobs in (1, 2))
            assert one.is_file() == two.is_file()
            assert not one.is_file() or one.read_bytes() == two.read_bytes(), (name, file)


def test_report_of_a_folder_without_a_plan_says_how_to_make_one(tmp_path):
    (tmp_path / "run" / "cells" / "otfm-s0-abc").mkdir(parents=True)
    with pytest.raises(BenchError, match="plan.json: missing.*bench run --out"):
        collect_results(RunFolder(tmp_path / "run"))


def test_an_edit_to_the_code_changes_the_fingerprint(tmp_path):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    module = tmp_path / "pkg" / "sub" / "m.py"
    module.write_text("x = 1\n")
    before = source_fingerprint(tmp_path, ("pkg",))
    assert source_fingerprint(tmp_path, ("pkg",)) == before
    module.write_text("x = 2\n")
    edited = source_fingerprint(tmp_path, ("pkg",))
    assert edited != before
    module.rename(tmp_path / "pkg" / "sub" / "n.py")
    assert source_fingerprint(tmp_path, ("pkg",)) not in (before, edited)
    assert len(code_fingerprint()) == 64


def test_references_are_scored_at_every_seed_and_ordered_by_the_metrics(tmp_path):
    """oracle ahead of gaussian ahead of mean-skull, at 20 against 20 skulls and 2 seeds.

    Measured (seed means): MMD-CD 242.7 / 246.1 / 261.6 mm^2, KMMD-pca 0.005 / 0.020 /
    0.293. At this size 1-NNA-CD and COV-CD put mean-skull last but do not separate the
    oracle from the gaussian (47.5 against 55 %, 47.5 against 52.5 %, CIs of about 60
    points): a finding about small sets, which the audit measures, not asserted here.
    """
    config = load_config("ci", TINY + [
        "dataset.n=200", "sampling.n_samples=20", "metrics.points=256", "methods=[mean-skull]",
        "references=[oracle, gaussian]", "downstream.enabled=false"])
    outcomes = run_benchmark(config, tmp_path / "run", quiet=True)
    assert [o.cell.label for o in outcomes] == ["oracle-s0", "oracle-s1", "gaussian-s0",
                                                "gaussian-s1", "mean-skull-s0", "mean-skull-s1"]
    assert RunFolder(tmp_path / "run").references() == ["oracle", "gaussian", "mean-skull"]
    rows = collect_results(RunFolder(tmp_path / "run"))
    means = rows.groupby(["metric", "method"])["value"].mean()
    assert means["MMD-CD", "gaussian"] - means["MMD-CD", "oracle"] > 1.0
    assert means["MMD-CD", "mean-skull"] - means["MMD-CD", "gaussian"] > 5.0
    assert means["KMMD-pca", "gaussian"] - means["KMMD-pca", "oracle"] > 0.005
    assert means["KMMD-pca", "mean-skull"] - means["KMMD-pca", "gaussian"] > 0.1
    assert means["1-NNA-CD", "mean-skull"] > max(means["1-NNA-CD", "oracle"],
                                                 means["1-NNA-CD", "gaussian"])


def test_a_method_among_the_references_is_refused(tmp_path):
    config = load_config("ci", TINY + ["references=[otfm]"])
    with pytest.raises(BenchError, match="config references: 'otfm' is not a reference"):
        run_benchmark(config, tmp_path / "run", quiet=True)
