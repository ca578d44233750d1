"""Names to classes, for every kind of plug-in (methods, downstream tasks).

A registry checks what a decorator hands it (a subclass of the kind's base
class, a name not taken by another class) and answers an unknown name with
the registered ones and the closest.
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, TypeVar

from bench.errors import BenchError

C = TypeVar("C", bound=type)


class Registry(Generic[C]):
    """Registered classes of one kind by name.

    Args:
        kind: what the classes are, in messages ("method", "downstream task").
        base: the class every registered class must subclass.
        unknown_hint: appended to the message for an unknown name.

    Attributes:
        classes: name -> class, in registration order.
    """

    def __init__(self, kind: str, base: type, unknown_hint: str = "") -> None:
        self.kind, self.base, self.unknown_hint = kind, base, unknown_hint
        self.classes: dict[str, C] = {}

    def register(self, name: str, cls: C) -> C:
        """Register ``cls`` as ``name``, set ``cls.name``, and return it."""
        self.check_subclass(name, cls)
        taken = self.classes.get(name)
        if taken is not None and taken is not cls:
            raise BenchError(f"{self.kind} name {name!r} is already registered by "
                             f"{taken.__module__}.{taken.__qualname__}")
        cls.name = name
        self.classes[name] = cls
        return cls

    def decorator(self, name: str, check: Callable[[str, C], None] | None = None
                  ) -> Callable[[C], C]:
        """A class decorator registering under ``name`` after ``check(name, cls)``."""

        def decorate(cls: C) -> C:
            self.check_subclass(name, cls)
            if check is not None:
                check(name, cls)
            return self.register(name, cls)

        return decorate

    def check_subclass(self, name: str, cls: object) -> None:
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise BenchError(f"register_{self.kind.split()[-1]}({name!r}): {cls!r} is not a "
                             f"subclass of {self.base.__module__}.{self.base.__qualname__}")

    def get(self, name: str) -> C:
        """The class registered as ``name``; an unknown name lists the valid ones."""
        if name not in self.classes:
            close = difflib.get_close_matches(str(name), self.classes, n=1, cutoff=0.0)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise BenchError(f"unknown {self.kind} {name!r}; registered: "
                             f"{', '.join(sorted(self.classes))}{hint}{self.unknown_hint}")
        return self.classes[name]
