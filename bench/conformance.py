"""Contract checks for methods, metrics, tasks and representations, built-in or plugin.

As scikit-learn's ``check_estimator``: run them on your class before you
trust a leaderboard it appears in.

    from bench.conformance import check_method, check_metric, parametrize_with_checks

    check_method(MyMethod())                  # raises ContractError on the first violation

    @parametrize_with_checks([MyMethod(), MyMetric()])
    def test_contract(item, check):           # one pytest case per (item, check)
        check(item)

What is checked:

- methods (references, which learn nothing, get the first of these checks and
  a check of their samples' shape and determinism): ``sample`` and ``save``
  before ``fit`` refused; too little data
  refused; ``fit`` returns a FitReport naming the method and seed, leaves the
  method fitted and its hyperparameters unchanged; samples of the data's shape,
  finite float32, an integer NFE; the same seed gives bitwise the same fit;
  sample i depends only on (seed, i); other seeds give other samples; a save /
  load round trip samples identically, and another method refuses the file.
  (``fit`` returns the fit report rather than the method: that is the
  project's stable Method interface, see docs/ARCHITECTURE.md.)
- metrics: a declared group, outputs and inputs, ``compute(reference,
  generated)`` in that order; on held-out real skulls every declared output
  comes back finite; the same inputs give the same numbers; an all-empty set,
  or NaN features for a metric that reads features, never scores better than
  real skulls (NaN is allowed, a perfect score is not).
- tasks: ``evaluate`` before ``train`` refused; ``train`` returns the task;
  ``evaluate`` returns one finite value per declared metric; the same seed
  gives the same numbers; training volumes without bone raise
  DegenerateTrainingSet (so that a run scores them as a failure).
- representations: ``encode`` before ``fit`` refused; ``fit`` returns the
  representation; encodings of ``encoded_shape``, float32 and finite; decoding
  gives bool volumes of the input's grid; two fits give identical encodings; a
  save / load round trip encodes identically.

The checks build small inputs of their own (latents of a correlated Gaussian
for methods; synthskull at 32^3 for the others) with tiny budgets: they
test the contract, not quality.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from bench.core.errors import BenchError
from bench.core.training import TrainConfig
from bench.data.dataset import SkullDataset
from bench.data.synthskull import make_dataset
from bench.representations import Representation
from downstream.base import DegenerateTrainingSet, Task
from methods.backbones import BackboneConfig
from methods.base import METHODS, FitConfig, FitReport, Method, SampleResult
from metrics.base import Metric
from metrics.inputs import GeneratedSet, ReferenceSet

LATENT_SHAPE = (8,)
FIT_CONFIG = FitConfig(backbone=BackboneConfig(width=32, depth=1, time_embedding=16),
                       train=TrainConfig(steps=30, batch_size=16, warmup_steps=5))
SEED = 3
RESOLUTION = 32

Check = Callable[[Any], None]


class ContractError(AssertionError):
    """A class breaks the contract of its kind; the message says how."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ContractError(message)


def _refused(call: Callable[[], object], match: str) -> bool:
    """Whether ``call`` raises a BenchError whose message contains ``match``."""
    try:
        call()
    except BenchError as error:
        return match in str(error)
    return False


# ------------------------------------------------------------------------------ inputs

def latent_training_data(seed: int = 0, n: int = 64) -> torch.Tensor:
    """(n, 8) samples of a correlated, shifted Gaussian: a stand-in for latents."""
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(LATENT_SHAPE[0], LATENT_SHAPE[0], generator=generator)
    mixing /= LATENT_SHAPE[0] ** 0.5
    return torch.randn(n, *LATENT_SHAPE, generator=generator) @ mixing + 0.5


@functools.lru_cache(maxsize=1)
def skulls() -> SkullDataset:
    """80 synthskull subjects at 32^3 (64 train, 8 val, 8 test), generated once."""
    return make_dataset(80, RESOLUTION, seed=11)


@functools.lru_cache(maxsize=2)
def reference_set(feature_nan: bool = False) -> ReferenceSet:
    """The checks' reference side: test skulls against training skulls, with small "pca"
    and "ae" feature maps (random projections of the volumes) that give NaN for every
    generated set when ``feature_nan``."""
    data = skulls()
    train, test = data.subset("train"), data.subset("test")
    projection = np.random.default_rng(5).standard_normal((RESOLUTION ** 3, 6))

    def features(volumes: np.ndarray) -> np.ndarray:
        out = volumes.reshape(len(volumes), -1).astype(np.float64) @ projection
        real = volumes is reference.volumes or volumes is reference.train_volumes
        return out if real or not feature_nan else np.full_like(out, np.nan)

    reference = ReferenceSet(test.volumes, train.volumes, data.voxel_size_mm,
                             feature_maps={"pca": features, "ae": features},
                             train_labels=train.labels,
                             class_names=data.class_names, points_per_shape=128)
    return reference


# ----------------------------------------------------------------------------- methods

@functools.lru_cache(maxsize=None)
def _fitted(cls: type[Method], params: Any) -> tuple[Method, FitReport, dict[str, Any]]:
    method = cls(params)
    snapshot = dataclasses.asdict(params)
    report = method.fit(latent_training_data(), None, FIT_CONFIG, seed=SEED)
    return method, report, snapshot


def fitted(method: Method) -> Method:
    """A fitted copy of ``method`` (same class and hyperparameters), fitted once."""
    return _fitted(type(method), method.params)[0]


def check_method_refuses_before_fit(method: Method) -> None:
    fresh = type(method)(method.params)
    with tempfile.TemporaryDirectory() as folder:
        _require(_refused(lambda: fresh.sample(3, 2, seed=0), "not fitted"),
                 f"{method.name}: sample before fit must raise BenchError('... not fitted ...')")
        _require(_refused(lambda: fresh.save(Path(folder) / "m.pt"), "not fitted"),
                 f"{method.name}: save before fit must raise BenchError('... not fitted ...')")
    _require(_refused(lambda: fresh.fit(torch.zeros(1, *LATENT_SHAPE), None, FIT_CONFIG, 0),
                      "at least 2"), f"{method.name}: fit on one sample must be refused")


def check_method_fit_report(method: Method) -> None:
    instance, report, snapshot = _fitted(type(method), method.params)
    _require(isinstance(report, FitReport), f"{method.name}: fit must return a FitReport, got "
                                            f"{type(report).__name__}")
    _require(report.method == method.name and report.seed == SEED,
             f"{method.name}: the FitReport must name the method and the seed")
    _require(report.steps >= 0 and report.wall_time_s >= 0,
             f"{method.name}: negative steps or wall time in the FitReport")
    _require(instance.fitted_, f"{method.name}: fit must leave the method fitted")
    _require(dataclasses.asdict(instance.params) == snapshot,
             f"{method.name}: fit changed the hyperparameters")


def check_method_samples(method: Method) -> None:
    result = fitted(method).sample(5, 4, seed=0)
    _require(isinstance(result, SampleResult), f"{method.name}: sample must return a "
                                               f"SampleResult")
    _require(tuple(result.samples.shape) == (5, *LATENT_SHAPE)
             and result.samples.dtype == torch.float32,
             f"{method.name}: samples must be float32 (n, *data shape), got "
             f"{tuple(result.samples.shape)} {result.samples.dtype}")
    _require(bool(torch.isfinite(result.samples).all()), f"{method.name}: non-finite samples")
    _require(isinstance(result.nfe, int) and result.nfe >= 0,
             f"{method.name}: nfe must be a non-negative int, got {result.nfe!r}")


def check_method_determinism(method: Method) -> None:
    again = type(method)(method.params)
    again.fit(latent_training_data(), None, FIT_CONFIG, seed=SEED)
    first = fitted(method).sample(6, 3, seed=1).samples
    _require(torch.equal(again.sample(6, 3, seed=1).samples, first),
             f"{method.name}: the same seed must give bitwise identical fits and samples")
    _require(not torch.equal(fitted(method).sample(6, 3, seed=2).samples, first),
             f"{method.name}: seeds 1 and 2 gave the same samples")


def check_method_sample_index(method: Method) -> None:
    instance = fitted(method)
    three = instance.sample(3, 3, seed=7).samples
    _require(torch.equal(instance.sample(5, 3, seed=7).samples[:3], three)
             and torch.equal(instance.sample(1, 3, seed=7).samples[0], three[0]),
             f"{method.name}: sample i must depend only on (seed, i), not on n")


def check_method_save_load(method: Method) -> None:
    instance = fitted(method)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "method.pt"
        instance.save(path)
        for loader in (Method, type(instance)):
            loaded = loader.load(path)
            _require(type(loaded) is type(instance) and loaded.params == instance.params,
                     f"{method.name}: load must give the same class and hyperparameters")
            _require(torch.equal(loaded.sample(4, 3, seed=5).samples,
                                 instance.sample(4, 3, seed=5).samples),
                     f"{method.name}: a loaded method must sample exactly like the saved one")
        other = next((cls for name, cls in METHODS.classes.items() if name != method.name),
                     None)
        if other is not None:
            _require(_refused(lambda: other.load(path), method.name),
                     f"{method.name}: {other.name}.load must refuse this method's file")


METHOD_CHECKS: tuple[Check, ...] = (
    check_method_refuses_before_fit, check_method_fit_report, check_method_samples,
    check_method_determinism, check_method_sample_index, check_method_save_load)


class ChecksTruth:
    """The ground truth the checks give reference generators: random 4^3 volumes, encoded
    by flattening."""

    def subjects(self, n: int, seed: int) -> np.ndarray:
        return np.stack([np.random.default_rng([seed, i]).random((4, 4, 4)) < 0.5
                         for i in range(n)])

    def encode(self, volumes: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(volumes.reshape(len(volumes), -1).astype(np.float32))


def check_reference_samples(method: Method) -> None:
    """A reference: fitted on latents with the checks' ground truth, it samples n finite
    rows, the same for the same seed, and sample i depends only on (seed, i)."""
    fresh = type(method)(method.params)
    fresh.fit(latent_training_data(), None, dataclasses.replace(FIT_CONFIG, truth=ChecksTruth()),
              seed=SEED)
    five = fresh.sample(5, 3, seed=1).samples
    _require(len(five) == 5 and bool(torch.isfinite(five.float()).all()),
             f"{method.name}: a reference must give n finite samples")
    _require(torch.equal(fresh.sample(5, 3, seed=1).samples, five)
             and torch.equal(fresh.sample(2, 3, seed=1).samples, five[:2]),
             f"{method.name}: sample i must depend only on (seed, i)")


REFERENCE_CHECKS: tuple[Check, ...] = (check_method_refuses_before_fit, check_reference_samples)
"""References learn nothing worth checking bitwise and may not save (the oracles sample
the run's ground truth): their contract is smaller."""


# ----------------------------------------------------------------------------- metrics

def _scores(metric: Metric, reference: ReferenceSet, volumes: np.ndarray) -> dict[str, float]:
    values = metric.evaluate(reference, GeneratedSet(reference, volumes, seed=0))
    return {value.name: value.value for value in values}


@functools.lru_cache(maxsize=None)
def _real_scores(metric_cls: type[Metric], params: Any) -> dict[str, float]:
    """The metric on held-out real skulls (the validation split): the good input."""
    return _scores(metric_cls(params), reference_set(), skulls().subset("val").volumes)


def check_metric_declaration(metric: Metric) -> None:
    _require(bool(metric.outputs) and all(isinstance(spec.higher_is_better, bool)
                                          and isinstance(spec.unit, str)
                                          for spec in metric.outputs),
             f"{metric.name}: every output needs a bool direction and a str unit")
    _require(bool(metric.description), f"{metric.name}: bench list needs a description")


def check_metric_on_real_skulls(metric: Metric) -> None:
    scores = _real_scores(type(metric), metric.params)
    fixed = [spec.name for spec in metric.outputs if "*" not in spec.name]
    _require(all(name in scores for name in fixed),
             f"{metric.name}: missing outputs {sorted(set(fixed) - set(scores))}")
    _require(all(math.isfinite(value) for value in scores.values()),
             f"{metric.name}: non-finite values on held-out real skulls: {scores}")


def check_metric_determinism(metric: Metric) -> None:
    again = _scores(type(metric)(metric.params), reference_set(),
                    skulls().subset("val").volumes)
    _require(again == _real_scores(type(metric), metric.params),
             f"{metric.name}: the same inputs gave different numbers")


def check_metric_empty_input(metric: Metric) -> None:
    empty = np.zeros_like(skulls().subset("val").volumes)
    _never_better(metric, _scores(metric, reference_set(), empty), "an all-empty set")


def check_metric_nan_features(metric: Metric) -> None:
    if "features" not in metric.inputs:
        return
    noise = np.random.default_rng(0).random(skulls().subset("val").volumes.shape) < 0.2
    _never_better(metric, _scores(metric, reference_set(feature_nan=True), noise),
                  "NaN features")


def _never_better(metric: Metric, scores: dict[str, float], what: str) -> None:
    real = _real_scores(type(metric), metric.params)
    for name, value in scores.items():
        if math.isnan(value) or name not in real:
            continue
        higher = metric.spec_of(name).higher_is_better
        better = value > real[name] if higher else value < real[name]
        _require(not better, f"{metric.name}: {name} = {value:.4g} on {what}, better than "
                             f"{real[name]:.4g} on real skulls; a failure must score NaN or "
                             f"worse")


METRIC_CHECKS: tuple[Check, ...] = (
    check_metric_declaration, check_metric_on_real_skulls, check_metric_determinism,
    check_metric_empty_input, check_metric_nan_features)


# ------------------------------------------------------------------------------- tasks

def _task_scores(task: Task, seed: int) -> dict[str, float]:
    data = skulls()
    fresh = type(task)(task.params)
    _require(fresh.train(data.subset("train").volumes[:24], data.voxel_size_mm, seed) is fresh,
             f"{task.name}: train must return the task")
    return {v.name: v.value for v in fresh.evaluate(data.subset("test"), seed)}


def check_task_refuses_before_train(task: Task) -> None:
    fresh = type(task)(task.params)
    _require(_refused(lambda: fresh.evaluate(skulls().subset("test"), 0), "not trained"),
             f"{task.name}: evaluate before train must raise BenchError('... not trained ...')")


def check_task_train_and_evaluate(task: Task) -> None:
    scores = _task_scores(task, seed=0)
    _require(list(scores) == [spec.name for spec in task.metrics],
             f"{task.name}: evaluate must return the declared metrics in order")
    _require(all(math.isfinite(value) for value in scores.values()),
             f"{task.name}: non-finite values on real skulls: {scores}")
    _require(scores == _task_scores(task, seed=0),
             f"{task.name}: the same seed gave different numbers")


def check_task_degenerate_training_set(task: Task) -> None:
    data = skulls()
    empty = np.zeros_like(data.subset("train").volumes[:4])
    fresh = type(task)(task.params)
    try:
        fresh.train(empty, data.voxel_size_mm, seed=0)
    except DegenerateTrainingSet:
        return
    raise ContractError(f"{task.name}: training on volumes without bone must raise "
                        f"DegenerateTrainingSet")


TASK_CHECKS: tuple[Check, ...] = (
    check_task_refuses_before_train, check_task_train_and_evaluate,
    check_task_degenerate_training_set)


# --------------------------------------------------------------------- representations

def check_representation_refuses_before_fit(representation: Representation) -> None:
    fresh = type(representation)(**representation.get_params())
    volumes = skulls().subset("train").volumes[:2]
    _require(_refused(lambda: fresh.encode(volumes), "not fitted"),
             f"{representation.name}: encode before fit must raise BenchError('not fitted')")


def check_representation_round_trip(representation: Representation) -> None:
    train = skulls().subset("train").volumes
    fresh = type(representation)(**representation.get_params())
    _require(fresh.fit(train) is fresh, f"{representation.name}: fit must return self")
    encoded = fresh.encode(train[:5])
    _require(tuple(encoded.shape) == (5, *fresh.encoded_shape)
             and encoded.dtype == torch.float32 and bool(torch.isfinite(encoded).all()),
             f"{representation.name}: encode must give finite float32 (N, *encoded_shape)")
    decoded = fresh.decode(encoded)
    _require(isinstance(decoded, np.ndarray) and decoded.dtype == bool
             and decoded.shape == train[:5].shape,
             f"{representation.name}: decode must give bool volumes of the input's grid")
    again = type(representation)(**representation.get_params()).fit(train)
    _require(torch.equal(again.encode(train[:5]), encoded),
             f"{representation.name}: two fits on the same data gave different encodings")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "representation.pt"
        fresh.save(path)
        _require(torch.equal(Representation.load(path).encode(train[:5]), encoded),
                 f"{representation.name}: a loaded representation must encode identically")


REPRESENTATION_CHECKS: tuple[Check, ...] = (
    check_representation_refuses_before_fit, check_representation_round_trip)


# ------------------------------------------------------------------------------ runners

def checks_for(item: object) -> tuple[Check, ...]:
    """The checks of ``item``'s kind (a method, metric, task or representation instance)."""
    if isinstance(item, Method) and item.reference:
        return REFERENCE_CHECKS
    for kind, checks in ((Method, METHOD_CHECKS), (Metric, METRIC_CHECKS),
                         (Task, TASK_CHECKS), (Representation, REPRESENTATION_CHECKS)):
        if isinstance(item, kind):
            return checks
    raise BenchError(f"no contract checks for {item!r}: pass an instance of a method, metric, "
                     f"task or representation")


def _checker(kind: type) -> Callable[[Any], None]:
    def check(item: Any) -> None:
        if not isinstance(item, kind):
            raise BenchError(f"{item!r} is not a {kind.__name__} instance")
        for one in checks_for(item):
            one(item)

    check.__doc__ = (f"Run every check of a {kind.__name__}; raise ContractError on the first "
                     f"violation.")
    return check


check_method = _checker(Method)
check_metric = _checker(Metric)
check_task = _checker(Task)
check_representation = _checker(Representation)


def parametrize_with_checks(items: Iterable[object]) -> Any:
    """A pytest decorator: one case ``(item, check)`` per check of each item."""
    import pytest  # a test-time dependency only, as in scikit-learn

    cases = [(item, check) for item in items for check in checks_for(item)]
    ids = [f"{getattr(item, 'name', type(item).__name__)}-{check.__name__}"
           for item, check in cases]
    return pytest.mark.parametrize("item, check", cases, ids=ids)
