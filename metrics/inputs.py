"""What a metric reads: the reference side and the generated side, each computed once.

A metric's ``compute(reference, generated)`` receives a :class:`ReferenceSet`
(the real skulls, built once per run and shared by every cell and step
budget) and a :class:`GeneratedSet` (one set of samples). Every derived input
(point sets, anatomy measures, features, distance and Dice matrices) is
computed on first use and cached, so it is computed once, and only when some
metric reads it. A metric declares the inputs it reads (:data:`INPUTS`); it
sees the two sets through a view that refuses every other input, so the
declaration is true.

Shapes and units: volumes are bool (N, R, R, R) in the common grid of
:mod:`bench.data.grid`; distances are in millimetres (Chamfer in mm^2);
features are float64 (N, d).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable, cast

import numpy as np

from bench.core.errors import BenchError
from bench.core.volumes import as_binary_volumes
from metrics.measures import AnatomyMeasures, measure_volumes
from metrics.distances import DistanceMatrices, compute_distance_matrices
from metrics.pointsets import DEFAULT_POINTS, PointSets, sample_surface_points
from bench.core.dice import dice_matrix

FeatureMap = Callable[[np.ndarray], np.ndarray]
"""Bool volumes (N, R, R, R) to float64 features (N, d); fitted on the training split only."""

INPUTS = {
    "volumes": "the bool volumes (N, R, R, R) of each set",
    "points": "surface point sets in mm (PointSets), the same sampler for both sets",
    "chamfer": "generated.chamfer: Chamfer matrices (mm^2) reference x generated and within "
               "each set",
    "measures": "anatomy measures (AnatomyMeasures) of each set",
    "features": "features(name) of each set: the run's feature maps and 'descriptors'",
    "dice": "Dice matrices: reference.train_dice (train x reference), generated.train_dice "
            "(train x generated), generated.reference_dice (reference x generated)",
    "train": "the training split: train_volumes, train_measures, train_features(name), "
             "train_labels, class_names",
}
"""Declarable inputs of a metric, with what each gives access to."""

DESCRIPTORS = ("bone_volume_ml", "cranial_length_mm", "cranial_width_mm", "skull_height_mm",
               "cephalic_index", "symmetry_error_mm")
"""The anatomy measures that make up the ``"descriptors"`` feature vector, in order."""

UNDEFINED_DESCRIPTOR = 10.0
"""Standardised value of a descriptor that is undefined for a sample (NaN: no bone
above the vault base, an empty volume): 10 reference standard deviations from the
mean, outside the support of every real skull, so that a broken sample is far
from the reference in feature space instead of at its centre."""


class _InputSet:
    """Base of the two sets: the map from attribute to declared input."""

    INPUT_OF: dict[str, str] = {}

    def view(self, inputs: Iterable[str], metric: str) -> "InputView":
        """This set as a metric that declared ``inputs`` may see it."""
        return InputView(self, frozenset(inputs), metric)


class InputView:
    """An :class:`_InputSet` that refuses the inputs a metric did not declare."""

    def __init__(self, target: _InputSet, inputs: frozenset[str], metric: str) -> None:
        self._target, self._inputs, self._metric = target, inputs, metric

    def __getattr__(self, attribute: str) -> Any:
        needed = self._target.INPUT_OF.get(attribute)
        if needed is not None and needed not in self._inputs:
            raise BenchError(f"metric {self._metric!r} reads {attribute!r}, which needs the "
                             f"input {needed!r}; add it to the metric's inputs (declared: "
                             f"{', '.join(sorted(self._inputs)) or 'none'})")
        return getattr(self._target, attribute)


class ReferenceSet(_InputSet):
    """The real side of every metric, computed once per run.

    Args:
        volumes: bool (N_ref, R, R, R), the skulls generated sets are compared
            with (the held-out test split by default).
        train: bool (N_train, R, R, R), the training split.
        voxel_size_mm: grid spacing.
        feature_maps: name -> feature map, fitted on ``train`` only (the harness
            passes the pca map; ``"descriptors"`` is always available).
        train_labels: int (N_train,) class indices (-1 unknown), or None.
        class_names: the C class names (empty without classes).
        points_per_shape: surface points per shape P.
        threads: threads of the distance engine (the cell's thread budget).
        seed: seed of the reference point sampler.
    """

    INPUT_OF = {"volumes": "volumes", "points": "points", "measures": "measures",
                "features": "features", "train_volumes": "train", "train_measures": "train",
                "train_features": "train", "train_labels": "train", "class_names": "train",
                "train_dice": "dice"}

    def __init__(self, volumes: np.ndarray, train: np.ndarray, voxel_size_mm: float,
                 feature_maps: dict[str, FeatureMap] | None = None,
                 train_labels: np.ndarray | None = None, class_names: tuple[str, ...] = (),
                 points_per_shape: int = DEFAULT_POINTS, threads: int = 1, seed: int = 0) -> None:
        self.volumes = as_binary_volumes(volumes)
        self.train_volumes = as_binary_volumes(train, self.volumes.shape[1])
        self.voxel_size_mm = float(voxel_size_mm)
        self.field_of_view_mm = self.voxel_size_mm * self.volumes.shape[1]
        self.feature_maps = dict(feature_maps or {})
        if "descriptors" in self.feature_maps:
            raise BenchError("feature map name 'descriptors' is taken by the anatomy "
                             "descriptors; choose another name")
        self.train_labels, self.class_names = train_labels, tuple(class_names)
        self.points_per_shape, self.threads, self.seed = points_per_shape, threads, seed
        self._features: dict[str, np.ndarray] = {}
        self._train_features: dict[str, np.ndarray] = {}

    @functools.cached_property
    def points(self) -> PointSets:
        return sample_surface_points(self.volumes, self.points_per_shape, seed=self.seed,
                                     field_of_view_mm=self.field_of_view_mm)

    @functools.cached_property
    def measures(self) -> AnatomyMeasures:
        return measure_volumes(self.volumes, self.voxel_size_mm)

    @functools.cached_property
    def train_measures(self) -> AnatomyMeasures:
        return measure_volumes(self.train_volumes, self.voxel_size_mm)

    @functools.cached_property
    def train_dice(self) -> np.ndarray:
        """(N_train, N_ref) Dice of each training skull with each reference skull."""
        return dice_matrix(self.train_volumes, self.volumes)

    def features(self, name: str) -> np.ndarray:
        """Features (N_ref, d) of the reference skulls under feature map ``name``."""
        if name not in self._features:
            self._features[name] = self.featurise(name, self.volumes, self.measures)
        return self._features[name]

    def train_features(self, name: str) -> np.ndarray:
        """Features (N_train, d) of the training skulls under feature map ``name``."""
        if name not in self._train_features:
            self._train_features[name] = self.featurise(name, self.train_volumes,
                                                        self.train_measures)
        return self._train_features[name]

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Every feature map this set offers, ``"descriptors"`` last."""
        return tuple(self.feature_maps) + ("descriptors",)

    def featurise(self, name: str, volumes: np.ndarray, measures: AnatomyMeasures) -> np.ndarray:
        """Features of ``volumes`` (with their ``measures``) under feature map ``name``."""
        if name == "descriptors":
            return standardised_descriptors(self.measures, measures)
        if name not in self.feature_maps:
            raise BenchError(f"unknown feature map {name!r}; this run has "
                             f"{', '.join(self.feature_names)}")
        return np.asarray(self.feature_maps[name](volumes), dtype=np.float64)


class GeneratedSet(_InputSet):
    """One generated set against a :class:`ReferenceSet`; its inputs are cached.

    Args:
        reference: the run's reference side.
        volumes: bool (M, R, R, R) decoded samples in the same grid; empty ones
            are allowed (a failure of the method, scored as such).
        seed: the cell's seed; the point sampler uses ``seed + 1`` so that no
            generated shape shares a random stream with a reference shape.
    """

    INPUT_OF = {"volumes": "volumes", "points": "points", "measures": "measures",
                "features": "features", "chamfer": "chamfer", "train_dice": "dice",
                "reference_dice": "dice"}

    def __init__(self, reference: ReferenceSet, volumes: np.ndarray, seed: int) -> None:
        self.reference = reference
        self.volumes = as_binary_volumes(volumes, reference.volumes.shape[1])
        self.seed = seed
        self.voxel_size_mm = reference.voxel_size_mm
        self._features: dict[str, np.ndarray] = {}

    @functools.cached_property
    def empty(self) -> np.ndarray:
        """bool (M,): samples without any bone."""
        # Reducing one axis of a 2-D array gives an array; numpy's stubs also allow a scalar.
        return cast(np.ndarray, ~self.volumes.reshape(len(self.volumes), -1).any(axis=1))

    @functools.cached_property
    def points(self) -> PointSets:
        return sample_surface_points(self.volumes, self.reference.points_per_shape,
                                     seed=self.seed + 1, allow_empty=True,
                                     field_of_view_mm=self.reference.field_of_view_mm)

    @functools.cached_property
    def measures(self) -> AnatomyMeasures:
        return measure_volumes(self.volumes, self.voxel_size_mm)

    @functools.cached_property
    def chamfer(self) -> DistanceMatrices:
        """Chamfer matrices, rows reference, columns generated (see :mod:`metrics.distances`)."""
        return compute_distance_matrices(self.reference.points, self.points,
                                         workers=self.reference.threads)

    @functools.cached_property
    def train_dice(self) -> np.ndarray:
        """(N_train, M) Dice of each training skull with each sample."""
        return dice_matrix(self.reference.train_volumes, self.volumes)

    @functools.cached_property
    def reference_dice(self) -> np.ndarray:
        """(N_ref, M) Dice of each reference skull with each sample."""
        return dice_matrix(self.reference.volumes, self.volumes)

    def features(self, name: str) -> np.ndarray:
        """Features (M, d) of the samples under the reference's feature map ``name``."""
        if name not in self._features:
            self._features[name] = self.reference.featurise(name, self.volumes, self.measures)
        return self._features[name]


def standardised_descriptors(reference: AnatomyMeasures, measures: AnatomyMeasures
                             ) -> np.ndarray:
    """The :data:`DESCRIPTORS` of ``measures``, standardised by the reference set.

    Each descriptor is centred and scaled by the reference set's mean and
    standard deviation (a measure with zero spread is only centred). A
    descriptor that is undefined for a sample (NaN) becomes
    :data:`UNDEFINED_DESCRIPTOR`, far outside the reference's support: a
    sample whose cephalic index cannot be measured is broken, and must not sit
    at the reference's centre, where filling in the mean would put it.

    Returns:
        float64 (N, 6).
    """
    ref = reference.stack(DESCRIPTORS)
    mean = np.nanmean(ref, axis=0)
    std = np.nanstd(ref, axis=0)
    std = np.where(std > 0, std, 1.0)
    scaled = (measures.stack(DESCRIPTORS) - mean) / std
    return np.where(np.isfinite(scaled), scaled, UNDEFINED_DESCRIPTOR)
