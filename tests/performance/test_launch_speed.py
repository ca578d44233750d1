"""Submission of a 100-cell plan, and `bench status` of it (`make bench`).

Targets from the issue: submitting a 100-cell plan takes under 10 s, measured
with submitit's local executor, and `bench status` of a 100-cell run under
2 s. The plan is the ci preset's data (60 subjects at 32^3) with otfm and ddpm
at 50 seeds each; the submission prepares the run (dataset from the cache,
representation fitted, reference set, plan) and starts the 100 local jobs.
The jobs' command is replaced by ``true``, so that the machine starts 100
job controllers but does not train 100 cells: what is timed is the harness
and submitit, not the cells. The figures land in extra_info and are printed;
nothing here fails on time.
"""

import functools
import time

import pytest
import submitit

import bench.launch
from bench.config import load_config
from bench.launch import submit_run
from bench.status import run_status

PLAN = ["dataset.n=60", "dataset.resolution=32", "methods=[otfm, ddpm]", "seeds=50",
        "references=[]", "downstream.enabled=false", "jobs=1", "launcher.name=submitit-local",
        "metrics.exclude=[pointflow-emd]"]
SUBMIT_TARGET_S, STATUS_TARGET_S = 10.0, 2.0


@pytest.fixture
def no_op_jobs(monkeypatch, tmp_path):
    """Local jobs whose command is ``true``, and a cache of this test's own."""
    monkeypatch.setenv("SKULLBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(submitit, "LocalExecutor",
                        functools.partial(submitit.LocalExecutor, python="true"))


def test_submission_and_status_of_a_100_cell_plan(benchmark, no_op_jobs, tmp_path, capsys):
    if benchmark.disabled:
        pytest.skip("starts 100 local job controllers: run with --benchmark-enable (make bench)")
    config = load_config("ci", PLAN)
    submit_run(config, tmp_path / "warm-up")  # the dataset into the cache, imports done
    spent = {}
    original = bench.launch._submit

    def timed_submit(*args):
        start = time.perf_counter()
        ids = original(*args)
        spent["submit_s"] = time.perf_counter() - start
        return ids

    bench.launch._submit = timed_submit
    try:
        start = time.perf_counter()
        submission = submit_run(config, tmp_path / "run")
        total_s = time.perf_counter() - start
    finally:
        bench.launch._submit = original
    assert len(submission.jobs) == 100
    statuses = benchmark.pedantic(run_status, args=(tmp_path / "run",), rounds=5, iterations=1)
    assert len(statuses) == 100
    benchmark.extra_info.update(submission_s=total_s, submitit_s=spent["submit_s"],
                                status_s=benchmark.stats.stats.max,
                                submit_target_s=SUBMIT_TARGET_S, status_target_s=STATUS_TARGET_S)
    with capsys.disabled():
        print(f"\n100-cell plan: submit_run {total_s:.2f} s (submitit's part "
              f"{spent['submit_s']:.2f} s); bench status {benchmark.stats.stats.max:.3f} s "
              f"(slowest of 5)")
