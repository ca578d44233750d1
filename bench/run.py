"""`bench run`: the grid of cells (method x seed), each cached, resumable and shardable.

Run directory::

    RUN/config.yaml            resolved configuration (with --methods, --seeds)
    RUN/environment.json       package versions, git commit, device, threads
    RUN/plan.json              the cell folders of this configuration (the report reads these)
    RUN/shared/                the fitted representation and the reference set's cache
    RUN/cells/METHOD-sSEED-HASH/
        checkpoints/           training checkpoints (resume point)
        cell.json              method, seed and the representation that decodes its samples
        fit.json               the fit report: steps, losses, wall time, parameters, resume
        method.pt              the fitted method (`bench sample` reads it)
        samples-stepsS.npz     decoded samples per step budget
        dcr.csv                per-sample DCRs of every step budget (the report's histograms)
        results.csv            the cell's rows, written last: its presence means done
        failed.json            why the cell failed (NaN loss, bad samples, ...)
        timings.json           wall-clock seconds per stage (kept out of results)

A cell's folder name carries a hash of what determines it (resolved config,
dataset manifest, and the code: the bytes of every module of the four
packages), so a rerun with other settings or changed code never mistakes old
results for new ones. Cells are independent: ``--shard i/n``
runs cells i, i+n, i+2n, ... of the sorted grid, and shards on separate
machines can share one run directory. Every invocation writes ``plan.json``,
the folders of the whole grid under the current configuration and code, and
reports read only those: cells left behind by an earlier configuration or
code version in the same run directory are kept on disk but never mixed into
the leaderboards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch

import bench
from bench.config import RunConfig, to_dict
from bench.errors import BenchError
from bench.io import atomic_path, write_json_atomic
from metrics.base import MetricValue
from metrics.privacy import PrivacyReport

# Reference pseudo-methods of the downstream stage, run once per run (seed 0): the
# tasks trained on the real training split (the ceiling), and on samples of the
# gaussian baseline (the floor) when "gaussian" is not among the run's methods.
REAL_TRAIN = "real-train"
GAUSSIAN_FLOOR = "gaussian-floor"
CELL_FILE = "cell.json"
PLAN_FILE = "plan.json"
DCR_FILE = "dcr.csv"
DCR_COLUMNS = ["run", "method", "seed", "steps", "set", "dcr"]
RESULT_COLUMNS = ["run", "method", "seed", "steps", "nfe", "group", "metric", "value",
                  "higher_is_better", "unit"]


@dataclass(frozen=True, order=True)
class Cell:
    """One (method, seed) pair of a run."""

    method: str
    seed: int

    @property
    def label(self) -> str:
        return f"{self.method}-s{self.seed}"


@dataclass
class CellOutcome:
    """What happened to one cell in this invocation."""

    cell: Cell
    status: str  # "done", "cached", "failed"
    reason: str = ""
    timings: dict[str, float] = field(default_factory=dict)


def plan_cells(methods: list[str], seeds: int, shard: tuple[int, int] | None = None) -> list[Cell]:
    """The sorted grid of cells, or shard i of n of it (i counted from 1)."""
    if seeds < 1:
        raise BenchError(f"--seeds must be at least 1, got {seeds}")
    if not methods:
        raise BenchError("--methods is empty; name at least one method (see `bench list`)")
    cells = [Cell(m, s) for m in methods for s in range(seeds)]
    if shard is None:
        return cells
    index, count = shard
    return cells[index - 1::count]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` -> (i, n) with 1 <= i <= n."""
    if text is None:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise BenchError(f"--shard {text!r}: expected i/n, e.g. 2/4") from None
    if not 1 <= index <= count:
        raise BenchError(f"--shard {text!r}: i must be between 1 and n")
    return index, count


# Settings of a run that choose its grid of cells or how they are scheduled, but change
# no cell's numbers: a cell's hash leaves them out, so a run with another seed or
# method added, or with other jobs, reuses the cells it shares with an earlier one.
NOT_CELL_SETTINGS = ("methods", "seeds", "method_params", "jobs")


def cell_hash(cell: Cell, config: RunConfig, dataset_manifest_hash: str) -> str:
    """Hash of what determines a cell: resolved config, dataset, code version."""
    settings = {key: value for key, value in to_dict(config).items()
                if key not in NOT_CELL_SETTINGS}
    determining = {
        "cell": [cell.method, cell.seed],
        "config": settings,
        "method_params": config.method_params.get(cell.method, {}),
        "dataset": dataset_manifest_hash,
        "code": code_fingerprint(),
    }
    text = json.dumps(determining, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


CODE_PACKAGES = ("bench", "methods", "metrics", "downstream")


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """The code's part of a cell's hash: the version and the source of the four packages.

    It sees uncommitted edits, unlike a version number or a git commit; code of
    plugin methods is not included.
    """
    root = Path(bench.__file__).resolve().parent.parent
    return source_fingerprint(root, CODE_PACKAGES, salt=bench.__version__)


def source_fingerprint(root: Path, packages: tuple[str, ...], salt: str = "") -> str:
    """SHA-256 over the relative paths and bytes of every ``*.py`` under ``root/package``."""
    digest = hashlib.sha256(salt.encode())
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def cell_folder(run_dir: Path, cell: Cell, digest: str) -> Path:
    return run_dir / "cells" / f"{cell.label}-{digest}"


def write_plan(run_dir: Path, cells: list[Cell], config: RunConfig,
               dataset_manifest_hash: str) -> None:
    """Record the folders of every cell of the grid (all shards) in ``plan.json``."""
    names = [cell_folder(run_dir, cell, cell_hash(cell, config, dataset_manifest_hash)).name
             for cell in cells]
    write_json_atomic(run_dir / PLAN_FILE, {"cells": names})


def planned_cell_folders(run_dir: Path) -> list[Path]:
    """The cell folders of the run's current plan, finished or not, in grid order."""
    path = run_dir / PLAN_FILE
    try:
        names = json.loads(path.read_text())["cells"]
    except FileNotFoundError:
        raise BenchError(f"{path}: missing; {run_dir} is not the folder of a `bench run`, or "
                         f"it predates plans: rerun `bench run --out {run_dir}` with the same "
                         f"settings to write one") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise BenchError(f"{path}: unreadable ({error}); rerun `bench run --out {run_dir}` "
                         f"to write it again") from error
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise BenchError(f"{path}: 'cells' must be a list of folder names; rerun "
                         f"`bench run --out {run_dir}` to write it again")
    return [run_dir / "cells" / name for name in names]


def cell_files(run_dir: Path, name: str) -> list[Path]:
    """File ``name`` of each cell in the run's plan that has it, in grid order."""
    return [folder / name for folder in planned_cell_folders(run_dir)
            if (folder / name).is_file()]


def unfinished_cells(run_dir: Path) -> list[str]:
    """Folder names of the planned cells with neither results nor a recorded failure
    (not yet run, interrupted, or another shard's that has not finished)."""
    return [folder.name for folder in planned_cell_folders(run_dir)
            if not (folder / "results.csv").is_file() and not (folder / "failed.json").is_file()]


def result_rows(run_name: str, cell: Cell, steps: int, nfe: int,
                values: list[MetricValue]) -> pd.DataFrame:
    """Long-format rows of one (cell, step budget) as a data frame (not yet written)."""
    rows = [[run_name, cell.method, cell.seed, steps, nfe, v.group, v.name, float(v.value),
             bool(v.higher_is_better), v.unit] for v in values]
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def dcr_rows(run_name: str, cell: Cell, steps: int, privacy: PrivacyReport) -> pd.DataFrame:
    """One row per generated sample and per held-out skull: its DCR ("generated", "held-out")."""
    rows = [[run_name, cell.method, cell.seed, steps, kind, float(distance)]
            for kind, records in (("generated", privacy.generated), ("held-out", privacy.test))
            for distance in records.distance]
    return pd.DataFrame(rows, columns=DCR_COLUMNS)


def save_results(path: Path, frame: pd.DataFrame) -> None:
    """Write a table of a cell atomically (``results.csv``, written last, marks it done)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.10g")


def record_failure(folder: Path, cell: Cell, error: BaseException) -> str:
    """Write ``failed.json`` with the reason; returns the reason."""
    reason = f"{type(error).__name__}: {error}"
    write_json_atomic(folder / "failed.json", {
        "method": cell.method, "seed": cell.seed, "reason": reason,
        "traceback": traceback.format_exception(error)})
    return reason


def save_samples(path: Path, volumes: np.ndarray, nfe: int) -> None:
    """Decoded samples (bit-packed bool volumes) and their NFE, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, packed=np.packbits(volumes.reshape(len(volumes), -1),
                                                           axis=1),
                                shape=np.array(volumes.shape), nfe=np.array(nfe))


def load_samples(path: Path) -> tuple[np.ndarray, int]:
    with np.load(path) as data:
        shape = tuple(int(s) for s in data["shape"])
        flat = np.unpackbits(data["packed"], axis=1, count=int(np.prod(shape[1:])))
        return flat.reshape(shape).astype(bool), int(data["nfe"])


@contextlib.contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Adds the wall-clock seconds of the ``with`` block to ``timings[stage]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def environment(device: str) -> dict[str, object]:
    """Package versions, git commit, device and threads, for environment.json."""
    import platform
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
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


@dataclass
class RunContext:
    """What every cell of one invocation shares."""

    name: str
    folder: Path
    config: RunConfig
    dataset_hash: str
    representation: object
    representation_path: Path
    train_latents: torch.Tensor
    val_latents: torch.Tensor | None
    reference: object
    device: torch.device
    quiet: bool
    real_train: np.ndarray
    real_test: object
    downstream: object


def run_benchmark(config: RunConfig, out_dir: Path, shard: tuple[int, int] | None = None,
                  quiet: bool = False) -> list[CellOutcome]:
    """Run (or resume) every cell of this shard; returns what happened to each, in grid
    order.

    A cell that fails is recorded with its reason and the others go on; an
    unknown method or hyperparameter is refused before any work starts. Cells
    run one at a time, or ``config.jobs`` at once in worker processes (without
    their inner progress bars), each with ``config.threads`` threads.
    """
    from tqdm import tqdm

    from bench.workers import run_in_workers, thread_budget

    check_methods(config)
    with thread_budget(config.threads):
        context = prepare_run(config, out_dir, quiet or config.jobs > 1)
        references = reference_cells(config)
        write_plan(out_dir, references + plan_cells(list(config.methods), config.seeds),
                   config, context.dataset_hash)
        cells = plan_cells(list(config.methods), config.seeds, shard)
        if shard is None or shard[0] == 1:
            cells = references + cells
        progress = tqdm(total=len(cells), desc="cells", disable=quiet, unit="cell")
        if config.jobs == 1:
            finished = _one_at_a_time(context, cells, progress)
        else:
            finished = run_in_workers(functools.partial(run_cell, context), cells, config.jobs)
        outcomes = []
        # closing: an error here (a broken pipe, Ctrl-C) stops the workers at once.
        with contextlib.closing(finished), contextlib.closing(progress):
            for outcome in finished:
                outcomes.append(outcome)
                progress.update()
                if quiet:
                    print(f"{outcome.cell.label}: {outcome.status} {outcome.reason}".rstrip(),
                          flush=True)
    return sorted(outcomes, key=lambda outcome: cells.index(outcome.cell))


def _one_at_a_time(context: RunContext, cells: list[Cell], progress) -> Iterator[CellOutcome]:
    for cell in cells:
        progress.set_postfix_str(cell.label)
        yield run_cell(context, cell)


def reference_cells(config: RunConfig) -> list[Cell]:
    """The downstream references of a run (run by shard 1): the real training split, and
    the gaussian floor unless ``gaussian`` is among the methods; none without downstream."""
    if not config.downstream.enabled:
        return []
    floor = [] if "gaussian" in config.methods else [Cell(GAUSSIAN_FLOOR, 0)]
    return [Cell(REAL_TRAIN, 0)] + floor


def check_methods(config: RunConfig) -> None:
    """Build every method of the run once, so that a misspelt name or hyperparameter is
    a :class:`BenchError` now, not after the cells before it have trained for minutes.

    Every key of ``method_params`` must name a registered method, run or not (a
    preset may set a method's parameters for when it is run).
    """
    from methods.registry import create_method, get_method

    for name in config.method_params:
        get_method(name)
    for name in config.methods:
        create_method(name, **config.method_params.get(name, {}))


def prepare_run(config: RunConfig, out_dir: Path, quiet: bool) -> RunContext:
    """Write config and environment, load the data, fit the shared representation."""
    import yaml

    from bench.data.sources import load_dataset
    from bench.evaluation import build_reference
    from bench.representations import Representation, get_representation

    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "config.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    write_json_atomic(out_dir / "environment.json", environment(config.device))
    data = config.dataset
    dataset = load_dataset(data.name, resolution=data.resolution, n=data.n, seed=data.seed,
                           mandible=data.mandible)
    dataset_hash = dataset.manifest.get("data_sha256", "")
    rep_config = to_dict(config.representation)
    rep_key = hashlib.sha256(json.dumps([rep_config, dataset_hash], sort_keys=True)
                             .encode()).hexdigest()[:10]
    rep_path = out_dir / "shared" / f"representation-{rep_key}.pt"
    if rep_path.is_file():
        representation = Representation.load(rep_path)
    else:
        representation = get_representation(config.representation.name,
                                            **config.representation.params)
        representation.fit(dataset.subset("train").volumes)
        representation.save(rep_path)
    val = dataset.subset("val")
    reference = build_reference(dataset, config.metrics)
    save_samples(out_dir / "shared" / "reference-examples.npz", reference.reference[:4], 0)
    return RunContext(
        name=out_dir.name, folder=out_dir, config=config, dataset_hash=dataset_hash,
        representation=representation, representation_path=rep_path,
        train_latents=representation.encode(dataset.subset("train").volumes),
        val_latents=representation.encode(val.volumes) if len(val) else None,
        reference=reference, device=torch.device(config.device), quiet=quiet,
        real_train=dataset.subset("train").volumes, real_test=dataset.subset("test"),
        downstream=_downstream_config(config))


def _downstream_config(config: RunConfig):
    from downstream.protocol import DownstreamConfig

    settings = config.downstream
    downstream = DownstreamConfig(tasks=settings.tasks, params=settings.params,
                                  n_test=settings.n_test, device=config.device)
    downstream.check()
    return downstream


def run_cell(context: RunContext, cell: Cell) -> CellOutcome:
    """Fit, sample at every step budget, decode, evaluate, write rows; or reuse them."""
    from tqdm import tqdm

    from bench.evaluation import evaluate_in_full
    from methods.base import FitConfig, Method
    from methods.registry import create_method

    config = context.config
    folder = cell_folder(context.folder, cell, cell_hash(cell, config, context.dataset_hash))
    if (folder / "results.csv").is_file():
        return CellOutcome(cell, "cached")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "failed.json").unlink(missing_ok=True)
    write_json_atomic(folder / CELL_FILE, {
        "method": cell.method, "seed": cell.seed,
        "representation": context.representation_path.relative_to(context.folder).as_posix()})
    timings: dict[str, float] = {}
    if cell.method in (REAL_TRAIN, GAUSSIAN_FLOOR):
        return _reference_cell(context, cell, folder, timings)
    try:
        method_path = folder / "method.pt"
        if method_path.is_file():
            method = Method.load(method_path)
        else:
            method = create_method(cell.method, **config.method_params.get(cell.method, {}))
            train_config = dataclasses.replace(config.train, progress=not context.quiet)
            fit_config = FitConfig(backbone=config.backbone, train=train_config,
                                   checkpoint_dir=folder / "checkpoints")
            with timed(timings, "fit"):
                report = method.fit(context.train_latents, context.val_latents, fit_config,
                                    cell.seed, context.device)
            write_json_atomic(folder / "fit.json", {**dataclasses.asdict(report),
                                                    "final_loss": report.final_loss})
            method.save(method_path)
        frames, dcr_frames = [], []
        budgets = tqdm(config.sampling.steps, desc=f"{cell.label} sample+evaluate",
                       unit="budget", leave=False, disable=context.quiet)
        for steps in budgets:
            volumes, nfe = _samples(context, method, cell, steps, folder, timings)
            with timed(timings, "evaluate"):
                evaluation = evaluate_in_full(context.reference, volumes, seed=cell.seed)
            frames.append(result_rows(context.name, cell, steps, nfe, evaluation.values))
            dcr_frames.append(dcr_rows(context.name, cell, steps, evaluation.privacy))
        if config.downstream.enabled:
            steps = config.downstream.steps or max(config.sampling.steps)
            volumes, nfe = _samples(context, method, cell, steps, folder, timings)
            with timed(timings, "downstream"):
                frames.append(_downstream_frame(context, cell, steps, nfe, volumes))
        save_results(folder / DCR_FILE, pd.concat(dcr_frames, ignore_index=True))
        save_results(folder / "results.csv", pd.concat(frames, ignore_index=True))
    except (BenchError, RuntimeError, ValueError, FloatingPointError) as error:
        return CellOutcome(cell, "failed", record_failure(folder, cell, error), timings)
    finally:
        write_json_atomic(folder / "timings.json", timings)
    return CellOutcome(cell, "done", timings=timings)


def _downstream_frame(context: RunContext, cell: Cell, steps: int, nfe: int,
                      volumes: np.ndarray) -> pd.DataFrame:
    """Downstream rows of one cell: tasks trained on its samples, and on real + samples."""
    from downstream.protocol import cell_rows

    rows = cell_rows(volumes, context.real_train, context.real_test, cell.seed,
                     context.downstream)
    values = [dataclasses.replace(value, name=f"{training}:{value.name}")
              for training, value in rows]
    return result_rows(context.name, cell, steps, nfe, values)


def _reference_cell(context: RunContext, cell: Cell, folder: Path,
                    timings: dict[str, float]) -> CellOutcome:
    """Downstream rows of a reference: the real training split, or the gaussian floor.

    Its rows are named like a method's ``synthetic:*`` rows, so that the
    reference sits in the same leaderboard columns as the methods it frames.
    """
    from downstream.protocol import gaussian_rows, real_rows
    from methods.base import FitConfig
    from methods.registry import create_method

    config = context.config
    steps = config.downstream.steps or max(config.sampling.steps)
    try:
        with timed(timings, "downstream"):
            if cell.method == REAL_TRAIN:
                rows = real_rows(context.real_train, context.real_test, cell.seed,
                                 context.downstream)
            else:
                gaussian = create_method("gaussian")
                gaussian.fit(context.train_latents, context.val_latents,
                             FitConfig(backbone=config.backbone, train=config.train), cell.seed,
                             context.device)
                samples = gaussian.sample(config.sampling.n_samples, steps, cell.seed,
                                          context.device).samples
                rows = gaussian_rows(context.representation.decode(samples.cpu()),
                                     context.real_test, cell.seed, context.downstream)
        values = [dataclasses.replace(value, name=f"synthetic:{value.name}")
                  for _, value in rows]
        save_results(folder / "results.csv", result_rows(context.name, cell, steps, 0, values))
    except (BenchError, RuntimeError, ValueError) as error:
        return CellOutcome(cell, "failed", record_failure(folder, cell, error), timings)
    finally:
        write_json_atomic(folder / "timings.json", timings)
    return CellOutcome(cell, "done", timings=timings)


def _samples(context: RunContext, method, cell: Cell, steps: int, folder: Path,
             timings: dict[str, float]) -> tuple[np.ndarray, int]:
    """Decoded samples of one step budget, from the cell's cache or freshly drawn."""
    path = folder / f"samples-steps{steps}.npz"
    if path.is_file():
        return load_samples(path)
    with timed(timings, "sample"):
        samples, nfe = method.sample(context.config.sampling.n_samples, steps, cell.seed,
                                     context.device)
        if not torch.isfinite(samples).all():
            raise BenchError(f"method {cell.method!r}, seed {cell.seed}: samples at {steps} "
                             f"steps contain NaN or infinite values")
        volumes = context.representation.decode(samples.cpu())
    save_samples(path, volumes, nfe)
    return volumes, nfe
