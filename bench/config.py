"""Run configuration: YAML (safe loading) into typed, validated dataclasses.

A run is configured by a preset shipped with the package (``ci``, ``quick``,
``paper64``) or a YAML file, then by ``--set key.path=value`` overrides. An
unknown key or a value of the wrong type is a :class:`BenchError` naming the
key path and the nearest valid name. The resolved configuration is written
beside the results, so every number can be traced to what produced it.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bench.core.errors import BenchError
from bench.data.dataset import SPLITS
from bench.core.training import TrainConfig
from methods.backbones import BackboneConfig

PRESETS = ("ci", "quick", "downstream", "latent", "paper64", "paper-latent")
DEFAULT_PRESET = "quick"
EVALUATION_AUTOENCODER = {"seed": 1000, "steps": 1000}
"""How the evaluation autoencoder differs from an ``ae`` representation's defaults: a seed
of its own, and a shorter fit (its encoder gives features; no method decodes from it)."""


@dataclass(frozen=True)
class DatasetConfig:
    """Which skulls: ``synthskull`` (generated) or the name of an imported dataset."""

    name: str = "synthskull"
    resolution: int = 64
    n: int = 1000
    seed: int = 0
    mandible: bool = True

    def __post_init__(self) -> None:
        _at_least("dataset.n", self.n, 2)
        _at_least("dataset.seed", self.seed, 0)


@dataclass(frozen=True)
class RepresentationConfig:
    """The representation every method shares, by registered name, with its parameters."""

    name: str = "pca"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SamplingConfig:
    """How many samples each cell draws, and at which step budgets.

    ``training_curve_steps`` are the sampling budgets scored at every training
    budget of ``train.evaluate_at`` (default: the largest of ``steps``).
    """

    n_samples: int = 100
    steps: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100)
    training_curve_steps: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _at_least("sampling.n_samples", self.n_samples, 2)
        outside = sorted(set(self.training_curve_steps) - set(self.steps))
        if outside:
            raise BenchError(f"config sampling.training_curve_steps: {outside} are not among "
                             f"sampling.steps {list(self.steps)}; the training curve is "
                             f"scored at budgets the tables show, so pick among those")
        if not self.steps:
            raise BenchError("config sampling.steps: give at least one step budget, e.g. [10]")
        for steps in self.steps:
            _at_least("sampling.steps", steps, 1)
        if len(set(self.steps)) != len(self.steps):
            raise BenchError(f"config sampling.steps: {list(self.steps)} repeats a budget; give "
                             f"each once")


@dataclass(frozen=True)
class MetricsConfig:
    """Evaluation settings.

    Attributes:
        points: surface points per shape P of the point-set metrics.
        reference_split: the split generated sets are compared with.
        feature_components: pca components of the "pca" feature map (at most the
            training split's size minus one are used).
        exclude: registered metrics not to compute (``bench list`` names them),
            e.g. ``[pointflow-emd]``, whose exact EMD costs about 40 ms a pair.
        params: metric name -> hyperparameter overrides, e.g.
            ``{ms-ssim-diversity: {pairs: 12}}``.
        encoder: the learned 3D encoder of the ``"ae"`` feature map (FD-ae, PRDC-*-ae):
            "" for none (those metrics are then not scored), "ae" for the evaluation
            autoencoder (an ``ae`` representation fitted on the training split with
            ``encoder_params`` over :data:`EVALUATION_AUTOENCODER`, cached like any
            representation), or the path of a pretrained encoder saved with
            ``torch.jit.save`` (e.g. MedicalNet), which maps occupancy (B, 1, R, R, R)
            in {0, 1} to features (B, F) or feature maps (B, F, ...) that are pooled.
        encoder_params: hyperparameters of the evaluation autoencoder.
    """

    points: int = 2048
    reference_split: str = "test"
    feature_components: int = 32
    exclude: tuple[str, ...] = ()
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    encoder: str = ""
    encoder_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _at_least("metrics.points", self.points, 1)
        _at_least("metrics.feature_components", self.feature_components, 1)
        if self.encoder not in ("", "ae") and not Path(self.encoder).is_file():
            raise BenchError(f"config metrics.encoder: {self.encoder!r} is neither '' (off), "
                             f"'ae' (the evaluation autoencoder) nor an encoder file; give the "
                             f"path of a file saved with torch.jit.save")
        if self.reference_split not in SPLITS:
            raise BenchError(f"config metrics.reference_split: {self.reference_split!r} is not "
                             f"a split; choose one of {', '.join(SPLITS)}")


@dataclass(frozen=True)
class DownstreamSettings:
    """The downstream stage: tasks trained on each cell's samples, tested on real skulls.

    ``steps`` is the sampling budget whose samples train the tasks (None: the
    largest); ``n_test`` the number of held-out skulls scored (None: every test
    skull, as the clinical protocol asks; fewer only to make a small run
    cheaper); ``few_real`` the real training skulls of the augmented rows (a
    data-poor clinic's).
    """

    enabled: bool = True
    tasks: tuple[str, ...] = ("alignment", "implant")
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_test: int | None = None
    few_real: int = 20
    steps: int | None = None

    def __post_init__(self) -> None:
        if self.n_test is not None:
            _at_least("downstream.n_test", self.n_test, 1)
        _at_least("downstream.few_real", self.few_real, 1)
        if self.steps is not None:
            _at_least("downstream.steps", self.steps, 1)


LAUNCHERS = ("local", "submitit-local", "slurm")


@dataclass(frozen=True)
class LauncherConfig:
    """Where the cells run (``bench run --launcher``; see :mod:`bench.launch`).

    ``local`` runs them in this process (or ``jobs`` forked ones); ``slurm``
    submits one SLURM job per pending cell through submitit, as one job array;
    ``submitit-local`` makes the same submission to submitit's local executor
    (processes on this machine). The SLURM options: ``gpus_per_cell`` (more than
    one trains the cell under torch.distributed, one process per GPU, over
    ``nodes_per_cell`` nodes), ``cpus_per_cell`` (default: ``threads``),
    ``mem_gb``, ``time`` (a job's limit, ``[D-]HH:MM:SS`` or minutes; a cell that
    reaches it is requeued and resumes from its checkpoint), ``array_parallelism``
    (jobs of the array at once), ``partition`` and ``account``.
    ``claim_timeout_s`` is the silence after which a cell's claim by a worker
    that stopped refreshing it is taken over.
    """

    name: str = "local"
    partition: str | None = None
    account: str | None = None
    gpus_per_cell: int = 0
    nodes_per_cell: int = 1
    cpus_per_cell: int | None = None
    mem_gb: int | None = None
    time: str = "24:00:00"
    array_parallelism: int = 64
    claim_timeout_s: int = 600

    def __post_init__(self) -> None:
        if self.name not in LAUNCHERS:
            close = difflib.get_close_matches(str(self.name), LAUNCHERS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise BenchError(f"--launcher {self.name!r}: unknown launcher; choose one of "
                             f"{', '.join(LAUNCHERS)}{hint}")
        _at_least("launcher.gpus_per_cell", self.gpus_per_cell, 0)
        _at_least("launcher.nodes_per_cell", self.nodes_per_cell, 1)
        _at_least("launcher.array_parallelism", self.array_parallelism, 1)
        _at_least("launcher.claim_timeout_s", self.claim_timeout_s, 1)
        for key in ("cpus_per_cell", "mem_gb"):
            if getattr(self, key) is not None:
                _at_least(f"launcher.{key}", getattr(self, key), 1)
        if self.gpus_per_cell % self.nodes_per_cell:
            raise BenchError(f"config launcher.gpus_per_cell={self.gpus_per_cell} does not split "
                             f"evenly over launcher.nodes_per_cell={self.nodes_per_cell}; give "
                             f"a multiple of the node count")
        time_limit_minutes(self.time)


def time_limit_minutes(text: object) -> int:
    """A SLURM time limit (``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``) in
    whole minutes, rounded up."""
    value = str(text).strip()
    days, dash, clock = value.partition("-")
    if not dash:
        days, clock = "0", value
    try:
        day_count, numbers = int(days), [int(part) for part in clock.split(":")]
    except ValueError:
        numbers = []
    if not numbers or len(numbers) > 3 or min(numbers + [day_count]) < 0:
        raise BenchError(f"--time {value!r}: expected minutes or [D-]HH:MM:SS, e.g. 08:00:00")
    if dash:
        hours, minutes, seconds = (numbers + [0, 0])[:3]
    else:
        hours, minutes, seconds = {1: (0, numbers[0], 0), 2: (0, *numbers),
                                   3: tuple(numbers)}[len(numbers)]
    total = (day_count * 24 + hours) * 60 + minutes + (1 if seconds else 0)
    if total < 1:
        raise BenchError(f"--time {value!r}: the limit must be at least one minute")
    return total


def training_curve(config: "RunConfig") -> list[tuple[int, int]]:
    """The (training steps, sampling steps) points scored besides the final weights: every
    budget of ``train.evaluate_at`` short of ``train.steps``, at every sampling budget of
    ``sampling.training_curve_steps`` (default: the largest)."""
    sampling = config.sampling.training_curve_steps or (max(config.sampling.steps),)
    return [(train, steps) for train in sorted(config.train.evaluate_at)
            if train < config.train.steps for steps in sorted(set(sampling))]


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run.

    ``references`` are the reference generators scored beside the methods at
    every seed (the ceilings ``oracle`` and ``oracle-rep``, the ``gaussian``
    floor; any of ``bench list``'s references), never ranked.
    ``threads`` is the number of torch, BLAS and OpenMP threads of each cell
    (fixed, not the machine's core count, because results depend on it at the
    level of rounding); ``jobs`` the number of cells run at once, each in its
    own process (see :mod:`bench.workers`). ``jobs`` changes no result.
    """

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    representation: RepresentationConfig = field(default_factory=RepresentationConfig)
    methods: tuple[str, ...] = ("otfm", "ddpm")
    references: tuple[str, ...] = ("oracle", "oracle-rep", "gaussian", "mean-skull",
                                   "train-copy")
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: int = 5
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    downstream: DownstreamSettings = field(default_factory=DownstreamSettings)
    device: str = "cpu"
    threads: int = 1
    jobs: int = 1
    launcher: LauncherConfig = field(default_factory=LauncherConfig)

    def __post_init__(self) -> None:
        for name in ("threads", "jobs", "seeds"):
            _at_least(name, getattr(self, name), 1)
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise BenchError(f"config device: {self.device!r} is not a device; use cpu, cuda "
                             f"or cuda:N")
        if self.jobs > 1 and self.device != "cpu":
            raise BenchError(f"config: jobs={self.jobs} is for CPU runs (a forked process "
                             f"cannot use CUDA); set jobs=1, and spread a GPU run over "
                             f"several GPUs with --shard i/n")
        if self.jobs > 1 and self.threads != 1:
            raise BenchError(f"config: jobs={self.jobs} runs cells in forked processes, where "
                             f"torch's OpenMP cannot start threads; set threads=1, or jobs=1 "
                             f"to give one cell {self.threads} threads")
        if self.jobs > 1 and self.launcher.name != "local":
            raise BenchError(f"config: jobs={self.jobs} is for --launcher local; with "
                             f"--launcher {self.launcher.name} every cell is its own job, so "
                             f"set jobs=1 (--jobs 1) and limit the jobs at once with "
                             f"--array-parallelism")


def _at_least(key: str, value: int, minimum: int) -> None:
    """Raise BenchError naming ``key`` unless ``value`` is an integer of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BenchError(f"config {key}: must be an integer of at least {minimum}, got "
                         f"{value!r}")


def load_config(preset_or_file: str | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """A preset name or a YAML file path, then ``key.path=value`` overrides."""
    source = preset_or_file or DEFAULT_PRESET
    raw = _read_yaml(source)
    for item in overrides:
        key, value = _split_override(item)
        _set_path(raw, key.split("."), yaml.safe_load(value), source=f"--set {item}")
    return from_dict(RunConfig, raw, path="")


def to_dict(config: Any) -> Any:
    """Plain YAML/JSON-ready values of a config (tuples become lists)."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    if isinstance(config, dict):
        return {k: to_dict(v) for k, v in config.items()}
    return config


def from_dict(cls: type, raw: Any, path: str) -> Any:
    """Build dataclass ``cls`` from nested dicts, checking keys and types."""
    if not isinstance(raw, dict):
        raise BenchError(f"config {path.rstrip('.') or 'root'}: expected a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean '{path}{close[0]}'?" if close else ""
            raise BenchError(f"config: unknown key '{path}{key}'{hint} (valid keys here: "
                             f"{', '.join(fields)})")
    hints = typing.get_type_hints(cls)
    values = {name: _convert(hints[name], raw[name], f"{path}{name}")
              for name in fields if name in raw}
    return cls(**values)


def _convert(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_dict(hint, value, path + ".")
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, (list, tuple)):
            value = [value]
        return tuple(_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise BenchError(f"config {path}: expected a mapping, got {value!r}")
        return dict(value)
    if origin in (typing.Union, types.UnionType):
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        # YAML 1.1 reads 2e-4 (no dot) as a string.
        try:
            return float(value)
        except ValueError:
            pass
    if hint is Any or isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise BenchError(f"config {path}: expected {hint.__name__}, got {value!r} "
                     f"({type(value).__name__})")


def _read_yaml(source: str) -> dict[str, Any]:
    if source in PRESETS:
        text = resources.files("bench.presets").joinpath(f"{source}.yaml").read_text()
        origin = f"preset {source!r}"
    else:
        path = Path(source)
        if not path.is_file():
            close = difflib.get_close_matches(source, PRESETS, n=1)
            hint = f"; did you mean preset {close[0]!r}?" if close else ""
            raise BenchError(f"--config {source}: no such preset ({', '.join(PRESETS)}) or "
                             f"file{hint}")
        text, origin = path.read_text(), str(path)
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise BenchError(f"{origin}: not valid YAML ({error})") from error
    if not isinstance(raw, dict):
        raise BenchError(f"{origin}: the top level must be a mapping of keys")
    return raw


def _split_override(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise BenchError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. train.steps=500")
    return key.strip(), value


def _set_path(raw: dict[str, Any], keys: list[str], value: Any, source: str) -> None:
    node = raw
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise BenchError(f"{source}: {key!r} is not a section")
        node = child
    node[keys[-1]] = value
