"""The representation contract, its registry and the reconstruction floor.

A representation maps binary skull volumes to the tensors that generative
methods learn from, and back. Methods never see volumes, so one method runs
on voxel grids and on latents alike. The contract follows scikit-learn's
estimators: the constructor stores keyword-only hyperparameters unchanged,
``fit`` learns state (attributes with a trailing underscore) from the
training split only and returns the representation, and ``encode`` or
``decode`` before ``fit`` raise :class:`~bench.core.errors.BenchError`.
"""

from __future__ import annotations

import abc
import inspect
import os
import pickle
from pathlib import Path
from typing import Any, Callable, ClassVar, TypeVar

import numpy as np
import torch
from monai.metrics import compute_dice

from bench.core.errors import BenchError
from bench.core.io import atomic_path
from bench.core.registry import Registry
from bench.core.volumes import as_binary_volumes

FORMAT_VERSION = 1
BATCH_BYTES = 1 << 26
"""Bound on the float32 working memory of one encode or decode batch (64 MiB)."""

State = dict[str, "torch.Tensor | int | float | str"]
R = TypeVar("R", bound="Representation")


class Representation(abc.ABC):
    """Invertible map between binary volumes (N, R, R, R) and tensors (N, *encoded_shape).

    Subclasses are registered with ``@register_representation(name)``, take
    their hyperparameters as keyword-only constructor arguments stored under
    the same attribute names, and implement ``fit``, ``encode``, ``decode``,
    ``encoded_shape`` and the state hooks ``_get_state`` / ``_set_state`` used
    by :meth:`save` and :meth:`load`.
    """

    name: ClassVar[str] = ""

    @abc.abstractmethod
    def fit(self: R, volumes: np.ndarray | torch.Tensor, *, checkpoint_dir: Path | None = None,
            progress: bool = False, device: torch.device | str = "cpu") -> R:
        """Learn the representation from training volumes (N, R, R, R); return ``self``.

        A representation that trains a network keeps its training checkpoints in
        ``checkpoint_dir`` (and resumes from them), shows a progress bar with
        ``progress`` and trains on ``device``; one fitted in closed form ignores
        the three.
        """

    def to(self: R, device: torch.device | str) -> R:
        """Run encode and decode on ``device`` where it helps (a network); return ``self``."""
        return self

    @abc.abstractmethod
    def encode(self, volumes: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Volumes (N, R, R, R) to a float32 tensor (N, *encoded_shape) on the CPU."""

    @abc.abstractmethod
    def decode(self, encoded: torch.Tensor) -> np.ndarray:
        """A tensor (N, *encoded_shape) on any device to bool volumes (N, R, R, R)."""

    @property
    @abc.abstractmethod
    def encoded_shape(self) -> tuple[int, ...]:
        """Shape of one encoded sample, e.g. (1, R, R, R) or (k,); known after fit."""

    @abc.abstractmethod
    def _get_state(self) -> State:
        """The fitted attributes as tensors and plain values, for :meth:`save`."""

    @abc.abstractmethod
    def _set_state(self, state: State) -> None:
        """Restore the fitted attributes from what :meth:`_get_state` returned."""

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        """Names of the keyword-only constructor hyperparameters."""
        parameters = inspect.signature(cls.__init__).parameters.values()
        return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters as given to the constructor."""
        return {key: getattr(self, key) for key in self.param_names()}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    @property
    def is_fitted(self) -> bool:
        """Whether ``fit`` (or ``load``) has set the learned state."""
        return any(k.endswith("_") and not k.startswith("_") for k in vars(self))

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise BenchError(f"representation {self.name!r} is not fitted; call fit(train "
                             f"volumes) or load a saved one before encode/decode")

    def save(self, path: str | os.PathLike) -> None:
        """Write hyperparameters and fitted state to ``path`` atomically (torch.save)."""
        self._check_fitted()
        payload = {"format_version": FORMAT_VERSION, "representation": self.name,
                   "params": self.get_params(), "state": self._get_state()}
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Representation":
        """Read a representation written by :meth:`save`.

        Called on the base class, it returns an instance of whichever registered
        representation the file holds; called on a subclass, the file must hold
        that representation.
        """
        payload = _read_payload(path)
        stored = payload["representation"]
        if cls is not Representation and stored != cls.name:
            raise BenchError(f"{path}: holds representation {stored!r}, not {cls.name!r}; "
                             f"load it with Representation.load")
        klass = cls if cls is not Representation else REPRESENTATIONS.get(stored)
        instance = klass(**payload["params"])
        instance._set_state(payload["state"])
        return instance


def _read_payload(path: str | os.PathLike) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        raise BenchError(f"{path}: cannot read a saved representation ({error}); fit and "
                         f"save it again") from error
    version = payload.get("format_version") if isinstance(payload, dict) else None
    if version != FORMAT_VERSION or "representation" not in payload:
        raise BenchError(f"{path}: representation file format {version!r}, this code reads "
                         f"{FORMAT_VERSION}; fit and save the representation again")
    return payload


def tensor_state(state: State, key: str, name: str) -> torch.Tensor:
    """``state[key]``, which a saved representation ``name`` holds as a tensor."""
    value = state[key]
    if not isinstance(value, torch.Tensor):
        raise BenchError(f"representation {name!r}: the saved {key!r} is a "
                         f"{type(value).__name__}, not a tensor; fit and save the "
                         f"representation again")
    return value


# ----------------------------------------------------------------------------- registry

REPRESENTATIONS: Registry[type[Representation]] = Registry(
    "representation", Representation, entry_point_group="bench.representations")
"""Registered representations by name; plugins by ``--plugin`` or the
``bench.representations`` entry-point group."""


def register_representation(name: str) -> Callable[[type[R]], type[R]]:
    """Class decorator: register a :class:`Representation` subclass under ``name``."""
    return REPRESENTATIONS.decorator(name)


def get_representation(name: str, **params: Any) -> Representation:
    """A new, unfitted representation by registered name.

    Args:
        name: registered name, e.g. ``"voxel"`` or ``"pca"``.
        **params: hyperparameters of that representation, e.g. ``n_components=64``.

    Raises:
        BenchError: for an unknown name (listing the valid names and the closest
            match) or a parameter that the representation does not take.
    """
    cls = REPRESENTATIONS.get(name)
    allowed = cls.param_names()
    for key in params:
        if key not in allowed:
            raise BenchError(f"representation {name!r} has no parameter {key!r}; allowed: "
                             f"{', '.join(allowed) if allowed else 'none'}")
    return cls(**params)


# ------------------------------------------------------------------- input checks

def as_encoded(encoded: torch.Tensor | np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    """Check an encoded batch (N, *shape) and return it as a float32 CPU tensor."""
    encoded = torch.as_tensor(encoded).detach().to("cpu", torch.float32)
    if encoded.ndim != len(shape) + 1 or tuple(encoded.shape[1:]) != shape:
        raise BenchError(f"encoded tensor must have shape (N, {', '.join(map(str, shape))}), "
                         f"got {tuple(encoded.shape)}")
    bad = int((~torch.isfinite(encoded)).sum())
    if bad:
        raise BenchError(f"encoded tensor has {bad} non-finite values (NaN or inf); the "
                         f"method that produced it diverged")
    return encoded


def batch_rows(n_features: int) -> int:
    """Samples per batch so that a float32 batch (B, n_features) stays within BATCH_BYTES."""
    return max(1, BATCH_BYTES // (4 * n_features))


# ------------------------------------------------------------------ reconstruction

def reconstruction_dice(representation: Representation,
                        volumes: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per-sample Dice of ``decode(encode(v))`` against ``v``: the representation's floor.

    Every method that learns in this representation's space can at best reach
    this overlap with real skulls. Dice is ``2 |A ∩ B| / (|A| + |B|)``, computed
    by MONAI's ``compute_dice`` on single-channel binary masks (B, 1, R, R, R);
    two empty masks score 1 and an empty mask against a non-empty one scores 0.

    Args:
        representation: a fitted representation.
        volumes: binary volumes (N, R, R, R), e.g. the test split.

    Returns:
        float64 array (N,) of Dice scores in [0, 1].
    """
    volumes = as_binary_volumes(volumes)
    rows = batch_rows(int(np.prod(volumes.shape[1:])))
    scores = []
    for start in range(0, len(volumes), rows):
        batch = volumes[start:start + rows]
        decoded = representation.decode(representation.encode(batch))
        dice = compute_dice(torch.from_numpy(decoded)[:, None], torch.from_numpy(batch)[:, None],
                            include_background=True, ignore_empty=False)
        scores.append(dice[:, 0].double().numpy())
    return np.concatenate(scores)
