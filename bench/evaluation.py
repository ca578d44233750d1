"""Evaluation: every registered metric of one generated set, against the run's reference.

The real skulls' side (point sets, features, measures, the training-to-test
Dice) is a :class:`~metrics.inputs.ReferenceSet` built once per run and
shared by every cell and step budget; each call of :func:`evaluate` scores
one generated set with every selected metric of the registry
(:data:`metrics.base.METRICS`), computing each shared input once and only
when a metric reads it. A metric of a plugin takes part like a built-in.

The harness supplies the feature maps that metrics must not build
themselves: ``"pca"``, a whitened pca of the training split (k =
``metrics.feature_components``, capped at the training split's size minus
one so that small imported datasets work), and with ``metrics.encoder`` the
learned ``"ae"`` map: pooled features of the evaluation autoencoder (fitted on
the training split with a seed of its own and cached, see
:mod:`bench.representations.cache`) or of a pretrained encoder file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch

import metrics  # noqa: F401  (registers the built-in metrics)
from bench.config import EVALUATION_AUTOENCODER, MetricsConfig
from bench.core.errors import BenchError
from bench.core.values import MetricValue
from bench.data.dataset import SkullDataset
from bench.representations import AutoencoderRepresentation, get_representation
from bench.representations.cache import cached_representation
from metrics.base import METRICS, Metric
from metrics.inputs import FeatureMap, GeneratedSet, ReferenceSet
from metrics.privacy import ClosestRecords, closest_records


@dataclass
class Evaluation:
    """Every metric of one generated set, and the set itself (for per-sample records).

    Attributes:
        values: the metrics' values, in registry order.
        generated: the scored set, with its cached inputs.
    """

    values: list[MetricValue]
    generated: GeneratedSet

    def closest_training_records(self) -> ClosestRecords:
        """Each sample's nearest training skull and its DCR (1 - Dice)."""
        return closest_records(1.0 - self.generated.train_dice)


def selected_metrics(config: MetricsConfig) -> list[Metric]:
    """The registered metrics less ``config.exclude``, built with ``config.params``.

    Raises:
        BenchError: an excluded or parametrised name that is not a registered
            metric, or a bad hyperparameter (names the key and the fix).
    """
    names = METRICS.names()
    for key, given in (("metrics.exclude", config.exclude), ("metrics.params", config.params)):
        for name in given:
            if name not in names:
                try:
                    METRICS.get(name)
                except BenchError as error:
                    raise BenchError(f"config {key}: {error}") from None
    return [METRICS.create(name, **config.params.get(name, {}))
            for name in names if name not in config.exclude]


def pca_feature_map(train: np.ndarray, n_components: int) -> FeatureMap:
    """Whitened pca latents, fitted on the training volumes only, as float64 features.

    Raises:
        BenchError: fewer than 3 training skulls (a pca of one component needs 2,
            and a feature space of one dimension cannot rank anything).
    """
    if len(train) < 3:
        raise BenchError(f"metrics: the pca feature map needs at least 3 training skulls, the "
                         f"dataset has {len(train)}; import more skulls")
    components = min(n_components, len(train) - 1)
    pca = get_representation("pca", n_components=components).fit(train)
    return lambda volumes: pca.encode(volumes).double().numpy()


def encoder_feature_map(dataset: SkullDataset, config: MetricsConfig,
                        progress: bool = False) -> FeatureMap:
    """The ``"ae"`` feature map of ``config.encoder``: the evaluation autoencoder (fitted
    once per dataset and code, then cached) or a pretrained encoder file."""
    if config.encoder == "ae":
        params = {**EVALUATION_AUTOENCODER, **config.encoder_params}
        cached = cached_representation("ae", params, dataset, progress=progress)
        return cast(AutoencoderRepresentation, cached.representation).features
    return pretrained_feature_map(Path(config.encoder))


def pretrained_feature_map(path: Path) -> FeatureMap:
    """Pooled features of a TorchScript encoder file, run on the CPU in batches of 8.

    The encoder takes occupancy (B, 1, R, R, R) in {0, 1} as float32; outputs of
    more than two dimensions (B, F, ...) are averaged over the trailing ones.

    Raises:
        BenchError: a file that torch.jit.load cannot read.
    """
    try:
        encoder = torch.jit.load(str(path), map_location="cpu").eval()
    except (RuntimeError, ValueError, OSError) as error:
        raise BenchError(f"config metrics.encoder: {path} is not a TorchScript encoder "
                         f"({str(error).splitlines()[0][:200]}); save one with "
                         f"torch.jit.save(torch.jit.script(model), path)") from error

    @torch.no_grad()
    def features(volumes: np.ndarray) -> np.ndarray:
        occupancy = torch.from_numpy(np.asarray(volumes, dtype=np.float32))[:, None]
        pooled = [_pooled(encoder(chunk), path) for chunk in occupancy.split(8)]
        return torch.cat(pooled).double().numpy()

    return features


def _pooled(output: torch.Tensor, path: Path) -> torch.Tensor:
    if not isinstance(output, torch.Tensor) or output.ndim < 2:
        raise BenchError(f"config metrics.encoder: {path} must return a tensor (B, F) or "
                         f"(B, F, ...), got {getattr(output, 'shape', type(output).__name__)}")
    return output.flatten(2).mean(dim=2) if output.ndim > 2 else output


def build_reference(dataset: SkullDataset, config: MetricsConfig, threads: int = 1,
                    progress: bool = False) -> ReferenceSet:
    """The real side, once: the configured reference split against the training split."""
    train = dataset.subset("train")
    reference = dataset.subset(config.reference_split)
    if len(reference) < 2:
        raise BenchError(f"metrics.reference_split={config.reference_split!r}: the dataset "
                         f"{dataset.name!r} has {len(reference)} skulls in that split, and "
                         f"the set metrics need at least 2; choose another split or import "
                         f"more skulls")
    feature_maps = {"pca": pca_feature_map(train.volumes, config.feature_components)}
    if config.encoder:
        feature_maps["ae"] = encoder_feature_map(dataset, config, progress)
    return ReferenceSet(reference.volumes, train.volumes, dataset.voxel_size_mm,
                        feature_maps=feature_maps,
                        train_labels=train.labels, class_names=dataset.class_names,
                        points_per_shape=config.points, threads=threads)


def evaluate(reference: ReferenceSet, volumes: np.ndarray, seed: int,
             chosen: list[Metric]) -> Evaluation:
    """Score generated volumes (M, R, R, R) with each metric of ``chosen`` that applies."""
    generated = GeneratedSet(reference, volumes, seed)
    values: list[MetricValue] = []
    for metric in chosen:
        if metric.applies_to(reference):
            values += metric.evaluate(reference, generated)
    return Evaluation(values, generated)
