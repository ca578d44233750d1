"""The method registry: names to classes, plugins by module or entry point.

    @register_method("otfm")
    class OTFlowMatching(Method): ...

Third-party packages register under the entry-point group ``bench.methods``
(``name = package.module:Class``) or are imported with ``--plugin module``;
either way the class goes through the same decorator and checks.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from importlib.metadata import entry_points
from typing import Callable, TypeVar

from bench.errors import BenchError
from bench.registry import Registry
from methods.base import Method, Params

ENTRY_POINT_GROUP = "bench.methods"
REGISTRY: Registry[type[Method]] = Registry(
    "method", Method, unknown_hint=f" (third-party methods: --plugin MODULE or the "
                                   f"{ENTRY_POINT_GROUP!r} entry point group)")
METHODS = REGISTRY.classes
M = TypeVar("M", bound=type[Method])
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: register a :class:`Method` subclass under ``name``.

    Refused with :class:`BenchError`: a name that is not letters, digits, '.',
    '_' and '-' (names are joined by commas on the command line); a class that
    is not a concrete Method subclass or whose ``Params`` is not a frozen
    dataclass subclassing :class:`methods.base.Params`; a name already taken by
    another class; a class already registered under another name.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise BenchError(f"register_method({name!r}): a method name is letters, digits, '.', "
                         f"'_' and '-', starting with a letter or digit")
    return REGISTRY.decorator(name, _check_method)


def _check_method(name: str, cls: type[Method]) -> None:
    """What a method class must be beyond a Method subclass with a free name."""
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise BenchError(f"register_method({name!r}): {cls.__qualname__} does not "
                         f"implement {missing}")
    params = cls.Params
    if not (isinstance(params, type) and issubclass(params, Params)
            and dataclasses.is_dataclass(params) and params.__dataclass_params__.frozen):
        raise BenchError(f"register_method({name!r}): {cls.__qualname__}.Params must be a "
                         f"frozen dataclass subclassing methods.base.Params")
    aliases = [key for key, value in METHODS.items() if value is cls and key != name]
    if aliases:
        raise BenchError(f"register_method({name!r}): {cls.__qualname__} is already "
                         f"registered as {aliases[0]!r}; one class has one name")


def get_method(name: str) -> type[Method]:
    """The class registered as ``name``; an unknown name lists the valid ones."""
    if name not in METHODS:
        load_entry_points()
    return REGISTRY.get(name)


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
    """Register every class advertised under the ``bench.methods`` entry-point group.

    The entry point's name is the method's name (``ddpm-x = pkg.module:Class``).
    A class already registered by its decorator must use that same name.
    """
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in METHODS:
            continue
        try:
            cls = entry.load()
        except Exception as error:  # a broken third-party package must not hide the cause
            raise BenchError(f"entry point {entry.name!r} of group {ENTRY_POINT_GROUP!r} "
                             f"({entry.value}) cannot be loaded: {error!r}; fix or uninstall "
                             f"the package that provides it") from error
        if entry.name not in METHODS:
            taken = [key for key, value in METHODS.items() if value is cls]
            if taken:
                raise BenchError(f"entry point {entry.name!r} ({entry.value}) names a class "
                                 f"registered as {taken[0]!r}; give both the same name")
            register_method(entry.name)(cls)
