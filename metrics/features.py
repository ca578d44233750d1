"""Distribution metrics in a feature embedding: kernel MMD, PRDC and class balance.

No pretrained medical encoder can be downloaded here, so two documented
feature maps stand in for one (the inputs of :mod:`metrics.inputs`):

- ``"pca"``: the whitened latent of a ``pca`` representation (k = 32 by
  default, ``metrics.feature_components``) that the harness fits on the
  training volumes only; every latent has unit variance on them.
- ``"descriptors"``: the anatomical measures of :mod:`metrics.measures` (bone
  volume, cranial length, width, skull height, cephalic index, symmetry error)
  standardised by the reference set's mean and standard deviation.

The metrics (argument order (reference, generated) everywhere):

- ``KMMD-<features>``: the unbiased estimate of the squared maximum mean
  discrepancy (Gretton et al. 2012, JMLR, eq. 3) with a Gaussian RBF kernel
  ``k(x, y) = exp(-|x - y|^2 / (2 sigma^2))``; sigma is the median heuristic,
  the median Euclidean distance between distinct points of the pooled set
  reference ∪ generated. Dimensionless, lower is better, 0 in expectation
  when both sets come from one distribution (the estimate can be negative).
- ``PRDC-precision``, ``-recall``, ``-density``, ``-coverage`` (Naeem et al.
  2020, "Reliable fidelity and diversity metrics for generative models",
  and their reference code): k-nearest-neighbour balls with k = 5
  around each reference point (and, for recall, around each generated
  point); membership is strict (distance < radius), as in that code.
  Precision, recall and coverage lie in [0, 1]; density has expectation 1
  for a sample from the reference distribution and may exceed 1. All higher
  is better. These are not PointFlow's ``COV-CD``/``COV-EMD`` (coverage by
  nearest-neighbour matching under a point-set distance), hence the prefix.
- ``class-TV-<features>`` and ``class-freq-<class>-<features>`` (group
  "anatomy"): generated samples are labelled by a k-nearest-neighbour
  classifier trained on the training labels in the feature space; see
  :func:`class_balance`.

Registered as ``feature-pca`` and ``feature-descriptors`` (KMMD and PRDC) and
``class-balance``; the pure functions take feature arrays::

    rows = kernel_mmd(reference_features, generated_features)
    scores = prdc(reference_features, generated_features, k=5)

On synthskull at 64^3 (800 training, 100 test skulls), the 1-nearest-neighbour
classifier labels test skulls correctly 91 % of the time on pca features
(every trigonocephaly right) and 79 % on descriptors (which
miss trigonocephaly): prefer the pca features for class balance.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from monai.metrics.fid import get_fid_score
from scipy.spatial.distance import cdist, pdist

from bench.core.errors import BenchError
from bench.core.values import ValueSpec
from metrics.base import Metric, Params, register_metric

PRDC_K = 5
PRDC_NAMES = ("precision", "recall", "density", "coverage")


# ------------------------------------------------------------------------- kernel MMD

def median_bandwidth(features: np.ndarray) -> float:
    """Median heuristic: the median Euclidean distance between distinct rows of (N, d).

    The median of the non-zero distances when more than half are zero
    (duplicated points); 1 when all points coincide (the MMD is then 0 for
    every bandwidth).
    """
    distances = pdist(np.asarray(features, dtype=np.float64))
    median = float(np.median(distances)) if len(distances) else 0.0
    if median > 0:
        return median
    positive = distances[distances > 0]
    return float(np.median(positive)) if len(positive) else 1.0


def gaussian_kernel(x: np.ndarray, y: np.ndarray, bandwidth: float) -> np.ndarray:
    """``exp(-|x_i - y_j|^2 / (2 bandwidth^2))`` for rows of x (N, d) and y (M, d): (N, M)."""
    return np.exp(-cdist(x, y, "sqeuclidean") / (2.0 * bandwidth ** 2))


def kernel_mmd(reference: np.ndarray, generated: np.ndarray,
               bandwidth: float | None = None) -> float:
    """Unbiased squared MMD with a Gaussian kernel (Gretton et al. 2012, eq. 3).

    MMD_u^2 = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j)
              - 2/(mn) sum_{i, j} k(x_i, y_j)

    Args:
        reference: features x (m, d), m >= 2.
        generated: features y (n, d), n >= 2.
        bandwidth: kernel sigma; None for the median heuristic on x ∪ y.
    """
    x, y = _check_pair(reference, generated, minimum=2)
    sigma = median_bandwidth(np.concatenate([x, y])) if bandwidth is None else bandwidth
    m, n = len(x), len(y)
    k_xx = gaussian_kernel(x, x, sigma)
    k_yy = gaussian_kernel(y, y, sigma)
    k_xy = gaussian_kernel(x, y, sigma)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * k_xy.mean())


# ------------------------------------------------------------------------------ PRDC

@dataclass(frozen=True)
class PRDC:
    """Precision, recall, density and coverage (Naeem et al. 2020)."""

    precision: float
    recall: float
    density: float
    coverage: float


def knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row of (N, d) to its k-th nearest other row, (N,)."""
    distances = cdist(features, features)
    # Column 0 of the sorted rows is the point itself (distance 0).
    return np.partition(distances, k, axis=1)[:, k]


def prdc(reference: np.ndarray, generated: np.ndarray, k: int = PRDC_K) -> PRDC:
    """Precision, recall, density and coverage of generated features (M, d).

    With real points X (N), fake points Y (M), r_i the distance from X_i to
    its k-th nearest real neighbour and s_j that of Y_j among the fakes:

        precision = 1/M sum_j 1[exists i: |Y_j - X_i| < r_i]
        recall    = 1/N sum_i 1[exists j: |X_i - Y_j| < s_j]
        density   = 1/(kM) sum_j sum_i 1[|Y_j - X_i| < r_i]
        coverage  = 1/N sum_i 1[min_j |X_i - Y_j| < r_i]

    Args:
        reference: real features (N, d), N > k.
        generated: generated features (M, d), M > k.
        k: neighbourhood size.
    """
    x, y = _check_pair(reference, generated, minimum=k + 1)
    real_radii = knn_radii(x, k)
    fake_radii = knn_radii(y, k)
    distances = cdist(x, y)
    inside_real = distances < real_radii[:, None]
    return PRDC(
        precision=float(inside_real.any(0).mean()),
        recall=float((distances < fake_radii[None, :]).any(1).mean()),
        density=float(inside_real.sum() / (k * len(y))),
        coverage=float((distances.min(1) < real_radii).mean()),
    )


@dataclass(frozen=True)
class PRDCParams(Params):
    """Neighbourhood size of PRDC's k-nearest-neighbour balls."""

    k: int = PRDC_K


class FeatureDistribution(Metric):
    """KMMD and PRDC of generated features against reference features in one feature map.

    A subclass names its feature map in ``features``. A feature vector that is
    not finite gives NaN for every value (never a score).
    """

    features: ClassVar[str] = ""
    group = "distribution"
    inputs = ("features",)
    Params = PRDCParams
    params: PRDCParams

    @classmethod
    def specs(cls, features: str, tags: frozenset[str] = frozenset()) -> tuple[ValueSpec, ...]:
        """The KMMD and four PRDC outputs for feature map ``features``."""
        return (ValueSpec(f"KMMD-{features}", False, "", tags),) + tuple(
            ValueSpec(f"PRDC-{name}-{features}", True, "") for name in PRDC_NAMES)

    def minimum_set_size(self) -> int:
        return self.params.k + 1  # k nearest neighbours other than the point itself

    def compute(self, reference: Any, generated: Any) -> dict[str, float]:
        ref, gen = reference.features(self.features), generated.features(self.features)
        if not (np.isfinite(ref).all() and np.isfinite(gen).all()):
            return {spec.name: float("nan") for spec in self.outputs}
        scores = prdc(ref, gen, self.params.k)
        values = {f"KMMD-{self.features}": kernel_mmd(ref, gen)}
        values.update({f"PRDC-{name}-{self.features}": getattr(scores, name)
                       for name in PRDC_NAMES})
        return values


@register_metric("feature-pca")
class PCAFeatureDistribution(FeatureDistribution):
    """KMMD and PRDC on the training split's whitened pca latent."""

    description = "kernel MMD and PRDC (k = 5) on the training split's whitened pca features"
    features = "pca"
    outputs = FeatureDistribution.specs("pca", frozenset({"robustness"}))


@register_metric("feature-ae")
class EncoderFeatureDistribution(FeatureDistribution):
    """Fréchet distance, KMMD and PRDC on pooled features of a learned 3D encoder.

    The encoder is the run's evaluation autoencoder (fitted on the training
    split with a seed of its own, apart from any representation a method
    generates in) or a pretrained encoder from disk (``metrics.encoder``); the
    harness supplies it as the feature map ``"ae"``, and the metric applies only
    where it does.

    ``FD-ae`` is the Fréchet distance between Gaussians fitted to the two
    feature sets (Heusel et al. 2017, eq. 6; MONAI's ``get_fid_score``):
    ``|mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))``. Its estimate is
    biased upwards at finite sample size (Chong & Forsyth 2020): two sets of n
    real skulls score above 0, and the more so the smaller n, so values are
    comparable only at one set size; the oracle row and the reference facts'
    ``fd_ae_real`` (validation against reference skulls) give that bias. A
    product of covariances whose square root is not real gives NaN, never a
    score.
    """

    description = ("Fréchet distance, kernel MMD and PRDC (k = 5) on pooled features of the "
                   "evaluation autoencoder (or metrics.encoder)")
    features = "ae"
    outputs = (ValueSpec("FD-ae", False, "", frozenset({"robustness"})),) + \
        FeatureDistribution.specs("ae")

    @classmethod
    def applies_to(cls, reference: Any) -> bool:
        return cls.features in reference.feature_names

    def compute(self, reference: Any, generated: Any) -> dict[str, float]:
        values = super().compute(reference, generated)
        ref, gen = reference.features(self.features), generated.features(self.features)
        finite = np.isfinite(ref).all() and np.isfinite(gen).all()
        values["FD-ae"] = frechet_distance(ref, gen) if finite else float("nan")
        return values


def frechet_distance(reference: np.ndarray, generated: np.ndarray) -> float:
    """Fréchet distance between Gaussian fits of features (N, d) and (M, d), by MONAI's
    ``get_fid_score``; NaN where the matrix square root has a large imaginary part."""
    x, y = _check_pair(reference, generated, minimum=2)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # MONAI prints when it regularises
            score = get_fid_score(torch.from_numpy(y), torch.from_numpy(x))
    except ValueError:
        return float("nan")
    return float(score)


@register_metric("feature-descriptors")
class DescriptorFeatureDistribution(FeatureDistribution):
    """KMMD and PRDC on standardised anatomy descriptors."""

    description = "kernel MMD and PRDC (k = 5) on standardised anatomy descriptors"
    features = "descriptors"
    outputs = FeatureDistribution.specs("descriptors")


def _check_pair(reference: np.ndarray, generated: np.ndarray, minimum: int
                ) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(reference, dtype=np.float64)
    y = np.asarray(generated, dtype=np.float64)
    for name, f in (("reference", x), ("generated", y)):
        if f.ndim != 2 or len(f) < minimum:
            raise BenchError(f"{name} features must be an array (N, d) with N >= {minimum}, "
                             f"got shape {f.shape}")
        if not np.all(np.isfinite(f)):
            raise BenchError(f"{name} features hold NaN or inf values")
    if x.shape[1] != y.shape[1]:
        raise BenchError(f"reference features have {x.shape[1]} dimensions and generated "
                         f"features {y.shape[1]}; use one feature map for both")
    return x, y


# ---------------------------------------------------------------------- class balance

def nearest_neighbour_labels(train_features: np.ndarray, train_labels: np.ndarray,
                             query_features: np.ndarray, k: int = 1) -> np.ndarray:
    """Labels of queries by majority vote of their k nearest training points.

    Ties go to the tied class whose member is nearest to the query.

    Args:
        train_features: (N, d).
        train_labels: int (N,).
        query_features: (M, d).
        k: number of neighbours, 1 <= k <= N.

    Returns:
        int64 (M,) predicted labels.
    """
    train_labels = np.asarray(train_labels, dtype=np.int64)
    if not 1 <= k <= len(train_labels):
        raise BenchError(f"k must lie between 1 and the {len(train_labels)} training points, "
                         f"got {k}")
    distances = cdist(np.asarray(query_features, np.float64),
                      np.asarray(train_features, np.float64))
    nearest = np.argsort(distances, axis=1, kind="stable")[:, :k]
    votes = train_labels[nearest]
    predicted = np.empty(len(votes), dtype=np.int64)
    for row, labels in enumerate(votes):
        classes, first, counts = np.unique(labels, return_index=True, return_counts=True)
        winners = np.flatnonzero(counts == counts.max())
        predicted[row] = classes[winners[np.argmin(first[winners])]]
    return predicted


@dataclass(frozen=True)
class ClassBalance:
    """Predicted classes of generated samples against the reference class frequencies.

    Attributes:
        class_names: C names.
        predicted: int64 (M,) predicted class of each generated sample, -1 for the
            samples that were not classified (empty volumes).
        generated_frequency: float64 (C,) share of all generated samples per class.
        reference_frequency: float64 (C,) share of labelled reference samples per class.
        rare: bool (C,), classes rarer than uniform (reference share < 1 / C).
        features: the feature map's tag.
    """

    class_names: tuple[str, ...]
    predicted: np.ndarray
    generated_frequency: np.ndarray
    reference_frequency: np.ndarray
    rare: np.ndarray
    features: str

    @property
    def total_variation(self) -> float:
        """Total-variation distance between the two frequencies, unclassified samples a class
        of their own: 1/2 (sum_c |p_c - q_c| + p_unclassified)."""
        unclassified = 1.0 - float(self.generated_frequency.sum())
        gap = np.abs(self.generated_frequency - self.reference_frequency).sum()
        return 0.5 * float(gap + unclassified)

    def values(self) -> dict[str, float]:
        """``class-TV-<features>`` and ``class-freq-<rare class>-<features>``, in %.

        A rare class's generated frequency is reported with higher is better:
        dropping it (frequency near 0) is the failure of interest; read it
        against the reference frequency (:attr:`reference_frequency`).
        """
        values = {f"class-TV-{self.features}": 100.0 * self.total_variation}
        for c in np.flatnonzero(self.rare):
            values[f"class-freq-{self.class_names[c]}-{self.features}"] = (
                100.0 * float(self.generated_frequency[c]))
        return values


def class_balance(reference_features: np.ndarray, reference_labels: np.ndarray,
                  generated_features: np.ndarray, class_names: tuple[str, ...],
                  features: str, k: int = 1,
                  classifiable: np.ndarray | None = None) -> ClassBalance:
    """Label generated samples with a k-NN classifier trained on the labelled reference.

    Reference samples labelled -1 (unknown) are left out of the classifier and
    of the reference frequencies. k = 1 by default: a majority vote over more
    neighbours pulls samples towards the most frequent class, which would hide
    the rare classes this is meant to watch. Samples outside ``classifiable``
    (empty volumes: no skull to classify) get label -1 and count in no class,
    so that they lower every class's frequency.

    Args:
        reference_features: (N, d) features of the training skulls.
        reference_labels: int (N,) indices into ``class_names``, -1 where unknown.
        generated_features: (M, d), same feature map.
        class_names: the C class names.
        features: the feature map's tag, for metric names.
        k: number of neighbours.
        classifiable: bool (M,), the samples to classify; None for all.
    """
    labels = np.asarray(reference_labels, dtype=np.int64)
    known = labels >= 0
    n_classes = len(class_names)
    if not known.any() or labels.max() >= n_classes:
        raise BenchError(f"reference labels must index the {n_classes} class names and not "
                         f"all be -1; got labels in [{labels.min()}, {labels.max()}]")
    features_known = np.asarray(reference_features)[known]
    generated_features = np.asarray(generated_features)
    chosen = (np.ones(len(generated_features), dtype=bool) if classifiable is None
              else np.asarray(classifiable, dtype=bool))
    predicted = np.full(len(generated_features), -1, dtype=np.int64)
    if chosen.any():
        predicted[chosen] = nearest_neighbour_labels(features_known, labels[known],
                                                     generated_features[chosen], k)
    reference_frequency = np.bincount(labels[known], minlength=n_classes) / known.sum()
    counts = np.bincount(predicted[predicted >= 0], minlength=n_classes)
    return ClassBalance(
        class_names=tuple(class_names),
        predicted=predicted,
        generated_frequency=counts / len(predicted),
        reference_frequency=reference_frequency,
        rare=reference_frequency < 1.0 / n_classes,
        features=features,
    )


@register_metric("class-balance")
class ClassBalanceMetric(Metric):
    """Class frequencies of samples, labelled by 1-NN on pca features of the training split.

    Empty samples, and samples whose features are not finite, are not classified.
    """

    description = ("class frequencies of samples labelled by 1-NN on the training split's pca "
                   "features: total variation, and each rare class's share")
    group = "anatomy"
    inputs = ("features", "train", "volumes")
    outputs = (ValueSpec("class-TV-pca", False, "%"), ValueSpec("class-freq-*-pca", True, "%"))

    @classmethod
    def applies_to(cls, reference: Any) -> bool:
        return reference.train_labels is not None and bool(reference.class_names)

    def compute(self, reference: Any, generated: Any) -> dict[str, float]:
        features = generated.features("pca")
        balance = class_balance(reference.train_features("pca"), reference.train_labels,
                                features, reference.class_names, "pca",
                                classifiable=~generated.empty & np.isfinite(features).all(1))
        return balance.values()
