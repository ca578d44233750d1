"""`bench run --launcher slurm|submitit-local`: one submitit job per pending cell.

The submitting machine prepares the run as a local run does (configuration,
dataset, the shared representation, catalogue and plan), so that jobs only
load what it cached; it then submits one job per cell that is neither done
nor queued or running (with ``--resubmit-failed``: per failed cell), as one
SLURM job array, and returns. Each job (:class:`CellJob`) loads the run and
runs its one cell through :func:`bench.run.run_cell`, which claims the cell
first. A job that is preempted or reaches its time limit is requeued by
submitit (``CellJob.checkpoint``) and resumes from the cell's last training
checkpoint; training resumes bitwise, so the rows equal an uninterrupted
run's. A cell with several GPUs runs one process per GPU, joined into one
torch.distributed group through submitit's environment, as torchrun would.

The submission (launcher, parameters, the sbatch script, cell -> job id) goes
to ``RUN/launch/submissions.json`` and each cell's ``job.json``;
submitit's own files (pickles, logs) to ``RUN/launch/jobs``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import submitit
from submitit.helpers import Checkpointable, DelayedSubmission, TorchDistributedEnvironment
from submitit.slurm.slurm import _make_sbatch_string

from bench.config import LauncherConfig, RunConfig, time_limit_minutes, training_curve
from bench.core.claims import read_claim
from bench.core.distributed import init_from_env
from bench.core.errors import BenchError
from bench.core.registry import load_plugin
from bench.run import check_run, grid, prepare_run, run_cell, unranked_names
from bench.status import run_status
from bench.store import Cell, CellFolder, RunFolder
from bench.workers import thread_budget

# Seconds between SLURM's warning signal and the kill: time to write the requeue.
SIGNAL_DELAY_S = 120
# Time-outs after which submitit stops requeuing a cell (preemptions do not count).
MAX_TIMEOUTS = 10
STATES_TO_SUBMIT = {"pending", "failed"}


@dataclass
class CellJob(Checkpointable):
    """The job of one cell: picklable, and requeued with itself on preemption or time-out.

    Attributes:
        config: the run's resolved configuration at submission.
        run_dir: the run folder (on a filesystem every node sees).
        cell: the cell to run.
        folder: the cell's folder at submission; a job whose code or data gives another
            folder refuses to run, so that no job writes outside the plan.
        plugins: modules to import first (``bench --plugin``).
    """

    config: RunConfig
    run_dir: str
    cell: Cell
    folder: str
    plugins: tuple[str, ...] = ()

    def __call__(self) -> str:
        """Run the cell (or rank r's share of it); returns its status."""
        for module in self.plugins:
            load_plugin(module)
        environment = submitit.JobEnvironment()
        if environment.num_tasks > 1:
            TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        device = init_from_env(self.config.device)
        with thread_budget(self.config.threads):
            context = prepare_run(self.config, RunFolder(Path(self.run_dir)),
                                  check_run(self.config), quiet=True)
            context = dataclasses.replace(context, device=device, job_id=environment.job_id)
            if context.folder(self.cell).path != Path(self.folder):
                raise BenchError(f"{self.cell.label}: the code or the dataset changed since the "
                                 f"submission (the cell's folder would be "
                                 f"{context.folder(self.cell).name}, not "
                                 f"{Path(self.folder).name}); submit the run again")
            outcome = run_cell(context, self.cell)
        print(f"{self.cell.label}: {outcome.status} {outcome.reason}".rstrip(), flush=True)
        return outcome.status

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        """Called by submitit on preemption or time-out: note the requeue and free the
        claim (the requeued job takes it again), then requeue this same job. Training
        resumes from the cell's last checkpoint (``train.checkpoint_every``)."""
        job_id = submitit.JobEnvironment().job_id
        folder = CellFolder(Path(self.folder))
        folder.record_requeue(job_id, time.time())
        found = read_claim(folder.claim_path)
        if found is not None and found.holder.job_id == job_id:
            folder.claim_path.unlink(missing_ok=True)
        return super().checkpoint(*args, **kwargs)


@dataclass(frozen=True)
class Submission:
    """What one submission sent: the job id of each submitted cell folder."""

    launcher: str
    jobs: dict[str, str]
    skipped: dict[str, str]  # cell folder -> its state, for the cells not submitted


def check_launcher(launcher: LauncherConfig) -> None:
    """Refuse a launcher that cannot work here, naming the fix."""
    if launcher.name == "slurm" and shutil.which("sbatch") is None:
        raise BenchError("--launcher slurm: no `sbatch` on PATH; run on a SLURM login node, or "
                         "use --launcher submitit-local (this machine) or local")
    if launcher.name == "submitit-local" and launcher.nodes_per_cell > 1:
        raise BenchError(f"--nodes-per-cell {launcher.nodes_per_cell}: submitit-local runs on "
                         f"this one machine; use --nodes-per-cell 1, or --launcher slurm")


def submit_run(config: RunConfig, out_dir: Path, plugins: tuple[str, ...] = (),
               failed_only: bool = False) -> Submission:
    """Prepare the run here, then submit one job per cell to run (see the module docstring).

    Args:
        config: the run's configuration; ``config.launcher`` says where and how.
        out_dir: the run folder, on a filesystem that every node sees.
        plugins: modules every job imports first.
        failed_only: submit only the failed cells (``--resubmit-failed``), not the pending.
    """
    if config.launcher.name == "local":
        raise BenchError("submit_run needs --launcher slurm or submitit-local; --launcher local "
                         "runs the cells in this process (bench run without --launcher)")
    check_launcher(config.launcher)
    chosen = check_run(config)
    run = RunFolder(out_dir)
    with thread_budget(config.threads):
        context = prepare_run(config, run, chosen, quiet=True)
    cells = {context.folder(cell).name: cell for cell in grid(config)}
    run.write_plan([context.folder(cell) for cell in cells.values()], unranked_names(config),
                   training_curve(config))
    states = {status.folder: status.state for status in run_status(out_dir)}
    wanted = {"failed"} if failed_only else STATES_TO_SUBMIT
    chosen_cells = {name: cell for name, cell in cells.items() if states[name] in wanted}
    skipped = {name: state for name, state in states.items() if name not in chosen_cells}
    if not chosen_cells:
        return Submission(config.launcher.name, {}, skipped)
    jobs = [CellJob(config, str(run.path), cell, str(run.path / "cells" / name), plugins)
            for name, cell in chosen_cells.items()]
    ids = _submit(config, run, jobs)
    submission = Submission(config.launcher.name, dict(zip(chosen_cells, ids)), skipped)
    _record(config, run, submission)
    return submission


def _submit(config: RunConfig, run: RunFolder, jobs: list[CellJob]) -> list[str]:
    """Hand the jobs to submitit, one array; returns their job ids in order."""
    executor = make_executor(config.launcher, config.threads, run.jobs_folder, run.name)
    with _output_detached():
        submitted = executor.submit_array(jobs)
    return [str(job.job_id) for job in submitted]


@contextlib.contextmanager
def _output_detached() -> Iterator[None]:
    """Point this process's stdout and stderr at /dev/null while submitit starts local job
    controllers, which inherit them: a caller that reads `bench run`'s output through a
    pipe would otherwise wait for every job to end. (The jobs write to their own logs.)"""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for descriptor in (*saved, null):
            os.close(descriptor)


def make_executor(launcher: LauncherConfig, threads: int, folder: Path,
                  name: str) -> submitit.Executor:
    """submitit's SLURM or local executor with the launcher's parameters."""
    if launcher.name == "slurm":
        slurm = submitit.SlurmExecutor(folder=folder, max_num_timeout=MAX_TIMEOUTS)
        slurm.update_parameters(**slurm_parameters(launcher, threads, name))
        return slurm
    local = submitit.LocalExecutor(folder=folder, max_num_timeout=MAX_TIMEOUTS)
    local.update_parameters(timeout_min=time_limit_minutes(launcher.time),
                            tasks_per_node=tasks_per_node(launcher),
                            gpus_per_node=launcher.gpus_per_cell, signal_delay_s=SIGNAL_DELAY_S)
    # submitit waits 0.2 s between the jobs it starts locally (20 s for 100 cells); the
    # processes it starts need no such spacing.
    local._throttling = 0.0
    return local


def tasks_per_node(launcher: LauncherConfig) -> int:
    """Processes of a cell per node: one per GPU (a single one without GPUs)."""
    return max(1, launcher.gpus_per_cell // launcher.nodes_per_cell)


def slurm_parameters(launcher: LauncherConfig, threads: int, name: str) -> dict[str, Any]:
    """The sbatch parameters of one cell's job, in submitit's SLURM names."""
    parameters: dict[str, Any] = {
        "job_name": f"bench-{name}", "time": time_limit_minutes(launcher.time),
        "nodes": launcher.nodes_per_cell, "ntasks_per_node": tasks_per_node(launcher),
        "cpus_per_task": launcher.cpus_per_cell or threads,
        "array_parallelism": launcher.array_parallelism, "signal_delay_s": SIGNAL_DELAY_S}
    if launcher.gpus_per_cell:
        parameters["gpus_per_node"] = launcher.gpus_per_cell // launcher.nodes_per_cell
    if launcher.mem_gb:
        parameters["mem"] = f"{launcher.mem_gb}GB"
    for key in ("partition", "account"):
        if getattr(launcher, key):
            parameters[key] = getattr(launcher, key)
    return parameters


def sbatch_script(launcher: LauncherConfig, threads: int, folder: Path, name: str,
                  n_jobs: int) -> str:
    """The sbatch script that submitit writes for an array of ``n_jobs`` cell jobs (made
    by submitit's own writer, so it can be checked where no SLURM is installed)."""
    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit",
                        shlex.quote(str(folder))])
    return _make_sbatch_string(command=command, folder=folder,
                               map_count=n_jobs if n_jobs > 1 else None,
                               **slurm_parameters(launcher, threads, name))


def _record(config: RunConfig, run: RunFolder, submission: Submission) -> None:
    """Write the submission to the run folder and each cell's job record."""
    launcher, now, host = config.launcher, time.time(), socket.gethostname()
    record: dict[str, Any] = {
        "time": now, "host": host, "launcher": launcher.name,
        "options": dataclasses.asdict(launcher), "jobs": submission.jobs}
    if launcher.name == "slurm":
        record["parameters"] = slurm_parameters(launcher, config.threads, run.name)
        record["sbatch"] = sbatch_script(launcher, config.threads, run.jobs_folder, run.name,
                                         len(submission.jobs))
    run.add_submission(record)
    for name, job_id in submission.jobs.items():
        CellFolder(run.path / "cells" / name).write_job(
            {"job_id": job_id, "launcher": launcher.name, "submitted": now, "host": host})
