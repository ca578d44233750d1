"""Named scalars: what every metric and downstream task returns, and how it is declared.

A metric or task declares each scalar it reports as a :class:`ValueSpec`
(name, direction, unit, tags) and returns :class:`MetricValue` objects, which
become the long result rows of a run. The tags tell the reports what to do
with a scalar, so that a metric from a plugin lands in the right tables with
no edit to the harness. A numerical failure is never replaced by a perfect
score: it raises, or the value is NaN.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

GROUPS = ("distribution", "volumetric", "privacy", "anatomy", "robustness", "downstream")
"""The leaderboard groups, in the order the reports show them."""

TAGS = {
    "headline": "in the headline table, the verdict and the summary that `bench run` prints",
    "robustness": "its change over step budgets goes into the robustness table",
    "nfe": "plotted against the number of network evaluations",
    "gate": "compared with the CI baseline by `bench check`",
    "floor": "`bench check` requires otfm to beat the gaussian floor on it",
    "training": "scored at every training budget of train.evaluate_at, as headline values are",
}
"""The tags a :class:`ValueSpec` may carry, with what each one does."""


@dataclass(frozen=True)
class MetricValue:
    """One named scalar.

    Attributes:
        name: e.g. ``"MMD-CD"``, ``"COV-EMD"``, ``"1-NNA-CD"``.
        value: the number, in ``unit``.
        higher_is_better: direction, for ranking and arrows in tables.
        unit: ``"mm^2"``, ``"mm"``, ``"%"``, ``""`` (dimensionless), ...
        group: one of :data:`GROUPS`.
    """

    name: str
    value: float
    higher_is_better: bool
    unit: str
    group: str

    def __post_init__(self) -> None:
        if self.group not in GROUPS:
            raise ValueError(f"metric {self.name!r}: group {self.group!r} is not one of {GROUPS}")


@dataclass(frozen=True)
class ValueSpec:
    """Name, direction, unit and tags of one scalar that a metric or task reports.

    Attributes:
        name: the scalar's name; a ``*`` stands for a part known only at run
            time (``"class-freq-*-pca"`` for each rare class of the dataset).
        higher_is_better: direction, for ranking and arrows in tables.
        unit: ``"mm^2"``, ``"%"``, ``""`` (dimensionless), ...
        tags: what the reports do with it, a subset of :data:`TAGS` (any set, kept as a
            frozenset).
    """

    name: str
    higher_is_better: bool
    unit: str
    tags: Set[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", frozenset(self.tags))
        unknown = sorted(self.tags - set(TAGS))
        if unknown:
            raise ValueError(f"value {self.name!r}: unknown tags {unknown}; allowed: "
                             f"{', '.join(TAGS)}")

    def matches(self, name: str) -> bool:
        """Whether ``name`` is this scalar (or one of its run-time variants)."""
        return fnmatchcase(name, self.name)

    def value(self, name: str, value: float, group: str) -> MetricValue:
        """``value`` as a :class:`MetricValue` named ``name`` in ``group``."""
        return MetricValue(name, float(value), self.higher_is_better, self.unit, group)
