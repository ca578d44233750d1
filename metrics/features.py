"""Distribution metrics in a feature embedding: kernel MMD, PRDC and class balance.

No pretrained medical encoder can be downloaded here, so two documented
feature maps stand in for one:

- ``"pca"``: the whitened latent of a ``pca`` representation
  (:mod:`bench.representations.pca`, k = 32 by default) fitted on the
  reference (training) volumes only; every latent has unit variance on them.
- ``"descriptors"``: the anatomical measures of :mod:`metrics.anatomy` (bone
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
  classifier trained on the reference labels in the feature space; see
  :func:`class_balance`.

Typical use, with the training split as the reference::

    pca = fit_pca_features(train.volumes)
    ref, gen = pca_features(pca, train.volumes), pca_features(pca, samples)
    rows = feature_metrics(ref, gen, "pca")
    rows += class_balance(ref, train.labels, gen, train.class_names, "pca").metrics()
    h = train.voxel_size_mm
    descriptors = descriptor_features(measure_volumes(train.volumes, h),
                                      measure_volumes(samples, h))
    rows += feature_metrics(*descriptors, "descriptors")

On synthskull at 64^3 (800 training, 100 test skulls), the 1-nearest-neighbour
classifier labels test skulls correctly 91 % of the time on pca features
(every trigonocephaly right) and 79 % on descriptors (which
miss trigonocephaly): prefer the pca features for class balance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import cdist, pdist

from bench.errors import BenchError
from bench.representations import PCARepresentation, get_representation
from metrics.anatomy import AnatomyMeasures
from metrics.base import MetricValue

PRDC_K = 5
PCA_COMPONENTS = 32
DESCRIPTORS = ("bone_volume_ml", "cranial_length_mm", "cranial_width_mm", "skull_height_mm",
               "cephalic_index", "symmetry_error_mm")
"""The anatomy measures that make up the ``"descriptors"`` feature vector, in order."""


# ------------------------------------------------------------------- feature maps

def fit_pca_features(reference: np.ndarray, n_components: int = PCA_COMPONENTS
                     ) -> PCARepresentation:
    """A ``pca`` representation fitted on the reference (training) volumes (N, R, R, R) only."""
    return get_representation("pca", n_components=n_components).fit(reference)


def pca_features(pca: PCARepresentation, volumes: np.ndarray) -> np.ndarray:
    """Whitened pca latents of bool volumes (N, R, R, R), float64 (N, k)."""
    return pca.encode(volumes).double().numpy()


def descriptor_features(reference: AnatomyMeasures, *others: AnatomyMeasures
                        ) -> list[np.ndarray]:
    """Standardised anatomy descriptors of the reference set and of each other set.

    Each of the :data:`DESCRIPTORS` is centred and scaled by the reference
    set's mean and standard deviation (a measure with zero spread is only
    centred). A measure that is undefined for a sample (NaN, e.g. the cephalic
    index of an empty volume) is set to the reference mean, 0 after scaling;
    such a sample still lies far away through its zero volume and extents.

    Returns:
        [reference (N, 6), then one (M_i, 6) per other set], float64.
    """
    ref = reference.stack(DESCRIPTORS)
    mean = np.nanmean(ref, axis=0)
    std = np.nanstd(ref, axis=0)
    std = np.where(std > 0, std, 1.0)
    out = []
    for measures in (reference,) + others:
        scaled = (measures.stack(DESCRIPTORS) - mean) / std
        out.append(np.where(np.isfinite(scaled), scaled, 0.0))
    return out


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


def feature_metrics(reference: np.ndarray, generated: np.ndarray, features: str,
                    k: int = PRDC_K) -> list[MetricValue]:
    """``KMMD-<features>`` and the four ``PRDC-*-<features>`` rows (group "distribution").

    Args:
        reference: reference features (N, d).
        generated: generated features (M, d) from the same feature map.
        features: the feature map's tag, ``"pca"`` or ``"descriptors"``.
        k: PRDC neighbourhood size.
    """
    scores = prdc(reference, generated, k)
    rows = [MetricValue(f"KMMD-{features}", kernel_mmd(reference, generated), False, "",
                        "distribution")]
    for name in ("precision", "recall", "density", "coverage"):
        rows.append(MetricValue(f"PRDC-{name}-{features}", getattr(scores, name), True, "",
                                "distribution"))
    return rows


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
        predicted: int64 (M,) predicted class of each generated sample.
        generated_frequency: float64 (C,) share of generated samples per class.
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
        """Total-variation distance 1/2 sum_c |p_c - q_c| between the two frequencies."""
        return 0.5 * float(np.abs(self.generated_frequency - self.reference_frequency).sum())

    def metrics(self) -> list[MetricValue]:
        """``class-TV-<features>`` (%, lower is better) and ``class-freq-<rare class>-<features>``.

        A rare class's generated frequency (%) is reported with higher is better:
        dropping it (frequency near 0) is the failure of interest; read it
        against the reference frequency (:attr:`reference_frequency`).
        """
        rows = [MetricValue(f"class-TV-{self.features}", 100.0 * self.total_variation, False,
                            "%", "anatomy")]
        for c in np.flatnonzero(self.rare):
            rows.append(MetricValue(f"class-freq-{self.class_names[c]}-{self.features}",
                                    100.0 * float(self.generated_frequency[c]), True, "%",
                                    "anatomy"))
        return rows


def class_balance(reference_features: np.ndarray, reference_labels: np.ndarray,
                  generated_features: np.ndarray, class_names: tuple[str, ...],
                  features: str, k: int = 1) -> ClassBalance:
    """Label generated samples with a k-NN classifier trained on the labelled reference.

    Reference samples labelled -1 (unknown) are left out of the classifier and
    of the reference frequencies. k = 1 by default: a majority vote over more
    neighbours pulls samples towards the most frequent class, which would hide
    the rare classes this is meant to watch.

    Args:
        reference_features: (N, d) features of the training skulls.
        reference_labels: int (N,) indices into ``class_names``, -1 where unknown.
        generated_features: (M, d), same feature map.
        class_names: the C class names.
        features: the feature map's tag, for metric names.
        k: number of neighbours.
    """
    labels = np.asarray(reference_labels, dtype=np.int64)
    known = labels >= 0
    n_classes = len(class_names)
    if not known.any() or labels.max() >= n_classes:
        raise BenchError(f"reference labels must index the {n_classes} class names and not "
                         f"all be -1; got labels in [{labels.min()}, {labels.max()}]")
    features_known = np.asarray(reference_features)[known]
    predicted = nearest_neighbour_labels(features_known, labels[known], generated_features, k)
    reference_frequency = np.bincount(labels[known], minlength=n_classes) / known.sum()
    return ClassBalance(
        class_names=tuple(class_names),
        predicted=predicted,
        generated_frequency=np.bincount(predicted, minlength=n_classes) / len(predicted),
        reference_frequency=reference_frequency,
        rare=reference_frequency < 1.0 / n_classes,
        features=features,
    )
