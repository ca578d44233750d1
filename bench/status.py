"""`bench status RUN`: the state of every planned cell of a run, from its files alone.

A cell is *done* (``results.csv``), *failed* (``failed.json``, or its job ended
without results: the reason is the tail of the job's log), *running* (a live
claim: :mod:`bench.core.claims`), *requeued* (its job was preempted or timed
out and waits to resume), *queued* (a job was submitted and has not started)
or *pending* (never submitted, or stopped in a local run). Whether a job
still lives is read from submitit's result file, the pid of a local job,
and, on SLURM, one ``squeue`` call for the whole run; nothing else runs, so
the status of a 100-cell run takes well under a second.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from submitit.core.utils import JobPaths

from bench.config import load_config
from bench.core.claims import ClaimState, pid_alive, read_claim
from bench.store import CONFIG_FILE, CellFolder, RunFolder

STATES = ("pending", "queued", "running", "requeued", "done", "failed")
LOG_TAIL_LINES = 5


@dataclass(frozen=True)
class CellStatus:
    """One planned cell's state, the job behind it and the seconds it has taken so far."""

    folder: str
    state: str
    job_id: str = ""
    elapsed_s: float | None = None
    detail: str = ""


def run_status(run_dir: Path) -> list[CellStatus]:
    """The state of every cell of the run's plan, in plan order."""
    run = RunFolder(run_dir)
    folders = run.planned()
    timeout_s = _claim_timeout(run)
    jobs = {folder.name: folder.job() for folder in folders}
    alive = _slurm_queue([job["job_id"] for job in jobs.values()
                          if job and job.get("launcher") == "slurm"])
    return [cell_status(run, folder, jobs[folder.name], timeout_s, alive) for folder in folders]


def cell_status(run: RunFolder, folder: CellFolder, job: dict[str, Any] | None,
                timeout_s: float, slurm_alive: set[str] | None) -> CellStatus:
    """One cell's state (see the module docstring)."""
    if folder.done:
        return CellStatus(folder.name, "done", _job_id(job), sum(folder.timings().values()))
    failure = folder.failure()
    if failure is not None:
        return CellStatus(folder.name, "failed", _job_id(job), None,
                          str(failure.get("reason", "")))
    claim = read_claim(folder.claim_path)
    requeues = int((folder.requeues() or {}).get("count", 0))
    note = f"requeued {requeues}x" if requeues else ""
    if claim is not None and not claim.stale(timeout_s):
        return _running(folder, claim, note)
    if job is None:
        return CellStatus(folder.name, "pending")
    waited = time.time() - float(job.get("submitted", time.time()))
    if _job_alive(run, job, slurm_alive):
        return CellStatus(folder.name, "requeued" if requeues else "queued", job["job_id"],
                          waited, note)
    return CellStatus(folder.name, "failed", job["job_id"], None,
                      f"job {job['job_id']} ended without results: {job_log_tail(run, job)}")


def _running(folder: CellFolder, claim: ClaimState, note: str) -> CellStatus:
    holder = claim.holder
    detail = ", ".join(part for part in (f"{holder.host} pid {holder.pid}", note) if part)
    return CellStatus(folder.name, "running", holder.job_id, time.time() - holder.started,
                      detail)


def _job_id(job: dict[str, Any] | None) -> str:
    return str(job["job_id"]) if job else ""


def _claim_timeout(run: RunFolder) -> float:
    """The run's claim timeout, from its written configuration."""
    path = run.path / CONFIG_FILE
    return float(load_config(str(path)).launcher.claim_timeout_s) if path.is_file() else 600.0


def _job_alive(run: RunFolder, job: dict[str, Any], slurm_alive: set[str] | None) -> bool:
    """False once the job has ended: its result file exists, its local process is gone, or
    SLURM no longer lists it."""
    if _paths(run, job).result_pickle.is_file():
        return False
    if job.get("launcher") == "submitit-local" and job.get("host") == socket.gethostname():
        return pid_alive(int(job["job_id"]))
    if job.get("launcher") == "slurm" and slurm_alive is not None:
        return str(job["job_id"]) in slurm_alive
    return True


def _slurm_queue(job_ids: list[str]) -> set[str] | None:
    """The job ids of ``job_ids`` that SLURM still lists (pending or running), from one
    ``squeue`` call; None when it cannot be asked (no squeue here)."""
    if not job_ids or shutil.which("squeue") is None:
        return None
    arrays = sorted({job_id.split("_")[0] for job_id in job_ids})
    try:
        listed = subprocess.run(["squeue", "--noheader", "--array", "--format=%i",
                                 f"--jobs={','.join(arrays)}"], capture_output=True,
                                text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {line.strip() for line in listed.splitlines() if line.strip()}


def _paths(run: RunFolder, job: dict[str, Any]) -> JobPaths:
    return JobPaths(run.jobs_folder, job_id=str(job["job_id"]), task_id=0)


def job_log_tail(run: RunFolder, job: dict[str, Any], lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of the job's error log (rank 0), joined by `` | ``."""
    path = _paths(run, job).stderr
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"no log at {path}"
    tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(tail) or f"empty log {path}"


def format_status(statuses: list[CellStatus]) -> str:
    """A table of the cells, then the count of each state."""
    width = max([len(status.folder) for status in statuses] + [4])
    lines = [f"{'cell':<{width}}  {'state':<8}  {'job':<14}  {'elapsed':>9}  detail"]
    for status in statuses:
        lines.append(f"{status.folder:<{width}}  {status.state:<8}  {status.job_id:<14}  "
                     f"{_duration(status.elapsed_s):>9}  {status.detail}".rstrip())
    counts = {state: sum(status.state == state for status in statuses) for state in STATES}
    lines.append(", ".join(f"{count} {state}" for state, count in counts.items() if count))
    return "\n".join(lines)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
