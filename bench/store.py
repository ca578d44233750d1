"""The run folder: every file name in it, the plan, cell hashes, results, failures,
timings and samples. `bench run`, `report`, `sample` and `check` read and write
a run only through this module.

Layout::

    RUN/config.yaml            resolved configuration (with --methods, --seeds)
    RUN/environment.json       package versions, git commit, device, threads
    RUN/plan.json              the cell folders of this configuration (the report reads these)
                               and the points of its training curve
    RUN/metrics.json           the catalogue: every reported scalar's group, direction,
                               unit and tags (what the reports do with it)
    RUN/reference.json         facts of the real side: sizes, the representation's
                               reconstruction Dice, the real skulls' diversity and DCRs
    RUN/results.csv            every planned cell's rows, merged by `bench report`
    RUN/shared/                the fitted representation, real examples for the gallery
    RUN/cells/METHOD-sSEED-HASH/
        cell.json              method, seed and the representation that decodes its samples
        checkpoints/           training checkpoints (resume point) and EMA snapshots
                               (ema-stepB.pt: the weights at training step B)
        fit.json               the fit report: steps, losses, wall time, parameters
        method.pt              the fitted method (`bench sample` reads it)
        samples-stepsS.npz     decoded samples per step budget
        dcr.csv                per-sample DCRs and nearest training skulls (the report's
                               histograms and closest pairs)
        downstream-cases.csv   per-test-case scores of the tasks (the report's bootstrap)
        results.csv            the cell's rows, written last: its presence means done
        samples-stepsS-trainB.npz, curve-trainB-stepsS.csv
                               samples and rows of the training curve (train.evaluate_at),
                               each point written after results.csv, on its own
        failed.json            why the cell failed (NaN loss, bad samples, ...)
        timings.json           wall-clock seconds per stage (kept out of results)
        claim.json             who works on the cell now (job id, host, pid, start; its
                               modification time is the heartbeat): one worker per cell
        job.json               the job submitted for the cell (--launcher slurm or
                               submitit-local): job id, launcher, time, log files
        requeued.json          how often that job was preempted or timed out and requeued
    RUN/launch/submissions.json  every submission: launcher, parameters, sbatch script,
                               cell -> job id
    RUN/launch/jobs/           submitit's folder: pickled jobs, results and logs

A cell's folder name carries a hash of what determines it (resolved config
less what only picks or schedules the grid or adds training-curve points, dataset
manifest, and the code:
the bytes of every module of the four packages), so a rerun with other
settings or changed code never mistakes old results for new ones. Every write
is atomic.
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import subprocess
import traceback
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

import bench
from bench.config import RunConfig, to_dict
from bench.core.errors import BenchError
from bench.core.io import atomic_path, source_fingerprint, write_json_atomic
from bench.core.values import MetricValue

CONFIG_FILE = "config.yaml"
ENVIRONMENT_FILE = "environment.json"
PLAN_FILE = "plan.json"
CATALOGUE_FILE = "metrics.json"
REFERENCE_FILE = "reference.json"
RESULTS_FILE = "results.csv"
CELL_FILE = "cell.json"
FIT_FILE = "fit.json"
METHOD_FILE = "method.pt"
DCR_FILE = "dcr.csv"
CASES_FILE = "downstream-cases.csv"
FAILED_FILE = "failed.json"
TIMINGS_FILE = "timings.json"
REFERENCE_EXAMPLES = "reference-examples.npz"
CLAIM_FILE = "claim.json"
JOB_FILE = "job.json"
REQUEUED_FILE = "requeued.json"
LAUNCH_DIR = "launch"
SUBMISSIONS_FILE = "submissions.json"

RESULT_COLUMNS = ["run", "method", "seed", "steps", "nfe", "train_steps", "group", "metric",
                  "value", "higher_is_better", "unit"]
DCR_COLUMNS = ["run", "method", "seed", "steps", "set", "sample", "dcr", "nearest_train"]
CODE_PACKAGES = ("bench", "methods", "metrics", "downstream")
# Settings of a run that choose its grid of cells or how they are scheduled, but change
# no cell's numbers: a cell's hash leaves them out, so a run with another seed or
# method added, or with other jobs or launcher, reuses the cells it shares with an earlier one.
NOT_CELL_SETTINGS = ("methods", "references", "seeds", "method_params", "jobs", "launcher")
# Settings that only add training-curve files to a finished cell, so that adding a training
# budget scores only it, from the snapshot its training kept (at every checkpoint step
# too; a budget never kept fails the cell by name).
NOT_CELL_CURVE_SETTINGS = (("train", "evaluate_at"), ("sampling", "training_curve_steps"))


@dataclass(frozen=True, order=True)
class Cell:
    """One (method, seed) pair of a run."""

    method: str
    seed: int

    @property
    def label(self) -> str:
        return f"{self.method}-s{self.seed}"


def cell_hash(cell: Cell, config: RunConfig, dataset_hash: str) -> str:
    """Hash of what determines a cell: resolved config, dataset, code version."""
    settings = {key: value for key, value in to_dict(config).items()
                if key not in NOT_CELL_SETTINGS}
    for section, key in NOT_CELL_CURVE_SETTINGS:
        settings[section] = {name: value for name, value in settings[section].items()
                             if name != key}
    determining = {
        "cell": [cell.method, cell.seed],
        "config": settings,
        "method_params": config.method_params.get(cell.method, {}),
        "dataset": dataset_hash,
        "code": code_fingerprint(),
    }
    text = json.dumps(determining, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """The code's part of a cell's hash: the version and the source of the four packages.

    It sees uncommitted edits, unlike a version number or a git commit; code of
    plugins is not included.
    """
    root = Path(bench.__file__).resolve().parent.parent
    return source_fingerprint(root, CODE_PACKAGES, salt=bench.__version__)


def result_rows(run_name: str, cell: Cell, steps: int, nfe: int, train_steps: int,
                values: list[MetricValue]) -> pd.DataFrame:
    """Long-format rows of one (cell, sampling budget, training budget) as a data frame (not
    yet written). ``train_steps`` is the run's training budget for every cell but the
    training-curve rows of a method, whatever the cell trains (a reference trains nothing)."""
    rows = [[run_name, cell.method, cell.seed, steps, nfe, train_steps, v.group, v.name,
             float(v.value), bool(v.higher_is_better), v.unit] for v in values]
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def write_table(path: Path, frame: pd.DataFrame) -> None:
    """Write a table atomically, floats with ten significant digits."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.10g")


class CellFolder:
    """The folder of one cell, ``RUN/cells/METHOD-sSEED-HASH``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def method_path(self) -> Path:
        return self.path / METHOD_FILE

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    def file(self, name: str) -> Path:
        return self.path / name

    def samples_path(self, steps: int, train_steps: int | None = None) -> Path:
        """The decoded samples of a sampling budget (of the final weights, or of the EMA
        snapshot of ``train_steps``)."""
        budget = "" if train_steps is None else f"-train{train_steps}"
        return self.path / f"samples-steps{steps}{budget}.npz"

    def curve_path(self, train_steps: int, steps: int) -> Path:
        """The rows of one point of the training curve, beside the final rows."""
        return self.path / f"curve-train{train_steps}-steps{steps}.csv"

    @property
    def done(self) -> bool:
        return (self.path / RESULTS_FILE).is_file()

    @property
    def failed(self) -> bool:
        return (self.path / FAILED_FILE).is_file()

    @property
    def claim_path(self) -> Path:
        """The cell's claim file (:mod:`bench.core.claims`)."""
        return self.path / CLAIM_FILE

    def failure(self) -> dict[str, Any] | None:
        """``failed.json`` (method, seed, reason, traceback), or None."""
        return _read_optional(self.path / FAILED_FILE)

    def timings(self) -> dict[str, float]:
        """``timings.json``: seconds per stage (empty before the cell ran)."""
        return _read_optional(self.path / TIMINGS_FILE) or {}

    def write_job(self, record: dict[str, Any]) -> None:
        """Record the job submitted for the cell, forgetting the requeues and the failure
        of an earlier one (the new job tries again)."""
        self.path.mkdir(parents=True, exist_ok=True)
        for name in (REQUEUED_FILE, FAILED_FILE):
            (self.path / name).unlink(missing_ok=True)
        write_json_atomic(self.path / JOB_FILE, record)

    def job(self) -> dict[str, Any] | None:
        """``job.json``: the last job submitted for the cell, or None."""
        return _read_optional(self.path / JOB_FILE)

    def record_requeue(self, job_id: str, when: float) -> None:
        """Count one more preemption or time-out after which the job was requeued."""
        count = int((self.requeues() or {}).get("count", 0)) + 1
        write_json_atomic(self.path / REQUEUED_FILE, {"count": count, "job_id": job_id,
                                                      "last": when})

    def requeues(self) -> dict[str, Any] | None:
        """``requeued.json``: count, job id and time of the last requeue, or None."""
        return _read_optional(self.path / REQUEUED_FILE)

    def start(self, cell: Cell, representation: str) -> None:
        """Create the folder, forget an earlier failure, and record what the cell is."""
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / FAILED_FILE).unlink(missing_ok=True)
        write_json_atomic(self.path / CELL_FILE, {"method": cell.method, "seed": cell.seed,
                                                  "representation": representation})

    def info(self) -> dict[str, Any]:
        """``cell.json``: method, seed and the representation's path in the run folder."""
        path = self.path / CELL_FILE
        try:
            info = json.loads(path.read_text())
            if not all(key in info for key in ("method", "seed", "representation")):
                raise KeyError("method, seed or representation")
            return info
        except (OSError, ValueError, KeyError) as error:
            raise BenchError(f"{path}: cannot read the cell's record ({error}); the cell must "
                             f"sit in its folder of a `bench run`") from None

    def write_fit(self, report: dict[str, Any]) -> None:
        write_json_atomic(self.path / FIT_FILE, report)

    def write_dcr(self, frame: pd.DataFrame) -> None:
        write_table(self.path / DCR_FILE, frame)

    def write_cases(self, frame: pd.DataFrame) -> None:
        """Per-test-case downstream scores (the report's bootstrap over test cases)."""
        write_table(self.path / CASES_FILE, frame)

    def write_results(self, frame: pd.DataFrame) -> None:
        """The cell's rows; written last, so that their presence marks the cell done."""
        write_table(self.path / RESULTS_FILE, frame)

    def record_failure(self, cell: Cell, error: BaseException) -> str:
        """Write ``failed.json`` with the reason and traceback; return the reason."""
        reason = f"{type(error).__name__}: {error}"
        write_json_atomic(self.path / FAILED_FILE, {
            "method": cell.method, "seed": cell.seed, "reason": reason,
            "traceback": traceback.format_exception(error)})
        return reason

    def write_timings(self, timings: dict[str, float]) -> None:
        """Seconds per stage, over those of an earlier invocation that this one did not
        run (a finished cell that scores a new training budget keeps its fit time)."""
        path = self.path / TIMINGS_FILE
        earlier = json.loads(path.read_text()) if path.is_file() else {}
        write_json_atomic(path, {**earlier, **timings})


class RunFolder:
    """A run's folder: configuration, plan, catalogue, reference facts and cells."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def shared(self) -> Path:
        return self.path / "shared"

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS_FILE

    @property
    def reference_examples(self) -> Path:
        return self.shared / REFERENCE_EXAMPLES

    def representation_path(self, key: str) -> Path:
        return self.shared / f"representation-{key}.pt"

    def cell(self, cell: Cell, config: RunConfig, dataset_hash: str) -> CellFolder:
        """The folder of ``cell`` under this configuration, dataset and code."""
        digest = cell_hash(cell, config, dataset_hash)
        return CellFolder(self.path / "cells" / f"{cell.label}-{digest}")

    def write_config(self, config: RunConfig, environment: dict[str, Any]) -> None:
        """The resolved configuration and the environment it runs in."""
        self.path.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path / CONFIG_FILE) as tmp:
            tmp.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
        write_json_atomic(self.path / ENVIRONMENT_FILE, environment)

    def write_plan(self, folders: list[CellFolder], references: list[str],
                   curve: list[tuple[int, int]]) -> None:
        """Record the folders of every cell of the grid (all shards) in ``plan.json``, which
        of its pseudo-methods are references (shown beside the methods, never ranked), and
        the (training steps, sampling steps) points of the training curve."""
        write_json_atomic(self.path / PLAN_FILE, {"cells": [folder.name for folder in folders],
                                                  "references": references,
                                                  "curve": [list(point) for point in curve]})

    def curve(self) -> list[tuple[int, int]]:
        """The (training steps, sampling steps) points of the plan's training curve."""
        return [(int(train), int(steps))
                for train, steps in self._read_json(PLAN_FILE).get("curve", [])]

    def references(self) -> list[str]:
        """The reference pseudo-methods of the plan, in plan order."""
        return list(self._read_json(PLAN_FILE).get("references", []))

    def planned(self) -> list[CellFolder]:
        """The cell folders of the run's current plan, finished or not, in grid order."""
        path = self.path / PLAN_FILE
        names = self._read_json(PLAN_FILE).get("cells")
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise BenchError(f"{path}: 'cells' must be a list of folder names; rerun "
                             f"`bench run --out {self.path}` to write it again")
        return [CellFolder(self.path / "cells" / name) for name in names]

    def planned_files(self, name: str) -> list[Path]:
        """File ``name`` of each planned cell that has it, in grid order."""
        return [folder.file(name) for folder in self.planned() if folder.file(name).is_file()]

    def planned_curve_files(self) -> list[Path]:
        """The training-curve files of the planned cells and the plan's curve points."""
        return [folder.curve_path(train, steps) for folder in self.planned()
                for train, steps in self.curve() if folder.curve_path(train, steps).is_file()]

    def unfinished(self) -> list[str]:
        """Folder names of the planned cells with neither results nor a recorded failure
        (not yet run, interrupted, or another shard's that has not finished)."""
        return [folder.name for folder in self.planned() if not (folder.done or folder.failed)]

    @property
    def jobs_folder(self) -> Path:
        """submitit's folder of the run's jobs: pickles, results and logs."""
        return self.path / LAUNCH_DIR / "jobs"

    def add_submission(self, record: dict[str, Any]) -> None:
        """Append one submission to ``launch/submissions.json``."""
        path = self.path / LAUNCH_DIR / SUBMISSIONS_FILE
        earlier = (_read_optional(path) or {}).get("submissions", [])
        write_json_atomic(path, {"submissions": [*earlier, record]})

    def submissions(self) -> list[dict[str, Any]]:
        """Every submission of the run, oldest first."""
        found = _read_optional(self.path / LAUNCH_DIR / SUBMISSIONS_FILE) or {}
        return list(found.get("submissions", []))

    def write_catalogue(self, entries: list[dict[str, Any]]) -> None:
        write_json_atomic(self.path / CATALOGUE_FILE, {"values": entries})

    def catalogue(self) -> list[dict[str, Any]]:
        """``metrics.json``: group, name pattern, direction, unit and tags of every scalar."""
        entries = self._read_json(CATALOGUE_FILE).get("values")
        if not isinstance(entries, list):
            raise BenchError(f"{self.path / CATALOGUE_FILE}: no 'values' list; rerun `bench run "
                             f"--out {self.path}` to write it again")
        return entries

    def write_reference_facts(self, facts: dict[str, Any]) -> None:
        write_json_atomic(self.path / REFERENCE_FILE, facts)

    def reference_facts(self) -> dict[str, Any]:
        """``reference.json``: what is known of the real side (empty if not written)."""
        if not (self.path / REFERENCE_FILE).is_file():
            return {}
        return self._read_json(REFERENCE_FILE)

    def _read_json(self, name: str) -> dict[str, Any]:
        path = self.path / name
        try:
            content = json.loads(path.read_text())
        except FileNotFoundError:
            raise BenchError(f"{path}: missing; {self.path} is not the folder of a `bench run`, "
                             f"or it predates this file: rerun `bench run --out {self.path}` "
                             f"with the same settings to write it") from None
        except (OSError, ValueError) as error:
            raise BenchError(f"{path}: unreadable ({error}); rerun `bench run --out "
                             f"{self.path}` to write it again") from error
        if not isinstance(content, dict):
            raise BenchError(f"{path}: not a JSON object; rerun `bench run --out {self.path}`")
        return content


def _read_optional(path: Path) -> dict[str, Any] | None:
    """A JSON object file, or None when it is missing or unreadable."""
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


def environment(device: str) -> dict[str, object]:
    """Package versions, git commit, device and threads, for ``environment.json``."""
    packages: dict[str, str | None] = {}
    for name in ("torch", "numpy", "scipy", "pot", "monai", "torchdiffeq", "pandas", "open3d",
                 "skull-bench"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(bench.__file__).parent, check=False).stdout.strip()
    except OSError:
        commit = ""
    return {"packages": packages, "git_commit": commit or None, "python": platform.python_version(),
            "platform": platform.platform(), "device": device,
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
