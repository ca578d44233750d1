"""Hyperparameter dataclasses overridden by name, with errors that name the key."""

from __future__ import annotations

import dataclasses
import difflib
from typing import TYPE_CHECKING, Any, TypeVar

from bench.core.errors import BenchError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

P = TypeVar("P", bound="DataclassInstance")


def with_overrides(kind: str, name: str, params: P, overrides: dict[str, Any]) -> P:
    """``params`` (a dataclass) with fields replaced by ``overrides``.

    An unknown field is a :class:`BenchError` naming it, the allowed fields
    and the closest match, e.g. ``method 'otfm' has no parameter 'sigma'``.
    """
    allowed = [f.name for f in dataclasses.fields(params)]
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        hints = [difflib.get_close_matches(key, allowed, n=1) for key in unknown]
        suggestion = "; ".join(f"{k!r}: did you mean {h[0]!r}?" for k, h in zip(unknown, hints)
                               if h)
        raise BenchError(f"{kind} {name!r} has no parameter {', '.join(map(repr, unknown))}; "
                         f"allowed: {', '.join(sorted(allowed)) or 'none'}"
                         f"{'. ' + suggestion if suggestion else ''}")
    return dataclasses.replace(params, **overrides)
