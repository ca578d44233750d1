"""What every metric returns, and the shared inputs it may read.

Every metric takes its arguments in one order, (reference, generated), and
returns :class:`MetricValue` objects: a named scalar with its direction and
unit, grouped as the leaderboard groups them. A numerical failure is never
replaced by a perfect score: it raises, or the value is NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUPS = ("distribution", "volumetric", "privacy", "anatomy", "robustness", "downstream")


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
