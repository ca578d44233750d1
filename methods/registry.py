"""The method registry: names to classes, plugins by module or entry point.

    @register_method("otfm")
    class OTFlowMatching(Method): ...

Third-party packages register under the entry-point group ``bench.methods``
(``name = package.module:Class``) or are imported with ``--plugin module``;
either way the class goes through the same decorator and checks.
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import Callable, TypeVar

from bench.errors import BenchError
from methods.base import Method

ENTRY_POINT_GROUP = "bench.methods"
METHODS: dict[str, type[Method]] = {}
M = TypeVar("M", bound=type[Method])


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: register a :class:`Method` subclass under ``name``."""

    def decorate(cls: M) -> M:
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise BenchError(f"register_method({name!r}): {cls!r} is not a subclass of "
                             f"methods.base.Method")
        if name in METHODS and METHODS[name] is not cls:
            raise BenchError(f"method name {name!r} is already registered by "
                             f"{METHODS[name].__module__}.{METHODS[name].__qualname__}")
        cls.name = name
        METHODS[name] = cls
        return cls

    return decorate


def get_method(name: str) -> type[Method]:
    """The class registered as ``name``; an unknown name lists the valid ones."""
    if name not in METHODS:
        load_entry_points()
    if name not in METHODS:
        close = difflib.get_close_matches(name, METHODS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise BenchError(f"unknown method {name!r}; registered: {', '.join(sorted(METHODS))}"
                         f"{hint} (third-party methods: --plugin MODULE or the "
                         f"{ENTRY_POINT_GROUP!r} entry point group)")
    return METHODS[name]


def create_method(name: str, **params: object) -> Method:
    """An unfitted instance of method ``name`` with hyperparameters overridden."""
    return get_method(name)(**params)


def load_plugin(module: str) -> None:
    """Import ``module`` so that its ``@register_method`` classes register."""
    try:
        importlib.import_module(module)
    except ImportError as error:
        raise BenchError(f"--plugin {module}: cannot import it ({error}); the module must be "
                         f"importable from the current environment") from error


def load_entry_points() -> None:
    """Import every class advertised under the ``bench.methods`` entry-point group."""
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in METHODS:
            continue
        cls = entry.load()
        if cls.name != entry.name:
            register_method(entry.name)(cls)
