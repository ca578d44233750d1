"""Names to classes, for every kind of plug-in: methods, metrics, representations, tasks.

    METHODS = Registry("method", Method, entry_point_group="bench.methods")

    @METHODS.decorator("otfm")
    class OTFlowMatching(Method): ...

A registry checks what a decorator hands it: a concrete subclass of the
kind's base class, a name usable on the command line and not taken by
another class, one name per class, and, where the kind has them, a frozen
dataclass of hyperparameters. It answers an unknown name with the registered
ones and the closest. Third-party classes arrive the same way from an
entry-point group (``name = package.module:Class``, loaded on the first
lookup that misses) or from a module imported with ``--plugin``
(:func:`load_plugin`).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import re
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, TypeVar, cast

from bench.core.errors import BenchError

C = TypeVar("C", bound=type)
K = TypeVar("K", bound=type)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
"""Registered names: letters, digits, '.', '_' and '-' (lists of names are comma-separated)."""


class Registry(Generic[C]):
    """Registered classes of one kind by name.

    Args:
        kind: what the classes are, in messages ("method", "metric").
        base: the class every registered class must subclass.
        entry_point_group: where installed packages advertise classes of this kind.
        params_base: if given, each class's ``Params`` must be a frozen dataclass
            subclassing it.
        check: ``check(name, cls)`` raises BenchError for what this kind demands
            beyond the above (a metric's declared outputs, say).

    Attributes:
        classes: name -> class, in registration order.
    """

    def __init__(self, kind: str, base: type, entry_point_group: str,
                 params_base: type | None = None,
                 check: Callable[[str, C], None] | None = None) -> None:
        self.kind, self.base, self.entry_point_group = kind, base, entry_point_group
        self.params_base, self.check = params_base, check
        self.classes: dict[str, C] = {}

    def decorator(self, name: str) -> Callable[[K], K]:
        """A class decorator registering the class under ``name`` (see :meth:`register`)."""
        self.check_name(name)
        return lambda cls: self.register(name, cls)

    def register(self, name: str, cls: K) -> K:
        """Register ``cls`` as ``name``, set ``cls.name``, and return it.

        Raises:
            BenchError: a bad name, a class that is not a concrete subclass of
                the base, bad ``Params``, a name taken by another class, or a
                class already registered under another name.
        """
        self.check_name(name)
        self._check_class(name, cls)
        taken = self.classes.get(name)
        if taken is not None and taken is not cls:
            raise BenchError(f"{self.kind} name {name!r} is already registered by "
                             f"{taken.__module__}.{taken.__qualname__}; choose another name")
        aliases = [key for key, value in self.classes.items() if value is cls and key != name]
        if aliases:
            raise BenchError(f"register {self.kind} {name!r}: {cls.__qualname__} is already "
                             f"registered as {aliases[0]!r}; one class has one name")
        setattr(cls, "name", name)
        # C is the type of self.base's subclasses; _check_class has checked that cls is one.
        self.classes[name] = cast(C, cls)
        return cls

    def check_name(self, name: object) -> None:
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise BenchError(f"register {self.kind} {name!r}: a {self.kind} name is letters, "
                             f"digits, '.', '_' and '-', starting with a letter or digit")

    def _check_class(self, name: str, cls: object) -> None:
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise BenchError(f"register {self.kind} {name!r}: {cls!r} is not a subclass of "
                             f"{self.base.__module__}.{self.base.__qualname__}")
        if inspect.isabstract(cls):
            missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
            raise BenchError(f"register {self.kind} {name!r}: {cls.__qualname__} does not "
                             f"implement {missing}")
        if self.params_base is not None:
            params = getattr(cls, "Params", None)
            if not (isinstance(params, type) and issubclass(params, self.params_base)
                    and dataclasses.is_dataclass(params)
                    and params.__dataclass_params__.frozen):  # type: ignore[attr-defined]
                raise BenchError(f"register {self.kind} {name!r}: {cls.__qualname__}.Params "
                                 f"must be a frozen dataclass subclassing "
                                 f"{self.params_base.__module__}.{self.params_base.__qualname__}")
        if self.check is not None:
            self.check(name, cls)  # type: ignore[arg-type]

    def get(self, name: str) -> C:
        """The class registered as ``name``; an unknown name lists the valid ones."""
        if name not in self.classes:
            self.load_entry_points()
        if name not in self.classes:
            close = difflib.get_close_matches(str(name), self.classes, n=1, cutoff=0.0)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise BenchError(f"unknown {self.kind} {name!r}; registered: "
                             f"{', '.join(sorted(self.classes))}{hint} (third-party "
                             f"{self.kind}s: --plugin MODULE or the "
                             f"{self.entry_point_group!r} entry-point group)")
        return self.classes[name]

    def create(self, name: str, **params: Any) -> Any:
        """An instance of the class registered as ``name``, built with ``params``."""
        return self.get(name)(**params)

    def names(self) -> list[str]:
        """Every registered name, entry points included, sorted."""
        self.load_entry_points()
        return sorted(self.classes)

    def load_entry_points(self) -> None:
        """Register every class advertised under this kind's entry-point group.

        The entry point's name is the class's name (``ddpm-x = pkg.module:Class``);
        a class already registered by its decorator must use that same name.
        """
        for entry in entry_points(group=self.entry_point_group):
            if entry.name in self.classes:
                continue
            try:
                cls = entry.load()
            except Exception as error:  # a broken third-party package must not hide the cause
                raise BenchError(f"entry point {entry.name!r} of group "
                                 f"{self.entry_point_group!r} ({entry.value}) cannot be loaded: "
                                 f"{error!r}; fix or uninstall the package that provides "
                                 f"it") from error
            if entry.name not in self.classes:
                taken = [key for key, value in self.classes.items() if value is cls]
                if taken:
                    raise BenchError(f"entry point {entry.name!r} ({entry.value}) names a "
                                     f"class registered as {taken[0]!r}; give both the same "
                                     f"name")
                self.register(entry.name, cls)


def load_plugin(module: str) -> None:
    """Import ``module`` so that the classes it registers (of any kind) are available."""
    try:
        importlib.import_module(module)
    except ImportError as error:
        raise BenchError(f"--plugin {module}: cannot import it ({error}); the module must be "
                         f"importable from the current environment") from error
