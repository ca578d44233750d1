"""The method registry: names to classes, plugins by module or entry point.

    @register_method("otfm")
    class OTFlowMatching(Method): ...

Third-party packages register under the entry-point group ``bench.methods``
(``name = package.module:Class``) or are imported with ``--plugin module``;
either way the class goes through the same checks
(:class:`bench.core.registry.Registry`): a concrete Method subclass whose
``Params`` is a frozen dataclass subclassing :class:`methods.base.Params`,
under a name no other class holds.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from methods.base import METHODS, Method

M = TypeVar("M", bound=type[Method])


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: register a :class:`Method` subclass under ``name``."""
    return METHODS.decorator(name)


def get_method(name: str) -> type[Method]:
    """The class registered as ``name``; an unknown name lists the valid ones."""
    return METHODS.get(name)


def create_method(name: str, **params: Any) -> Method:
    """An unfitted instance of method ``name`` with hyperparameters overridden."""
    return METHODS.create(name, **params)
