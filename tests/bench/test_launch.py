"""`bench run --launcher submitit-local|slurm`: submission, identical results, resume after a
kill or a preemption, one worker per cell, and the sbatch script checked with no SLURM.

The jobs of submitit's local executor are processes of this machine, so the whole
path (pickled job, prepared run loaded in the job, claim, checkpoint, requeue) runs
here; SLURM itself is replaced by a fake ``sbatch`` that records the script it is given.
"""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.cli import build_parser
from bench.config import LauncherConfig, load_config, time_limit_minutes
from bench.core.claims import read_claim
from bench.core.errors import BenchError
from bench.core.training import CHECKPOINT_NAME
from bench.launch import sbatch_script, slurm_parameters
from bench.status import run_status

SETTINGS = ["dataset.n=60", "dataset.resolution=32", "methods=[otfm]", "references=[gaussian]",
            "seeds=1", "train.steps=600", "train.checkpoint_every=100", "train.evaluate_at=[]",
            "sampling.steps=[1, 4]", "sampling.n_samples=8", "metrics.points=128",
            "metrics.exclude=[pointflow-emd]", "metrics.params.ms-ssim-diversity.pairs=2",
            "downstream.enabled=false"]
WAIT_S = 300


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return {**os.environ, "SKULLBENCH_CACHE": str(tmp_path_factory.mktemp("cache")),
            "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": _root_on_path()}


def _root_on_path():
    """The checkout under test first on the jobs' path, as on the test's own."""
    root = str(Path(__file__).resolve().parents[2])
    return os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)


def bench(env, *args, settings=SETTINGS, check=True):
    """Run the `bench` command line in a fresh process; its combined output."""
    overrides = [arg for setting in settings for arg in ("--set", setting)]
    result = subprocess.run([sys.executable, "-m", "bench.cli", *args, *overrides], env=env,
                            capture_output=True, text=True, timeout=WAIT_S)
    output = result.stdout + result.stderr
    if check:
        assert result.returncode == 0, output
    return output


def run_args(out, *extra):
    return ["run", "--config", "ci", "--out", str(out), "--quiet", "--no-report", *extra]


def wait_for(ready, what, timeout_s=WAIT_S):
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def wait_until_settled(run):
    """Poll `bench status` until every cell is done or failed; the final states."""
    def settled():
        return all(status.state in ("done", "failed") for status in run_status(run))

    wait_for(settled, f"the jobs of {run}")
    return {status.folder.split("-")[0]: status for status in run_status(run)}


def results(run):
    return {folder.name: (folder / "results.csv").read_bytes()
            for folder in sorted((run / "cells").iterdir())}


@pytest.fixture(scope="module")
def local_run(env, tmp_path_factory):
    """The reference: the same settings with --launcher local (in this process's way)."""
    run = tmp_path_factory.mktemp("local") / "run"
    bench(env, *run_args(run, "--jobs", "1"))
    return run


@pytest.mark.slow
def test_submitit_local_gives_byte_identical_results_and_returns_at_once(env, local_run,
                                                                         tmp_path):
    run = tmp_path / "run"  # the same name: the run's name is a column of its rows
    output = bench(env, *run_args(run, "--launcher", "submitit-local"))
    assert "2 job(s) submitted (submitit-local)" in output
    assert any(status.state != "done" for status in run_status(run))  # it did not wait
    states = wait_until_settled(run)
    assert {name: status.state for name, status in states.items()} == \
        {"gaussian": "done", "otfm": "done"}
    assert results(run) == results(local_run)
    submissions = json.loads((run / "launch" / "submissions.json").read_text())["submissions"]
    assert len(submissions) == 1 and len(submissions[0]["jobs"]) == 2
    for folder in (run / "cells").iterdir():
        job = json.loads((folder / "job.json").read_text())
        assert job["job_id"] == submissions[0]["jobs"][folder.name]
        assert not (folder / "claim.json").exists()  # released at the end
    again = bench(env, *run_args(run, "--launcher", "submitit-local"))
    assert "0 job(s) submitted" in again and "not submitted: 2 done" in again


def _task_pid(cell_folder):
    """The pid of the job process that holds the cell's claim."""
    return read_claim(cell_folder / "claim.json").holder.pid


def _checkpointed(run):
    def ready():
        found = list((run / "cells").glob("otfm-*"))
        return bool(found) and (found[0] / "checkpoints" / CHECKPOINT_NAME).is_file() and \
            (found[0] / "claim.json").is_file()
    return ready


@pytest.mark.slow
def test_a_job_killed_in_training_resumes_when_resubmitted(env, local_run, tmp_path):
    run = tmp_path / "run"
    bench(env, *run_args(run, "--launcher", "submitit-local"))
    wait_for(_checkpointed(run), "the first checkpoint")
    otfm = next((run / "cells").glob("otfm-*"))
    os.kill(_task_pid(otfm), signal.SIGKILL)
    states = wait_until_settled(run)
    assert states["otfm"].state == "failed"
    assert "ended without results" in states["otfm"].detail
    assert not (otfm / "results.csv").exists()

    output = bench(env, "run", "--resubmit-failed", str(run), "--launcher", "submitit-local",
                   settings=[])
    assert "1 job(s) submitted" in output and "not submitted: 1 done" in output
    states = wait_until_settled(run)
    assert states["otfm"].state == "done"
    fit = json.loads((otfm / "fit.json").read_text())
    assert fit["extra"]["resumed_from"] >= 100 and fit["steps"] == 600
    assert results(run) == results(local_run)


@pytest.mark.slow
def test_a_preempted_job_is_requeued_and_resumes_from_its_checkpoint(env, local_run, tmp_path):
    run = tmp_path / "run"
    bench(env, *run_args(run, "--launcher", "submitit-local"))
    wait_for(_checkpointed(run), "the first checkpoint")
    otfm = next((run / "cells").glob("otfm-*"))
    first = _task_pid(otfm)
    os.kill(first, signal.SIGUSR2)  # what SLURM sends before preempting or at the time limit
    wait_for(lambda: (otfm / "requeued.json").is_file(), "the requeue record")
    states = wait_until_settled(run)
    assert states["otfm"].state == "done"
    requeued = json.loads((otfm / "requeued.json").read_text())
    assert requeued["count"] == 1
    assert requeued["job_id"] == json.loads((otfm / "job.json").read_text())["job_id"]
    fit = json.loads((otfm / "fit.json").read_text())
    assert fit["extra"]["resumed_from"] >= 100
    assert results(run) == results(local_run)


@pytest.mark.slow
def test_a_cell_claimed_by_a_live_worker_is_skipped_then_taken_over_when_stale(env, tmp_path):
    run = tmp_path / "run"
    settings = SETTINGS + ["methods=[gaussian]", "references=[]", "seeds=2"]
    bench(env, *run_args(run, "--jobs", "1"), settings=settings)
    gaussian = next((run / "cells").glob("gaussian-s0-*"))
    (gaussian / "results.csv").unlink()
    claim = {"job_id": "4242_0", "host": "another-node", "pid": 1, "started": time.time(),
             "token": "t"}
    (gaussian / "claim.json").write_text(json.dumps(claim))
    output = bench(env, *run_args(run, "--jobs", "1"), settings=settings)
    assert "gaussian-s0: claimed by job 4242_0 on another-node" in output
    assert not (gaussian / "results.csv").exists()
    status = {s.folder: s for s in run_status(run)}[gaussian.name]
    assert (status.state, status.job_id) == ("running", "4242_0")
    report = bench(env, "report", str(run), "--format", "md", settings=[])
    assert f"unfinished: {gaussian.name}" in report

    old = time.time() - 3600  # the holder stopped refreshing it an hour ago
    os.utime(gaussian / "claim.json", (old, old))
    output = bench(env, *run_args(run, "--jobs", "1"), settings=settings)
    assert "gaussian-s0: done" in output
    assert (gaussian / "results.csv").is_file() and not (gaussian / "claim.json").exists()


@pytest.mark.slow
def test_a_cell_with_two_gpus_trains_as_one_distributed_group_of_two_processes(env, tmp_path):
    # On a CPU machine the two processes join with gloo, as on GPUs with NCCL.
    run = tmp_path / "run"
    settings = [s for s in SETTINGS if not s.startswith("references")]
    settings += ["references=[]", "train.steps=200"]
    bench(env, *run_args(run, "--launcher", "submitit-local", "--gpus-per-cell", "2"),
          settings=settings)
    states = wait_until_settled(run)
    assert states["otfm"].state == "done", states["otfm"].detail
    otfm = next((run / "cells").glob("otfm-*"))
    checkpoint = torch.load(otfm / "checkpoints" / CHECKPOINT_NAME, weights_only=False)
    assert checkpoint["fingerprint"]["processes"] == 2
    logs = sorted((run / "launch" / "jobs").glob("*_log.out"))
    assert len(logs) == 2 and all("otfm-s0: done" in log.read_text() for log in logs)


def _fake_slurm(folder: Path) -> Path:
    """A folder of fake ``sbatch`` (copies the script it is given, answers a job id) and
    ``srun`` (submitit looks for it) to put first on PATH."""
    folder.mkdir()
    scripts = {"sbatch": f'cp "$1" {folder}/submitted.sh\necho "Submitted batch job 4242"\n',
               "srun": "exit 0\n"}
    for name, body in scripts.items():
        path = folder / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return folder


@pytest.mark.slow
def test_slurm_submission_is_one_array_with_the_options_given(env, tmp_path):
    fake = _fake_slurm(tmp_path / "bin")
    slurm_env = {**env, "PATH": f"{fake}{os.pathsep}{env['PATH']}"}
    run = tmp_path / "run"
    options = ["--launcher", "slurm", "--partition", "gpu", "--gpus-per-cell", "1",
               "--cpus-per-cell", "4", "--mem-gb", "32", "--time", "08:00:00",
               "--array-parallelism", "8", "--account", "lab"]
    output = bench(slurm_env, *run_args(run, *options))
    assert "2 job(s) submitted (slurm)" in output
    script = (fake / "submitted.sh").read_text()
    for flag in ("--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=4", "--mem=32GB",
                 "--time=480", "--array=0-1%2", "--account=lab", "--signal=USR2@120",
                 "--nodes=1", "--ntasks-per-node=1"):
        assert f"#SBATCH {flag}\n" in script, flag
    submission = json.loads((run / "launch" / "submissions.json").read_text())["submissions"][0]
    assert submission["sbatch"] == script  # the record is the script that was submitted
    assert sorted(submission["jobs"].values()) == ["4242_0", "4242_1"]
    assert {status.state for status in run_status(run)} == {"queued"}  # no squeue: unknown
    again = bench(slurm_env, *run_args(run, *options))
    assert "0 job(s) submitted" in again and "not submitted: 2 queued" in again
    config = load_config(str(run / "config.yaml"))
    assert config.launcher.partition == "gpu" and config.launcher.time == "08:00:00"


def test_the_sbatch_script_follows_the_options_of_a_multi_gpu_multi_node_cell(tmp_path):
    launcher = LauncherConfig(name="slurm", partition="a100", account="lab", gpus_per_cell=8,
                              nodes_per_cell=2, mem_gb=200, time="1-12:00:00",
                              array_parallelism=5)
    script = sbatch_script(launcher, threads=6, folder=tmp_path, name="paper", n_jobs=12)
    for flag in ("--partition=a100", "--account=lab", "--nodes=2", "--ntasks-per-node=4",
                 "--gpus-per-node=4", "--cpus-per-task=6", "--mem=200GB", "--time=2160",
                 "--array=0-11%5", "--job-name=bench-paper"):
        assert f"#SBATCH {flag}\n" in script, flag
    assert "-m submitit.core._submit" in script and "srun" in script
    assert slurm_parameters(LauncherConfig(name="slurm"), 3, "x")["cpus_per_task"] == 3
    assert "gpus_per_node" not in slurm_parameters(LauncherConfig(name="slurm"), 1, "x")


@pytest.mark.parametrize("text, minutes", [("90", 90), ("08:00:00", 480), ("1-00", 1440),
                                           ("2-03:30", 3090), ("00:00:30", 1), ("5:30", 6)])
def test_time_limits_in_slurm_formats(text, minutes):
    assert time_limit_minutes(text) == minutes


@pytest.mark.parametrize("args, message", [
    (["--launcher", "slurmm"], "unknown launcher.*did you mean 'slurm'"),
    (["--partition", "gpu"], "--partition: options of --launcher slurm.*given with --launcher "
                             "local"),
    (["--launcher", "submitit-local", "--jobs", "2"], "jobs=2 is for --launcher local"),
    (["--launcher", "submitit-local", "--time", "8h"], "--time '8h'"),
    (["--launcher", "submitit-local", "--shard", "1/2"], "--shard 1/2.*drop --shard"),
    (["--launcher", "slurm"], "no `sbatch` on PATH"),
])
def test_launcher_mistakes_are_errors_naming_the_option(args, message, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    monkeypatch.setenv("SKULLBENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(BenchError, match=message):
        handle(["run", "--config", "ci", "--out", str(tmp_path / "run"), *args,
                       "--set", "dataset.n=60", "--set", "dataset.resolution=32"])


def handle(argv):
    """Run the command's handler, whose BenchError ``main`` would print."""
    args = build_parser().parse_args(argv)
    args.handler(args)


def test_resubmit_failed_needs_a_run_folder(tmp_path):
    with pytest.raises(BenchError, match="no config.yaml there"):
        handle(["run", "--resubmit-failed", str(tmp_path), "--launcher", "slurm"])
