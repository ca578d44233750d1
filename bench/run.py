"""`bench run`: the grid of cells (method x seed), each cached, resumable and shardable.

Every value of the configuration is checked before the first cell starts
(:func:`check_run`). The run then writes its configuration, fits (or reuses)
the shared representation, builds the reference side once, and runs every
cell of the grid: one at a time, or ``config.jobs`` at once in forked worker
processes (:mod:`bench.workers`). Two kinds of cell go through one path
(:func:`run_cell`): a *method cell* fits a registered method, samples at
every step budget, decodes and scores the samples with every selected metric
and trains the downstream tasks on them; a *reference cell* (``oracle``,
``oracle-rep``, the ``gaussian`` floor, any method marked ``reference``)
does the same at the largest step budget only (a reference's samples do not
depend on it), with the tasks trained on its samples alone. With
``train.evaluate_at``, a method cell then scores its training curve: the EMA
snapshots of the earlier budgets, one file per point, so that a finished cell
given a new budget scores only that (:func:`_score_curve`). A cell
that fails with a :class:`~bench.core.errors.BenchError` (a numerical
failure, samples that cannot be scored) is recorded with its reason in
``failed.json`` and the others go on; any other exception is a bug and stops
the run with its traceback. The folder layout is :mod:`bench.store`'s.

Cells are independent: ``--shard i/n`` runs cells i, i+n, i+2n, ... of the
sorted grid, and shards on separate machines can share one run folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generator, Iterator

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from bench.config import RunConfig, training_curve
from bench.core.claims import ClaimState, holding, new_holder
from bench.core.distributed import current_group, main_rank_value
from bench.core.errors import BenchError, NonFiniteError
from bench.core.values import ValueSpec
from bench.core.volumes import load_volumes, save_volumes
from bench.data.dataset import SkullDataset
from bench.data.oracle import oracle_subjects
from bench.data.sources import load_dataset
from bench.evaluation import Evaluation, build_reference, evaluate, selected_metrics
from bench.core.io import atomic_path
from bench.representations import Representation, get_representation
from bench.representations.cache import cached_representation
from bench.store import (DCR_COLUMNS, Cell, CellFolder, RunFolder, environment, result_rows,
                         write_table)
from bench.workers import run_in_workers, thread_budget
from downstream.base import get_task
from downstream.protocol import (AUGMENTED, FEW_REAL, SYNTHETIC, DownstreamConfig, Scored,
                                 baseline_rows, few_real_rows, sample_rows)
from methods.base import METHODS, FitConfig, Method
from methods.registry import create_method, get_method
from metrics.base import Metric
from metrics.diversity import MSSSIMDiversity, ms_ssim_diversity
from metrics.features import frechet_distance
from metrics.inputs import ReferenceSet
from metrics.privacy import closest_records

DOWNSTREAM_TRAINING_SETS = (SYNTHETIC, AUGMENTED)
# The values scored at every training budget of train.evaluate_at.
CURVE_TAGS = frozenset({"headline", "training"})
BASELINES = "baselines"
# The reference set of the smallest committed audit (leaderboards/audit/ci: the 23 skulls of
# the test split of the ci preset's 240); below it the audit's detection thresholds are not
# known.
AUDITED_REFERENCE_SIZE = 23
# What the reports show of the representation's fit.
REPRESENTATION_FIT_FACTS = ("wall_time_s", "steps", "first_loss", "final_loss",
                            "parameter_count")


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


def reference_names(config: RunConfig) -> list[str]:
    """The run's references: ``config.references``, then the methods marked reference."""
    named = list(config.references) + [name for name in config.methods
                                       if get_method(name).reference]
    return list(dict.fromkeys(named))


def grid(config: RunConfig, shard: tuple[int, int] | None = None) -> list[Cell]:
    """Every cell of the run, references first, then the methods, then (with downstream)
    the few-real cells of every seed and the one cell of the tasks' baselines; or shard i
    of n of them."""
    references = reference_names(config)
    learners = [name for name in config.methods if name not in references]
    cells = plan_cells(references + learners, config.seeds)
    if config.downstream.enabled:
        cells += [Cell(FEW_REAL, seed) for seed in range(config.seeds)] + [Cell(BASELINES, 0)]
    if shard is None:
        return cells
    index, count = shard
    return cells[index - 1::count]


def unranked_names(config: RunConfig) -> list[str]:
    """Every pseudo-method of the run that is shown but never ranked: the references,
    the few-real rows and the tasks' baselines."""
    names = reference_names(config)
    if config.downstream.enabled:
        names.append(FEW_REAL)
        for task in config.downstream.tasks:
            names += list(get_task(task).baseline_names)
    return names


@contextlib.contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Adds the wall-clock seconds of the ``with`` block to ``timings[stage]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def check_run(config: RunConfig) -> list[Metric]:
    """Build every part of the run once, so that a misspelt name or hyperparameter is a
    :class:`BenchError` now, not after the cells before it have trained for minutes.

    Checks the methods and their parameters (every key of ``method_params``
    must name a registered method, run or not: a preset may set a method's
    parameters for when it is run), the representation, the metrics and the
    downstream tasks. Returns the selected metrics.
    """
    for name in config.method_params:
        get_method(name)
    for name in config.references:
        if not get_method(name).reference:
            raise BenchError(f"config references: {name!r} is not a reference generator; "
                             f"references are {', '.join(sorted(_references()))}, and "
                             f"methods go into --methods")
    for name in list(config.references) + list(config.methods):
        create_method(name, **config.method_params.get(name, {}))
    get_representation(config.representation.name, **config.representation.params)
    chosen = selected_metrics(config.metrics)
    for metric in chosen:
        if config.sampling.n_samples < metric.minimum_set_size():
            raise BenchError(f"config sampling.n_samples={config.sampling.n_samples}: metric "
                             f"{metric.name!r} needs sets of at least "
                             f"{metric.minimum_set_size()} skulls; raise sampling.n_samples, "
                             f"or leave the metric out with metrics.exclude")
    if config.downstream.enabled:
        _downstream_config(config).check()
    beyond = [step for step in config.train.evaluate_at if step >= config.train.steps]
    if beyond:
        print(f"bench: note: train.evaluate_at {beyond} are at or beyond train.steps "
              f"({config.train.steps}), so the final weights stand for them", file=sys.stderr)
    return chosen


def _references() -> list[str]:
    return [name for name in METHODS.names() if METHODS.get(name).reference]


def _downstream_config(config: RunConfig) -> DownstreamConfig:
    settings = config.downstream
    return DownstreamConfig(tasks=settings.tasks, params=settings.params,
                            n_test=settings.n_test, few_real=settings.few_real,
                            device=config.device)


@dataclass
class RunContext:
    """What every cell of one invocation shares."""

    config: RunConfig
    run: RunFolder
    dataset: SkullDataset
    dataset_hash: str
    representation: Representation
    representation_path: Path
    train_latents: torch.Tensor
    val_latents: torch.Tensor | None
    reference: ReferenceSet
    metrics: list[Metric]
    truth: RunTruth
    references: list[str]
    device: torch.device
    quiet: bool
    job_id: str | None = None  # the submitit job running the cells (None: this process)

    def folder(self, cell: Cell) -> CellFolder:
        return self.run.cell(cell, self.config, self.dataset_hash)

    @property
    def downstream(self) -> DownstreamConfig:
        return _downstream_config(self.config)


def run_benchmark(config: RunConfig, out_dir: Path, shard: tuple[int, int] | None = None,
                  quiet: bool = False) -> list[CellOutcome]:
    """Run (or resume) every cell of this shard; returns what happened to each, in grid
    order.

    Cells run one at a time, or ``config.jobs`` at once in worker processes
    (without their inner progress bars), each with ``config.threads`` threads.
    """
    chosen = check_run(config)
    with thread_budget(config.threads):
        context = prepare_run(config, RunFolder(out_dir), chosen, quiet or config.jobs > 1)
        context.run.write_plan([context.folder(cell) for cell in grid(config)],
                               unranked_names(config), training_curve(config))
        cells = grid(config, shard)
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


def _one_at_a_time(context: RunContext, cells: list[Cell], progress: tqdm
                   ) -> Generator[CellOutcome, None, None]:
    for cell in cells:
        progress.set_postfix_str(cell.label)
        yield run_cell(context, cell)


def prepare_run(config: RunConfig, run: RunFolder, chosen: list[Metric],
                quiet: bool) -> RunContext:
    """Write config and environment, load the data, fit the shared representation, build
    the reference side, and write the catalogue and the reference facts."""
    run.write_config(config, environment(config.device))
    data = config.dataset
    dataset = load_dataset(data.name, resolution=data.resolution, n=data.n, seed=data.seed,
                           mandible=data.mandible)
    dataset_hash = dataset.manifest.get("data_sha256", "")
    representation, representation_path, fit = fitted_representation(config, run, dataset,
                                                                     quiet)
    train, val = dataset.subset("train"), dataset.subset("val")
    reference = build_reference(dataset, config.metrics, config.threads, progress=not quiet)
    run.write_catalogue(catalogue(chosen, reference, config))
    run.write_reference_facts(reference_facts(dataset, representation, reference, chosen,
                                              config.sampling.n_samples, fit))
    save_volumes(run.reference_examples, reference.volumes[:4], 0)
    references = reference_names(config)
    truth = RunTruth(dataset, representation)
    if {"oracle", "oracle-rep"} & set(references):
        for seed in range(config.seeds):  # generated once per configuration, on every core
            oracle_subjects(dataset, config.sampling.n_samples, seed, workers=os.cpu_count() or 1)
    return RunContext(
        config=config, run=run, dataset=dataset, dataset_hash=dataset_hash,
        representation=representation, representation_path=representation_path,
        train_latents=representation.encode(train.volumes),
        val_latents=representation.encode(val.volumes) if len(val) else None,
        reference=reference, metrics=chosen, truth=truth, references=references,
        device=torch.device(config.device), quiet=quiet)


@dataclass
class RunTruth:
    """The run's ground truth for the reference generators (:class:`methods.base.GroundTruth`):
    oracle subjects of its dataset, and its representation."""

    dataset: SkullDataset
    representation: Representation

    def subjects(self, n: int, seed: int) -> np.ndarray:
        return oracle_subjects(self.dataset, n, seed)

    def encode(self, volumes: np.ndarray) -> torch.Tensor:
        return self.representation.encode(volumes)


def fitted_representation(config: RunConfig, run: RunFolder, dataset: SkullDataset,
                          quiet: bool = True) -> tuple[Representation, Path, dict[str, Any]]:
    """The run's representation, fitted on the training split once per dataset,
    configuration and code in the cache beside the datasets
    (:mod:`bench.representations.cache`), copied into the run's shared/ so that the run
    folder decodes its samples on its own; with its fit report."""
    cached = cached_representation(config.representation.name, config.representation.params,
                                   dataset, progress=not quiet, device=config.device)
    path = run.representation_path(cached.key)
    if not path.is_file():
        with atomic_path(path) as tmp:
            shutil.copyfile(cached.path, tmp)
    return cached.representation.to(config.device), path, cached.report


def catalogue(chosen: list[Metric], reference: ReferenceSet, config: RunConfig
              ) -> list[dict[str, object]]:
    """Group, name, direction, unit, tags and source of every scalar the run reports."""
    entries = [_entry(metric.group, spec, metric.name) for metric in chosen
               if metric.applies_to(reference) for spec in metric.outputs]
    if config.downstream.enabled:
        for task in config.downstream.tasks:
            for spec in get_task(task).metrics:
                for training in DOWNSTREAM_TRAINING_SETS:
                    # Only the rows trained on samples alone make the headline.
                    tags = spec.tags if training == "synthetic" else frozenset()
                    entries.append(_entry("downstream", dataclasses.replace(
                        spec, name=f"{training}:{spec.name}", tags=tags), f"task {task}"))
    return entries


def _entry(group: str, spec: ValueSpec, source: str) -> dict[str, object]:
    return {"group": group, "name": spec.name, "higher_is_better": spec.higher_is_better,
            "unit": spec.unit, "tags": sorted(spec.tags), "source": source}


def reference_facts(dataset: SkullDataset, representation: Representation,
                    reference: ReferenceSet, chosen: list[Metric], n_samples: int,
                    fit: dict[str, Any]) -> dict[str, object]:
    """What the report says about the real side: sizes, the representation's test-split
    reconstruction Dice (the floor every method inherits) and its fit, and the real
    skulls' own diversity and DCRs (the levels a method should match)."""
    facts: dict[str, object] = {
        "dataset": dataset.name, "n_train": len(reference.train_volumes),
        "n_reference": len(reference.volumes), "voxel_size_mm": reference.voxel_size_mm,
        "representation": representation.name,
        "reconstruction_dice_mean": fit["reconstruction_dice_mean"],
        "reconstruction_dice_min": fit["reconstruction_dice_min"],
        "representation_fit": {key: fit[key] for key in REPRESENTATION_FIT_FACTS if key in fit},
        "reference_dcr_median": float(np.median(
            closest_records(1.0 - reference.train_dice).distance))}
    for metric in chosen:
        if isinstance(metric, MSSSIMDiversity):
            facts["reference_ms_ssim_diversity"] = ms_ssim_diversity(
                reference.volumes, metric.params.pairs, seed=0)
    validation = dataset.subset("val")
    if "ae" in reference.feature_names and len(validation) >= 2:
        # The FD of real skulls to real skulls: FD-ae's bias at this sample size.
        facts["fd_ae_real"] = frechet_distance(
            reference.features("ae"), reference.feature_maps["ae"](validation.volumes))
        facts["fd_ae_real_sizes"] = [len(reference.volumes), len(validation)]
    facts["set_size"] = min(len(reference.volumes), n_samples)
    facts["set_sizes_differ"] = len(reference.volumes) != n_samples
    if len(reference.volumes) < AUDITED_REFERENCE_SIZE:
        facts["warning"] = (f"the reference set has {len(reference.volumes)} skulls, fewer "
                            f"than the {AUDITED_REFERENCE_SIZE} of the smallest audit "
                            f"(leaderboards/audit/ci): the audit's detection thresholds do "
                            f"not hold at this size, and differences between methods must be "
                            f"larger to mean anything")
        print(f"bench: warning: {facts['warning']}", file=sys.stderr)
    return facts


def run_cell(context: RunContext, cell: Cell) -> CellOutcome:
    """Produce one cell's rows and the points of its training curve, or reuse them; a
    BenchError records a failed cell.

    The cell is claimed first (:mod:`bench.core.claims`), so that two invocations,
    array jobs or requeues into one run folder never work on it at once: while
    another worker's live claim holds it, the outcome is ``claimed``. A cell trained
    by several processes (torch.distributed) is claimed by rank 0 for all of them;
    the other ranks only join its training.
    """
    folder = context.folder(cell)
    if folder.done and not _pending_curve(context, cell, folder):
        return CellOutcome(cell, "cached")
    group = current_group()
    with _claimed(context, folder, group.is_main) as other:
        other = main_rank_value(other, group)
        if other is not None:
            holder = other.holder
            return CellOutcome(cell, "claimed", f"by job {holder.job_id} on {holder.host} "
                                                f"(pid {holder.pid})")
        if not group.is_main:
            join_training(context, cell, folder)
            return CellOutcome(cell, "done")
        return _run_claimed(context, cell, folder)


@contextlib.contextmanager
def _claimed(context: RunContext, folder: CellFolder, claim: bool
             ) -> Iterator[ClaimState | None]:
    """Hold the cell's claim for the block (``claim`` False: a rank that follows rank 0)."""
    if not claim:
        yield None
        return
    folder.path.mkdir(parents=True, exist_ok=True)
    holder = new_holder(context.job_id or f"local-{os.getpid()}")
    with holding(folder.claim_path, holder, context.config.launcher.claim_timeout_s) as other:
        yield other


def _run_claimed(context: RunContext, cell: Cell, folder: CellFolder) -> CellOutcome:
    """The cell's work once claimed; what another worker finished meanwhile is kept."""
    curve = _pending_curve(context, cell, folder)
    if folder.done and not curve:
        return CellOutcome(cell, "cached")
    folder.start(cell, context.representation_path.relative_to(context.run.path).as_posix())
    timings: dict[str, float] = {}
    produce = {FEW_REAL: _few_real_cell, BASELINES: _baselines_cell}.get(cell.method, _cell_rows)
    try:
        if not folder.done:
            folder.write_results(produce(context, cell, folder, timings))
        if curve:
            _score_curve(context, cell, folder, curve, timings)
    except BenchError as error:
        return CellOutcome(cell, "failed", folder.record_failure(cell, error), timings)
    finally:
        folder.write_timings(timings)
    return CellOutcome(cell, "done", timings=timings)


def join_training(context: RunContext, cell: Cell, folder: CellFolder) -> None:
    """A rank other than 0's share of a cell trained by several processes: the same
    ``fit`` call, whose collectives pair with rank 0's; it writes nothing (rank 0
    writes the checkpoints, the fit report and the method). Cells that do not train
    step by step, and methods already fitted, need no share."""
    if (folder.done or folder.method_path.is_file() or cell.method in context.references
            or cell.method not in METHODS.names() or not get_method(cell.method).trains):
        return
    method = create_method(cell.method, **context.config.method_params.get(cell.method, {}))
    method.fit(context.train_latents, context.val_latents, _fit_config(context, folder),
               cell.seed, context.device)


def _pending_curve(context: RunContext, cell: Cell, folder: CellFolder
                   ) -> list[tuple[int, int]]:
    """The points of the training curve this cell has yet to score: none for a reference,
    a pseudo-cell or a method that does not train step by step."""
    if (cell.method in context.references or cell.method not in METHODS.names()
            or not get_method(cell.method).trains):
        return []
    return [(train, steps) for train, steps in training_curve(context.config)
            if not folder.curve_path(train, steps).is_file()]


def _score_curve(context: RunContext, cell: Cell, folder: CellFolder,
                 curve: list[tuple[int, int]], timings: dict[str, float]) -> None:
    """Sample the EMA snapshots of the training budgets in ``curve`` and score them with the
    values tagged ``headline`` or ``training``, one file per point; the training time up
    to each budget goes to the timings (``train-to-stepB``), the curve's own sampling and
    scoring to ``curve-sample`` and ``curve-evaluate``."""
    method = Method.load(folder.method_path)
    specs = [spec for metric in context.metrics for spec in metric.outputs
             if spec.tags & CURVE_TAGS]
    metrics = [metric for metric in context.metrics
               if any(spec in specs for spec in metric.outputs)]
    spent: dict[str, float] = {}
    # The final budget adds only its training time: its rows are the cell's results.
    for train in sorted({train for train, _ in curve} | {context.config.train.steps}):
        earlier, seconds = method.at_training_step(train, folder.checkpoint_dir)
        timings[f"train-to-step{train}"] = seconds
        for steps in [steps for point, steps in curve if point == train]:
            volumes, nfe = _samples(context, earlier, cell, steps, folder, spent, train)
            with timed(spent, "evaluate"):
                evaluation = evaluate(context.reference, volumes, cell.seed, metrics)
            values = [value for value in evaluation.values
                      if any(spec.matches(value.name) for spec in specs)]
            write_table(folder.curve_path(train, steps),
                        result_rows(context.run.name, cell, steps, nfe, train, values))
    timings.update({f"curve-{stage}": seconds for stage, seconds in spent.items()})


def _cell_rows(context: RunContext, cell: Cell, folder: CellFolder,
               timings: dict[str, float]) -> pd.DataFrame:
    """Fit (or load), sample at every step budget (a reference: the largest), score, and
    train the downstream tasks on the samples."""
    config = context.config
    reference = cell.method in context.references
    method = _fitted_method(context, cell, folder, timings)
    budgets = [max(config.sampling.steps)] if reference else list(config.sampling.steps)
    frames, dcr_frames = [], []
    for steps in tqdm(budgets, desc=f"{cell.label} sample+evaluate", unit="budget", leave=False,
                      disable=context.quiet):
        volumes, nfe = _samples(context, method, cell, steps, folder, timings)
        with timed(timings, "evaluate"):
            evaluation = evaluate(context.reference, volumes, cell.seed, context.metrics)
        frames.append(result_rows(context.run.name, cell, steps, nfe, config.train.steps,
                                  evaluation.values))
        dcr_frames.append(dcr_rows(context, cell, steps, evaluation))
    if config.downstream.enabled:
        steps = max(budgets) if reference else config.downstream.steps or max(budgets)
        volumes, nfe = _samples(context, method, cell, steps, folder, timings)
        frames.append(_downstream_frame(context, cell, steps, nfe, volumes, reference, folder,
                                        timings))
    folder.write_dcr(pd.concat(dcr_frames, ignore_index=True))
    return pd.concat(frames, ignore_index=True)


def _downstream_frame(context: RunContext, cell: Cell, steps: int, nfe: int,
                      volumes: np.ndarray, reference: bool, folder: CellFolder,
                      timings: dict[str, float]) -> pd.DataFrame:
    """The tasks trained on the samples (``synthetic:*``) and, for a method, on a few real
    training skulls plus the samples (``augmented:*``)."""
    train, test = context.dataset.subset("train").volumes, context.dataset.subset("test")
    with timed(timings, "downstream"):
        scored = sample_rows(volumes, train, test, cell.seed, context.downstream,
                             augmented=not reference)
    return _scored_frame(context, cell, steps, nfe, scored, folder)


def _scored_frame(context: RunContext, cell: Cell, steps: int, nfe: int, scored: Scored,
                  folder: CellFolder) -> pd.DataFrame:
    """Result rows of downstream values, named ``<training set>:<metric>``; the per-case
    scores go to the cell's cases file."""
    values = [dataclasses.replace(value, name=f"{training}:{value.name}")
              for training, value in scored.rows]
    folder.write_cases(scored.cases.assign(run=context.run.name, method=cell.method,
                                           seed=cell.seed, steps=steps))
    return result_rows(context.run.name, cell, steps, nfe, context.config.train.steps, values)


def _few_real_cell(context: RunContext, cell: Cell, folder: CellFolder,
                   timings: dict[str, float]) -> pd.DataFrame:
    """The tasks trained on the few real skulls of this seed alone."""
    steps = max(context.config.sampling.steps)
    with timed(timings, "downstream"):
        scored = few_real_rows(context.dataset.subset("train").volumes,
                               context.dataset.subset("test"), cell.seed, context.downstream)
    return _scored_frame(context, cell, steps, 0, scored, folder)


def _baselines_cell(context: RunContext, cell: Cell, folder: CellFolder,
                    timings: dict[str, float]) -> pd.DataFrame:
    """Every task's baselines (identity pose, ICP), each under its own method name."""
    steps = max(context.config.sampling.steps)
    with timed(timings, "downstream"):
        found = baseline_rows(context.dataset.subset("train").volumes,
                              context.dataset.subset("test"), context.downstream)
    train_steps = context.config.train.steps
    frames = [result_rows(context.run.name, Cell(name, cell.seed), steps, 0, train_steps,
                          [dataclasses.replace(value, name=f"{training}:{value.name}")
                           for training, value in rows])
              for name, rows in found.items()]
    return pd.concat(frames, ignore_index=True) if frames else result_rows(
        context.run.name, cell, steps, 0, train_steps, [])


def _fitted_method(context: RunContext, cell: Cell, folder: CellFolder,
                   timings: dict[str, float]) -> Method:
    """The cell's method: loaded from ``method.pt``, or fitted and saved there (unless it
    samples the run's ground truth, as the oracles do: they are refitted, at no cost)."""
    if folder.method_path.is_file():
        return Method.load(folder.method_path)
    method = create_method(cell.method, **context.config.method_params.get(cell.method, {}))
    with timed(timings, "fit"):
        report = method.fit(context.train_latents, context.val_latents,
                            _fit_config(context, folder), cell.seed, context.device)
    folder.write_fit({**dataclasses.asdict(report), "final_loss": report.final_loss})
    if method.saveable:
        method.save(folder.method_path)
    return method


def _fit_config(context: RunContext, folder: CellFolder) -> FitConfig:
    """The fit settings of a cell of the run, checkpointed in its folder."""
    config = context.config
    train_config = dataclasses.replace(config.train, progress=not context.quiet)
    return FitConfig(backbone=config.backbone, train=train_config,
                     checkpoint_dir=folder.checkpoint_dir, truth=context.truth)


def _samples(context: RunContext, method: Method, cell: Cell, steps: int, folder: CellFolder,
             timings: dict[str, float], train_steps: int | None = None
             ) -> tuple[np.ndarray, int]:
    """Decoded samples of one step budget (of the EMA snapshot of ``train_steps``, if
    given), from the cell's folder or freshly drawn."""
    path = folder.samples_path(steps, train_steps)
    if path.is_file():
        return load_volumes(path)
    with timed(timings, "sample"):
        samples, nfe = method.sample(context.config.sampling.n_samples, steps, cell.seed,
                                     context.device)
        if method.space == "volumes":
            volumes = samples.cpu().numpy().astype(bool)
        elif not torch.isfinite(samples).all():
            raise NonFiniteError(f"method {cell.method!r}, seed {cell.seed}: samples at "
                                 f"{steps} steps contain NaN or infinite values")
        else:
            volumes = context.representation.decode(samples.cpu())
    save_volumes(path, volumes, nfe)
    return volumes, nfe


def dcr_rows(context: RunContext, cell: Cell, steps: int, evaluation: Evaluation
             ) -> pd.DataFrame:
    """One row per generated sample and per held-out skull: its DCR (1 - Dice to the
    nearest training skull) and that skull's id."""
    ids = context.dataset.subset("train").subject_ids
    rows = []
    for kind, records in (("generated", evaluation.closest_training_records()),
                          ("held-out", closest_records(1.0 - context.reference.train_dice))):
        for sample, (index, distance) in enumerate(zip(records.index, records.distance)):
            rows.append([context.run.name, cell.method, cell.seed, steps, kind, sample,
                         float(distance), ids[index] if index >= 0 else ""])
    return pd.DataFrame(rows, columns=DCR_COLUMNS)
