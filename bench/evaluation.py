"""One API from generated volumes to every metric of the suite.

The real skulls' side of every metric (point sets, features, anatomy
measures, the training-to-test distances) is computed once per run in a
:class:`Reference` and shared by every cell and step budget; each call of
:func:`evaluate` then only handles the generated side.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatch

import numpy as np
import torch

from bench.config import MetricsConfig
from bench.data.dataset import SkullDataset
from bench.representations.pca import PCARepresentation
from metrics.anatomy import AnatomyMeasures, failure_report, measure_volumes, wasserstein_metrics
from metrics.base import MetricValue
from metrics.distances import compute_distance_matrices
from metrics.distribution import distribution_metrics
from metrics.diversity import diversity_metrics, ms_ssim_diversity
from metrics.features import (class_balance, descriptor_features, feature_metrics,
                              fit_pca_features, pca_features)
from metrics.pointsets import PointSets, sample_surface_points
from metrics.privacy import PrivacyReport, privacy_report
from metrics.volumetric import dice_matrix, nearest_dice_metrics


# The metric names of every group, as `bench list` shows them; patterns in the
# sense of fnmatch ("*" is a feature map, a class, a downstream training set).
METRIC_CATALOGUE: dict[str, tuple[str, ...]] = {
    "distribution": ("MMD-CD", "COV-CD", "1-NNA-CD", "MMD-EMD", "COV-EMD", "1-NNA-EMD",
                     "KMMD-*", "PRDC-precision-*", "PRDC-recall-*", "PRDC-density-*",
                     "PRDC-coverage-*", "MS-SSIM-diversity", "MS-SSIM-diversity-reference"),
    "volumetric": ("Dice-nearest-train", "Dice-nearest-test"),
    "privacy": ("DCR-median-generated-*", "DCR-median-test-*", "DCR-ratio-*",
                "memorised-share-*"),
    "anatomy": ("W1-*", "class-TV-*", "class-freq-*", "failure-rate", "failure-*"),
    "robustness": ("*:NFE-to-5%", "*:max-step-change"),
    "downstream": ("*:align-*", "*:completion-*"),
}


def in_catalogue(group: str, name: str) -> bool:
    """Whether ``name`` is one of the catalogued metrics of ``group``."""
    return any(fnmatch(name, pattern) for pattern in METRIC_CATALOGUE.get(group, ()))


@dataclass
class Evaluation:
    """Every metric of one generated set, and the per-sample distances behind privacy.

    Attributes:
        values: the metrics, as :func:`evaluate` returns them.
        privacy: DCRs (1 - Dice to the nearest training skull) of each generated
            sample and each held-out skull, for the report's DCR histograms.
    """

    values: list[MetricValue]
    privacy: PrivacyReport


@dataclass
class Reference:
    """The real skulls' side of every metric.

    Attributes:
        train: bool (N_train, R, R, R), the training split (privacy, features).
        reference: bool (N_ref, R, R, R), the split generated sets are compared
            with (the held-out test split by default).
        voxel_size_mm: grid spacing.
        points: surface point sets of ``reference``.
        pca: pca feature map fitted on ``train`` only.
        train_pca, reference_pca: pca features of the two splits.
        train_measures, reference_measures: anatomy measures.
        train_labels, class_names: for the class balance (None without classes).
        train_reference_dice: (N_train, N_ref) Dice of training to reference skulls.
        reference_diversity: MS-SSIM diversity of the reference skulls.
        config: the metrics settings.
    """

    train: np.ndarray
    reference: np.ndarray
    voxel_size_mm: float
    points: PointSets
    pca: PCARepresentation
    train_pca: np.ndarray
    reference_pca: np.ndarray
    train_measures: AnatomyMeasures
    reference_measures: AnatomyMeasures
    train_labels: np.ndarray | None
    class_names: tuple[str, ...]
    train_reference_dice: np.ndarray
    reference_diversity: float
    config: MetricsConfig


def build_reference(dataset: SkullDataset, config: MetricsConfig, seed: int = 0) -> Reference:
    """Compute the real side once: training split and the configured reference split."""
    train = dataset.subset("train")
    reference = dataset.subset(config.reference_split)
    pca = fit_pca_features(train.volumes)
    return Reference(
        train=train.volumes, reference=reference.volumes, voxel_size_mm=dataset.voxel_size_mm,
        points=sample_surface_points(reference.volumes, config.points, seed=seed,
                                     field_of_view_mm=dataset.field_of_view_mm),
        pca=pca, train_pca=pca_features(pca, train.volumes),
        reference_pca=pca_features(pca, reference.volumes),
        train_measures=measure_volumes(train.volumes, dataset.voxel_size_mm),
        reference_measures=measure_volumes(reference.volumes, dataset.voxel_size_mm),
        train_labels=train.labels, class_names=dataset.class_names,
        train_reference_dice=dice_matrix(train.volumes, reference.volumes),
        reference_diversity=ms_ssim_diversity(reference.volumes, config.diversity_pairs, seed),
        config=config)


def evaluate(reference: Reference, generated: np.ndarray, seed: int) -> list[MetricValue]:
    """Every metric of generated volumes (M, R, R, R) against the reference.

    Groups: distribution (PointFlow MMD/COV/1-NNA, kernel MMD and PRDC on pca
    and descriptor features, MS-SSIM diversity), volumetric, privacy, anatomy.
    """
    return evaluate_in_full(reference, generated, seed).values


def evaluate_in_full(reference: Reference, generated: np.ndarray, seed: int) -> Evaluation:
    """:func:`evaluate`, keeping the per-sample DCRs that its privacy metrics summarise.

    The distance engine gets as many workers as the caller's torch threads (a
    run's thread budget, see :mod:`bench.workers`), never every core: in a
    cell's worker process that is one, so the EMD forks no pool of its own.
    """
    config = reference.config
    # A seed apart from the reference sampler, so no shape shares its stream.
    points = sample_surface_points(generated, config.points, seed=seed + 1, allow_empty=True,
                                   field_of_view_mm=reference.points.field_of_view_mm)
    matrices = compute_distance_matrices(reference.points, points, emd=config.emd,
                                         emd_points=config.emd_points,
                                         workers=torch.get_num_threads())
    measures = measure_volumes(generated, reference.voxel_size_mm)
    generated_pca = pca_features(reference.pca, generated)
    reference_descriptors, generated_descriptors = descriptor_features(
        reference.reference_measures, measures)
    values = distribution_metrics(matrices)
    values += feature_metrics(reference.reference_pca, generated_pca, "pca")
    values += feature_metrics(reference_descriptors, generated_descriptors, "descriptors")
    values += diversity_metrics(reference.reference, generated, config.diversity_pairs, seed=seed,
                                reference_level=reference.reference_diversity)
    train_dice = dice_matrix(reference.train, generated)
    values += nearest_dice_metrics(train_dice, dice_matrix(reference.reference, generated))
    privacy = privacy_report(1.0 - reference.train_reference_dice, 1.0 - train_dice,
                             distance_tag="Dice", unit="")
    values += privacy.metrics()
    values += wasserstein_metrics(reference.reference_measures, measures)
    values += failure_report(reference.train_measures, measures).metrics()
    if reference.train_labels is not None and reference.class_names:
        values += class_balance(reference.train_pca, reference.train_labels, generated_pca,
                                reference.class_names, "pca").metrics()
    return Evaluation(values, privacy)
