"""A `bench run` killed (SIGKILL) mid-way and rerun loses nothing and ends as if never stopped.

The run is killed twice: while its second cell trains (after a checkpoint),
and again once that cell has started sampling. The rerun must keep the first
cell's files untouched, resume the second cell's training from its last
checkpoint, and end with results byte-identical to a run that was never
interrupted (training resumes bitwise, sampling is seeded).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.core.training import CHECKPOINT_NAME

SETTINGS = ["jobs=1", "dataset.n=60", "dataset.resolution=32", "methods=[otfm]", "references=[]",
            "seeds=2",
            "train.steps=1500", "train.checkpoint_every=100", "sampling.steps=[1, 4]",
            "sampling.n_samples=8", "metrics.points=128", "metrics.exclude=[pointflow-emd]",
            "metrics.params.ms-ssim-diversity.pairs=2", "downstream.enabled=false"]


def bench_run(out: Path, env: dict) -> subprocess.Popen:
    overrides = [arg for setting in SETTINGS for arg in ("--set", setting)]
    command = [sys.executable, "-m", "bench.cli", "run", "--config", "ci", "--out", str(out),
               "--quiet", "--no-report", *overrides]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def kill_when(process: subprocess.Popen, ready, timeout_s: float = 300.0) -> None:
    """SIGKILL ``process`` as soon as ``ready()`` holds; fail if it ends first."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert process.poll() is None, f"the run ended before the kill:\n{process.stdout.read()}"
        assert time.monotonic() < deadline, "timed out waiting for the moment to kill"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def cell(run: Path, label: str) -> Path | None:
    found = list((run / "cells").glob(f"{label}-*"))
    return found[0] if found else None


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()
            if p.is_file()}


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "SKULLBENCH_CACHE": str(tmp_path / "cache"),
            "OMP_WAIT_POLICY": "PASSIVE"}


def test_killed_run_resumes_and_matches_an_uninterrupted_one(tmp_path, env):
    # Both runs are named "run": the run's name is a column of its results.
    reference_run, run = tmp_path / "uninterrupted" / "run", tmp_path / "interrupted" / "run"
    reference = bench_run(reference_run, env)
    assert reference.wait() == 0, reference.stdout.read()

    def second_cell_checkpointed():
        folder = cell(run, "otfm-s1")
        return folder is not None and (folder / "checkpoints" / CHECKPOINT_NAME).is_file()

    kill_when(bench_run(run, env), second_cell_checkpointed)
    first = cell(run, "otfm-s0")
    assert (first / "results.csv").is_file()
    second = cell(run, "otfm-s1")
    assert not (second / "method.pt").exists()
    kept = snapshot(first)

    def second_cell_sampling():
        return any(second.glob("samples-steps*.npz"))

    kill_when(bench_run(run, env), second_cell_sampling)
    assert not (second / "results.csv").exists()
    assert (second / "method.pt").is_file()

    final = bench_run(run, env)
    output = final.communicate()[0]
    assert final.returncode == 0, output
    assert "otfm-s0: cached" in output and "otfm-s1: done" in output
    assert snapshot(first) == kept
    fit = json.loads((second / "fit.json").read_text())
    assert fit["extra"]["resumed_from"] >= 100 and fit["steps"] == 1500
    for label in ("otfm-s0", "otfm-s1"):
        expected = cell(reference_run, label)
        assert expected.name == cell(run, label).name  # same hash: same settings
        assert (cell(run, label) / "results.csv").read_bytes() == \
            (expected / "results.csv").read_bytes()
