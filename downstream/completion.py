"""Skull completion: design the implant that fills a cranial defect.

Test cases: every test skull gets ``defects_per_skull`` defects from
:func:`~downstream.defects.cut_defect`, cycling through the types
(bilateral, frontoorbital, parietotemporal, random); defect j of skull i draws
from ``numpy.random.default_rng([seed, i, j, 2])``, so all training sets
scored with one seed meet the same defects.

What the models see: the defective skull *and the defect region* (the
region from which all bone was removed; see :mod:`downstream.defects`), as
statistical shape model baselines of the completion literature do; where
the bone should be inside it is what they predict. The predicted implant is
the completed skull inside the region (the defective skull has no bone there,
so this is "completed minus defective" within the region).

Models, chosen by ``model``:

- ``"ssm"`` (CPU default): a PCA shape model of the training occupancy whose
  coefficients are fitted in closed form to the voxels outside the region
  (:class:`ShapeModelCompleter`).
- ``"unet"`` (GPU presets): a MONAI BasicUNet that maps (defective skull,
  region) to the implant, trained on defects cut on the fly from the training
  skulls (:class:`UNetCompleter`).

Scores, averaged over the defects (:mod:`downstream.overlap`): Dice, border
Dice within ``border_mm`` (10 mm) of the defect border, and the 95th-
percentile Hausdorff distance (mm) of the predicted implant to the true one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch
from monai.networks.nets import BasicUNet

from bench.data.dataset import SkullDataset
from bench.core.errors import BenchError
from bench.core.values import ValueSpec
from downstream.base import (DegenerateTrainingSet, Params, Task, check_choice,
                             check_counts, check_positive, register_task)
from downstream.defects import DEFECT_KINDS, Defect, DefectError, DefectParams, cut_defect
from downstream.overlap import implant_scores

MODELS = ("ssm", "unet")
DEFECT_STREAM = 2
"""Last entry of the per-defect seed ``[seed, skull, defect, DEFECT_STREAM]`` of test defects."""
RANK_RTOL = 1e-10
"""Gram eigenvalues below this fraction of the largest are rank deficiency, not variance."""
NOISE_FLOOR = 1e-6
"""Smallest voxel noise variance of the shape model (keeps its normal equations regular)."""


@dataclass(frozen=True)
class CompletionParams(Params):
    """Hyperparameters of the completion task.

    Attributes:
        model: ``"ssm"`` or ``"unet"``.
        n_components: principal components of the shape model (at most N - 1).
        ridge: weight of the shape model's prior (1: the posterior mean; see
            :class:`ShapeModelCompleter`).
        defects_per_skull: test defects per test skull.
        border_mm: half-width of the border band of the border Dice.
        defect: how defects are cut (test cases and U-Net training).
        unet_features: BasicUNet's six feature widths.
        unet_steps, unet_batch_size, unet_learning_rate: U-Net training budget.
    """

    model: str = "ssm"
    n_components: int = 32
    ridge: float = 1.0
    defects_per_skull: int = 1
    border_mm: float = 10.0
    defect: DefectParams = field(default_factory=DefectParams)
    unet_features: tuple[int, ...] = (16, 16, 32, 64, 128, 16)
    unet_steps: int = 2000
    unet_batch_size: int = 2
    unet_learning_rate: float = 1e-3


# ------------------------------------------------------------------ statistical shape model

class ShapeModelCompleter:
    """Complete a skull with a PCA shape model fitted to the voxels outside the defect.

    With the training occupancy's mean m, orthonormal principal components
    V (k rows) with variances s^2 (k,), a defective skull x and the set K of
    voxels outside its defect region, the coefficients b minimise

        || x_K - m_K - V_K^T b ||^2 + ridge * sigma^2 * sum_j b_j^2 / s_j^2,

    the posterior mean of b under the prior b ~ N(0, diag(s^2)) and voxel
    noise of variance sigma^2 (as in probabilistic PCA, Tipping and Bishop
    1999, sigma^2 is the training variance left outside the k components,
    averaged over the voxels of the support). The closed form is

        (V_K V_K^T + ridge sigma^2 diag(s^-2)) b = V_K (x_K - m_K),

    with V_K V_K^T = V V^T - V_U V_U^T and V_K (x_K - m_K) = V (x - m) -
    V_U (x_U - m_U), U the (small) defect region: each skull costs one
    product with V and work on its region only. The completed occupancy
    m + V^T b, thresholded at 0.5 inside the region, is the implant.

    Everything lives on the *support*, the voxels that are bone in at least one
    training skull (about 14 % of a 64^3 grid for synthskull): elsewhere the
    mean and every component are exactly zero, so nothing changes but the cost.
    The components come from the eigendecomposition of the N x N Gram matrix of
    the centred training rows, as in :mod:`bench.representations.pca`.
    """

    def __init__(self, n_components: int, ridge: float) -> None:
        self.n_components = n_components
        self.ridge = ridge

    def fit(self, volumes: np.ndarray) -> "ShapeModelCompleter":
        """Fit to bool training volumes (N, R, R, R); return ``self``."""
        n = len(volumes)
        flat = volumes.reshape(n, -1)
        self.shape_ = volumes.shape[1:]
        self.support_ = np.flatnonzero(flat.any(axis=0))
        rows = flat[:, self.support_].astype(np.float32)
        self.mean_ = rows.mean(axis=0, dtype=np.float64)
        centred = rows - self.mean_.astype(np.float32)
        gram = (centred @ centred.T).astype(np.float64)
        eigenvalues, eigenvectors = np.linalg.eigh(gram)
        order = np.argsort(eigenvalues)[::-1][:min(self.n_components, n - 1)]
        order = order[eigenvalues[order] > RANK_RTOL * max(eigenvalues.max(initial=0.0), 1e-300)]
        weights = eigenvectors[:, order].T / np.sqrt(eigenvalues[order])[:, None]
        self.components_ = (weights.astype(np.float32) @ centred).astype(np.float64)
        self.variance_ = eigenvalues[order] / max(n - 1, 1)
        total = float(np.trace(gram)) / max(n - 1, 1)
        spare = max(len(self.support_) - len(order), 1)
        self.noise_variance_ = max((total - float(self.variance_.sum())) / spare, NOISE_FLOOR)
        self.gram_ = self.components_ @ self.components_.T
        return self

    def complete(self, defective: np.ndarray, region: np.ndarray) -> np.ndarray:
        """Predicted implants, bool (B, R, R, R), for defective skulls and regions (B, R, R, R)."""
        return self.occupancy(defective, region) > 0.5

    def occupancy(self, defective: np.ndarray, region: np.ndarray) -> np.ndarray:
        """Completed occupancy m + V^T b inside each region, 0 outside; float (B, R, R, R)."""
        count = len(defective)
        x = defective.reshape(count, -1)[:, self.support_].astype(np.float64)
        projections = (x - self.mean_) @ self.components_.T
        occupancy = np.zeros((count, int(np.prod(self.shape_))))
        prior = np.diag(self.ridge * self.noise_variance_ / self.variance_)
        for b in range(count):
            inside = np.flatnonzero(region[b].ravel()[self.support_])
            components_u = self.components_[:, inside]
            rhs = projections[b] - components_u @ (x[b, inside] - self.mean_[inside])
            normal = self.gram_ - components_u @ components_u.T + prior
            coefficients = np.linalg.solve(normal, rhs) if len(rhs) else rhs
            occupancy[b, self.support_[inside]] = self.mean_[inside] + coefficients @ components_u
        return occupancy.reshape((count,) + tuple(self.shape_))


# ------------------------------------------------------------------------------ 3D U-Net

class UNetCompleter:
    """A MONAI BasicUNet from (defective skull, defect region) to the implant.

    Input (B, 2, R, R, R): the defective skull and the region as 0/1 channels;
    output (B, 1, R, R, R) implant logits, kept inside the region. Trained with
    binary cross-entropy plus soft Dice on defects cut on the fly from the
    training skulls (types drawn uniformly), Adam; R must be a multiple of 16.
    """

    def __init__(self, params: CompletionParams) -> None:
        self.params = params

    def fit(self, volumes: np.ndarray, voxel_size_mm: float, seed: int,
            device: torch.device) -> "UNetCompleter":
        """Train on bool volumes (N, R, R, R); return ``self``."""
        p = self.params
        if volumes.shape[1] % 16:
            raise BenchError(f"completion model 'unet': the grid size must be a multiple of "
                             f"16, got {volumes.shape[1]}; use model='ssm' or another "
                             f"resolution")
        rng = np.random.default_rng(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.network_ = BasicUNet(spatial_dims=3, in_channels=2, out_channels=1,
                                      features=p.unet_features).to(device)
        optimiser = torch.optim.Adam(self.network_.parameters(), lr=p.unet_learning_rate)
        self.losses_ = []
        self.network_.train()
        for _ in range(p.unet_steps):
            defects = [_random_defect(volumes, voxel_size_mm, rng, p.defect)
                       for _ in range(p.unet_batch_size)]
            inputs, target, region = _batch(defects, device)
            logits = self.network_(inputs)
            loss = completion_loss(logits, target, region)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            self.losses_.append(float(loss.detach()))
        self.network_.eval()
        self.device_ = device
        return self

    def complete(self, defective: np.ndarray, region: np.ndarray) -> np.ndarray:
        """Predicted implants, bool (B, R, R, R), for defective skulls and regions (B, R, R, R)."""
        implants = np.empty(defective.shape, dtype=bool)
        for b in range(len(defective)):
            inputs = torch.from_numpy(np.stack([defective[b], region[b]]).astype(np.float32))
            with torch.no_grad():
                logits = self.network_(inputs[None].to(self.device_))[0, 0].cpu().numpy()
            implants[b] = (logits > 0) & region[b]
        return implants


def completion_loss(logits: torch.Tensor, target: torch.Tensor, region: torch.Tensor
                    ) -> torch.Tensor:
    """Binary cross-entropy inside the region plus soft Dice of the implant, (B, 1, R, R, R)."""
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, weight=region,
                                                               reduction="sum")
    bce = bce / region.sum().clamp(min=1.0)
    probability = torch.sigmoid(logits) * region
    overlap = (probability * target).sum(dim=(1, 2, 3, 4))
    total = probability.sum(dim=(1, 2, 3, 4)) + target.sum(dim=(1, 2, 3, 4))
    soft_dice = (2 * overlap + 1.0) / (total + 1.0)
    return bce + (1 - soft_dice).mean()


def _random_defect(volumes: np.ndarray, voxel_size_mm: float, rng: np.random.Generator,
                   params: DefectParams, attempts: int = 20) -> Defect:
    """A defect of a random type in a random training skull (skipping skulls that fail)."""
    for _ in range(attempts):
        volume = volumes[rng.integers(len(volumes))]
        try:
            return cut_defect(volume, voxel_size_mm, DEFECT_KINDS[rng.integers(4)], rng, params)
        except DefectError:
            continue
    raise DegenerateTrainingSet(f"completion: no defect could be cut from {attempts} randomly "
                                f"chosen training skulls (too little vault bone)")


def _batch(defects: list[Defect], device: torch.device
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    inputs = np.stack([np.stack([d.defective, d.region]) for d in defects]).astype(np.float32)
    target = np.stack([d.implant for d in defects])[:, None].astype(np.float32)
    region = inputs[:, 1:2]
    return (torch.from_numpy(inputs).to(device), torch.from_numpy(target).to(device),
            torch.from_numpy(region).to(device))


# ------------------------------------------------------------------------------ the task

@register_task("completion")
class CompletionTask(Task):
    """Cranial implant design: shape-model or U-Net completion of SkullBreak-style defects."""

    description = "implant design for SkullBreak-style vault defects: PCA shape model or 3D U-Net"
    Params = CompletionParams
    metrics = (ValueSpec("completion-dice", True, "", {"headline"}),
               ValueSpec("completion-border-dice", True, ""),
               ValueSpec("completion-hd95-mm", False, "mm"))
    params: CompletionParams
    model_: ShapeModelCompleter | UNetCompleter

    def _check_params(self) -> None:
        self.params = p = _from_config(self.params)
        check_choice(self.name, "model", p.model, MODELS)
        check_counts(self.name, n_components=p.n_components,
                     defects_per_skull=p.defects_per_skull, unet_steps=p.unet_steps,
                     unet_batch_size=p.unet_batch_size)
        check_positive(self.name, ridge=p.ridge, border_mm=p.border_mm,
                       unet_learning_rate=p.unet_learning_rate)
        if len(p.unet_features) != 6:
            raise BenchError(f"task {self.name!r}: unet_features must have 6 widths, got "
                             f"{p.unet_features}")
        p.defect.check()

    def _train(self, volumes: np.ndarray, seed: int, device: torch.device) -> None:
        if not volumes.any():
            raise DegenerateTrainingSet(f"task {self.name!r}: none of the {len(volumes)} "
                                        f"training volumes has any bone")
        if self.params.model == "ssm":
            self.model_ = ShapeModelCompleter(self.params.n_components,
                                              self.params.ridge).fit(volumes)
        else:
            self.model_ = UNetCompleter(self.params).fit(volumes, self._voxel_size_mm(), seed,
                                                         device)

    def _evaluate(self, test: SkullDataset, seed: int, device: torch.device
                  ) -> dict[str, float]:
        defects = cut_test_defects(test, seed, self.params)
        predicted = self.model_.complete(np.stack([d.defective for d in defects]),
                                         np.stack([d.region for d in defects]))
        scores = [implant_scores(d.implant, p, d.defective, test.voxel_size_mm,
                                 self.params.border_mm) for d, p in zip(defects, predicted)]
        means = np.nanmean(np.array(scores), axis=0) if scores else [np.nan] * 3
        return dict(zip((spec.name for spec in self.metrics), map(float, means)))


def _from_config(params: CompletionParams) -> CompletionParams:
    """``params`` with a ``defect`` mapping and a ``unet_features`` list (as a YAML
    configuration gives them) turned into DefectParams and a tuple."""
    defect = params.defect
    if isinstance(defect, Mapping):
        allowed = {f.name for f in dataclasses.fields(DefectParams)}
        unknown = sorted(set(defect) - allowed)
        if unknown:
            raise BenchError(f"task 'completion': defect has no parameter {unknown}; allowed: "
                             f"{', '.join(sorted(allowed))}")
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in defect.items()}
        defect = DefectParams(**values)
    elif not isinstance(defect, DefectParams):
        raise BenchError(f"task 'completion': defect must be DefectParams or a mapping, got "
                         f"{type(defect).__name__}")
    return dataclasses.replace(params, defect=defect, unet_features=tuple(params.unet_features))


def cut_test_defects(test: SkullDataset, seed: int, params: CompletionParams) -> list[Defect]:
    """The defects cut from the test skulls; defect j of skull i from ``[seed, i, j, 2]``."""
    defects = []
    per_skull = params.defects_per_skull
    for i, volume in enumerate(test.volumes):
        for j in range(per_skull):
            kind = DEFECT_KINDS[(i * per_skull + j) % len(DEFECT_KINDS)]
            rng = np.random.default_rng([seed, i, j, DEFECT_STREAM])
            try:
                defects.append(cut_defect(volume, test.voxel_size_mm, kind, rng, params.defect))
            except DefectError as error:
                raise BenchError(f"completion: test skull {test.subject_ids[i]!r}: {error}; "
                                 f"check the test set or the defect parameters") from error
    return defects
