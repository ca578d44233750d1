"""The contract every metric keeps, and the metric registry.

A metric is a registered class that scores one generated set against the
reference set:

    @register_metric("pointflow-cd")
    class PointFlowChamfer(Metric):
        group = "distribution"
        inputs = ("chamfer",)
        outputs = (ValueSpec("MMD-CD", False, "mm^2", tags={"headline"}), ...)

        def compute(self, reference, generated):
            return {"MMD-CD": ..., ...}

It declares its leaderboard group, the inputs it reads
(:data:`metrics.inputs.INPUTS`), and every scalar it returns with its
direction, unit and tags (:class:`~bench.core.values.ValueSpec`); the
evaluation loops over the registry, and the reports, the robustness table,
the NFE plots and the CI gate read the tags. Like a method, a metric's
constructor stores its hyperparameters (one frozen dataclass, ``Params``)
unchanged. Its arguments come in one order everywhere: (reference,
generated). A numerical failure is never a perfect score: ``compute``
returns NaN, or raises.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, TypeVar

from bench.core.errors import BenchError
from bench.core.params import with_overrides
from bench.core.registry import Registry
from bench.core.values import GROUPS, MetricValue, ValueSpec
from metrics.inputs import INPUTS, GeneratedSet, ReferenceSet


@dataclass(frozen=True)
class Params:
    """Hyperparameters of a metric; subclasses add typed fields with defaults."""


_Params = Params  # the class attribute Metric.Params shadows the name inside Metric


class Metric(ABC):
    """Base class of metrics; register subclasses with ``@register_metric(name)``.

    Subclasses set ``group``, ``inputs``, ``outputs``, ``description`` and,
    where they have hyperparameters, ``Params``, and implement ``compute``.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    group: ClassVar[str] = ""
    inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[ValueSpec, ...]] = ()
    Params: ClassVar[type[Params]] = Params

    def __init__(self, params: _Params | None = None, **overrides: Any) -> None:
        base = params if params is not None else self.Params()
        if not isinstance(base, self.Params):
            raise BenchError(f"metric {self.name!r}: params must be {self.Params.__name__}, "
                             f"got {type(base).__name__}")
        self.params = with_overrides("metric", self.name, base, overrides)

    def minimum_set_size(self) -> int:
        """The fewest skulls a generated (and the reference) set may hold for this metric."""
        return 2

    @classmethod
    def applies_to(cls, reference: ReferenceSet) -> bool:
        """Whether the metric can score against this reference (class balance needs labels)."""
        return True

    def evaluate(self, reference: ReferenceSet, generated: GeneratedSet) -> list[MetricValue]:
        """Score ``generated`` against ``reference``; one value per returned name.

        The metric sees both sets through views that refuse undeclared inputs.
        """
        values = self.compute(reference.view(self.inputs, self.name),
                              generated.view(self.inputs, self.name))
        return self.metric_values(values)

    @abstractmethod
    def compute(self, reference: Any, generated: Any) -> dict[str, float]:
        """Name -> value of every scalar, each name matching one of ``outputs``.

        Args:
            reference: the :class:`~metrics.inputs.ReferenceSet`, as a view.
            generated: the :class:`~metrics.inputs.GeneratedSet`, as a view.
        """

    @classmethod
    def spec_of(cls, name: str) -> ValueSpec:
        """The declared output that ``name`` is."""
        for spec in cls.outputs:
            if spec.matches(name):
                return spec
        raise BenchError(f"metric {cls.name!r} returned {name!r}, which none of its outputs "
                         f"({', '.join(spec.name for spec in cls.outputs)}) declares")

    @classmethod
    def metric_values(cls, values: dict[str, float]) -> list[MetricValue]:
        """``values`` as MetricValue rows, in the order of the declared outputs."""
        fixed = [spec.name for spec in cls.outputs if "*" not in spec.name]
        missing = [name for name in fixed if name not in values]
        if missing:
            raise BenchError(f"metric {cls.name!r} did not return {missing}")
        order = {spec.name: rank for rank, spec in enumerate(cls.outputs)}
        rows = []
        for name in sorted(values, key=lambda key: (order[cls.spec_of(key).name], key)):
            value = values[name]
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise BenchError(f"metric {cls.name!r}: {name} must be a number, got "
                                 f"{value!r}")
            rows.append(cls.spec_of(name).value(name, float(value), cls.group))
        return rows


def _check_metric(name: str, cls: type[Metric]) -> None:
    """What a metric class must declare beyond a concrete Metric subclass."""
    if cls.group not in GROUPS:
        raise BenchError(f"register metric {name!r}: group {cls.group!r} is not one of "
                         f"{', '.join(GROUPS)}")
    unknown = sorted(set(cls.inputs) - set(INPUTS))
    if unknown:
        raise BenchError(f"register metric {name!r}: unknown inputs {unknown}; allowed: "
                         f"{', '.join(INPUTS)}")
    if not cls.outputs or not all(isinstance(spec, ValueSpec) for spec in cls.outputs):
        raise BenchError(f"register metric {name!r}: outputs must be a non-empty tuple of "
                         f"bench.core.values.ValueSpec")
    parameters = list(inspect.signature(cls.compute).parameters)
    if parameters[1:3] != ["reference", "generated"]:
        raise BenchError(f"register metric {name!r}: compute must take (self, reference, "
                         f"generated), in that order; got ({', '.join(parameters)})")


METRICS: Registry[type[Metric]] = Registry("metric", Metric, entry_point_group="bench.metrics",
                                           params_base=Params, check=_check_metric)
"""Registered metrics by name: built-ins on ``import metrics``, plugins by ``--plugin`` or
the ``bench.metrics`` entry-point group."""
T = TypeVar("T", bound=type[Metric])


def register_metric(name: str) -> Callable[[T], T]:
    """Class decorator: register a :class:`Metric` subclass under ``name``."""
    return METRICS.decorator(name)


def get_metric(name: str) -> type[Metric]:
    """The class registered as ``name``; an unknown name lists the valid ones."""
    return METRICS.get(name)


def create_metric(name: str, **params: Any) -> Metric:
    """An instance of metric ``name`` with hyperparameters overridden."""
    return METRICS.create(name, **params)
