"""The learned pose regressor of the alignment task: a small PointNet, trained on the fly.

It sees a posed skull as ``n_points`` points drawn from its surface cloud plus
the centroid and second moments of the whole cloud (see
:class:`PoseRegressor`), and is trained with poses drawn on the fly from the
task's pose range (:func:`train_regressor`).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch
from torch import nn

from downstream.poses import (crop_field_of_view, jitter_points, rotation_6d_to_matrix,
                              sample_rotations, sample_translations)

SCALE_MM = 100.0
"""Points enter the network divided by this (a skull spans about 2 units)."""
MOMENT_GAIN = 20.0
"""Scale of the centred second moments fed to the head: in SCALE_MM^2 units they spread
by 0.01 to 0.04 (standard deviation) over the clinical range, about 0.5 after the gain."""


class PoseRegressor(nn.Module):
    """PointNet (Qi et al., CVPR 2017) without its transform nets, regressing a pose.

    Inputs: a subsample of the posed surface minus the centroid c of the whole
    posed surface, divided by ``SCALE_MM``, (B, M, 3); and the second-moment
    matrix of the whole posed surface about c, (B, 3, 3) in SCALE_MM^2. A
    shared per-point MLP (3 -> w -> 2w -> 4w) and max-pooling over points give
    shape features; the 6 distinct moments, centred on their training mean and
    scaled by ``MOMENT_GAIN``, join them. The moments turn with the skull
    (R C R^T): a direct cue to the rotation that the pooled features learn
    only slowly in a small training budget, and free of subsampling noise.
    An MLP head gives 9 numbers: the rotation R in the 6D representation and
    the canonical position mu of the centroid (in SCALE_MM). The translation
    is then t = c - R mu, so the centroid, which carries the translation, is
    used rather than discarded. The head starts at R = I and mu = the mean
    training centroid, the prediction of a model that has learned nothing.
    """

    mean_moments: torch.Tensor  # a buffer

    def __init__(self, width: int, mean_centroid_mm: np.ndarray,
                 mean_moments: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean_moments", torch.as_tensor(mean_moments, dtype=torch.float32))
        self.encoder = nn.Sequential(  # shared per point: Linear on (B, M, C)
            nn.Linear(3, width), nn.ReLU(), nn.Linear(width, 2 * width), nn.ReLU(),
            nn.Linear(2 * width, 4 * width))
        hidden, last = nn.Linear(4 * width + 6, 2 * width), nn.Linear(2 * width, 9)
        self.head = nn.Sequential(hidden, nn.ReLU(), last)
        nn.init.zeros_(last.weight)
        with torch.no_grad():
            last.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0,
                                          *(np.asarray(mean_centroid_mm) / SCALE_MM)]))

    def forward(self, centred: torch.Tensor, moments: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled points (B, M, 3) and moments (B, 3, 3) -> R (B, 3, 3), mu (B, 3) scaled."""
        features = torch.relu(self.encoder(centred).amax(dim=1))
        rows, cols = torch.triu_indices(3, 3)
        distinct = MOMENT_GAIN * (moments[:, rows, cols] - self.mean_moments)
        out = self.head(torch.cat([features, distinct], dim=1))
        return rotation_6d_to_matrix(out[:, :6]), out[:, 6:]


def cloud_moments(cloud: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroid (3,) in mm and second-moment matrix about it (3, 3) in mm^2 of a cloud (M, 3)."""
    centroid = cloud.mean(0)
    centred = cloud - centroid
    return centroid, centred.T @ centred / len(cloud)


def predict_pose(model: PoseRegressor, posed: torch.Tensor, centroid: torch.Tensor,
                 moments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Estimated (R, t), (B, 3, 3) and (B, 3) mm.

    Args:
        model: the regressor.
        posed: (B, M, 3) a subsample of each posed surface, mm.
        centroid: (B, 3) centroid of the whole posed surface, mm (a subsample's
            own centroid scatters by several mm, which would become translation error).
        moments: (B, 3, 3) second moments of the whole posed surface about it, mm^2.
    """
    rotation, mu = model((posed - centroid[:, None]) / SCALE_MM, moments / SCALE_MM ** 2)
    translation = centroid - SCALE_MM * (rotation @ mu[:, :, None])[:, :, 0]
    return rotation, translation


def alignment_loss(rotation: torch.Tensor, translation: torch.Tensor, posed: torch.Tensor,
                   canonical: torch.Tensor) -> torch.Tensor:
    """Mean squared distance (in SCALE_MM units) between R^T (y - t) and the canonical x.

    A point-matching loss: it weighs rotation errors by the skull's extent, as
    the landmark error does.
    """
    back = (posed - translation[:, None]) @ rotation
    return ((back - canonical) / SCALE_MM).square().sum(-1).mean()


def train_regressor(surfaces: list[np.ndarray], voxel_size_mm: float, *, width: int,
                    steps: int, batch_size: int, n_points: int, learning_rate: float,
                    max_rotation_deg: float | None, max_translation_mm: float,
                    lower_cut_mm: float, upper_cut_mm: float, seed: int,
                    device: torch.device) -> tuple[PoseRegressor, list[float]]:
    """Fit a :class:`PoseRegressor` to surface clouds posed on the fly; return it and its losses.

    Every step draws (from ``numpy.random.default_rng(seed)``) ``batch_size``
    skulls, a partial field of view of each (as the test scans have, see
    :func:`~downstream.poses.crop_field_of_view`), ``n_points`` jittered
    points of it and a pose per skull (rotations as in
    :func:`~downstream.poses.sample_rotations` with ``max_rotation_deg``, None
    for any rotation); Adam with cosine decay. The centroid and moments of a
    posed crop follow exactly from its canonical ones: R c + t and R C R^T
    (the jitter adds the isotropic voxel_size^2 / 12 to C, which turns with
    nothing).
    """
    rng = np.random.default_rng(seed)
    jitter = np.eye(3) * voxel_size_mm ** 2 / 12
    summaries = [cloud_moments(s) for s in surfaces]
    rows, cols = np.triu_indices(3)
    mean_moments = np.mean([m[rows, cols] for _, m in summaries], axis=0) / SCALE_MM ** 2
    with torch.random.fork_rng(devices=[]):  # seeded initial weights, global state untouched
        torch.manual_seed(seed)
        model = PoseRegressor(width, np.mean([c for c, _ in summaries], axis=0),
                              mean_moments).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
    losses = []
    with cpu_threads(1 if device.type == "cpu" else None):
        for _ in range(steps):
            crops = [crop_field_of_view(surfaces[i], lower_cut_mm, upper_cut_mm, rng)
                     for i in rng.integers(0, len(surfaces), batch_size)]
            crop_summaries = [cloud_moments(crop) for crop in crops]
            canonical = np.stack([sample_points(crop, n_points, voxel_size_mm, rng)
                                  for crop in crops])
            rotation = sample_rotations(batch_size, max_rotation_deg, rng)
            translation = sample_translations(batch_size, max_translation_mm, rng)
            posed = canonical @ np.swapaxes(rotation, 1, 2) + translation[:, None]
            centroids = np.array([c for c, _ in crop_summaries])
            moments = np.array([m for _, m in crop_summaries]) + jitter
            centroid = (rotation @ centroids[:, :, None])[:, :, 0] + translation
            posed_moments = rotation @ moments @ np.swapaxes(rotation, 1, 2)
            canonical_t, posed_t, centroid_t, moments_t = (
                torch.as_tensor(a, dtype=torch.float32, device=device)
                for a in (canonical, posed, centroid, posed_moments))
            estimate = predict_pose(model, posed_t, centroid_t, moments_t)
            loss = alignment_loss(*estimate, posed_t, canonical_t)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(float(loss.detach()))
    return model.eval(), losses


@contextlib.contextmanager
def cpu_threads(count: int | None) -> Iterator[None]:
    """Run with ``count`` torch CPU threads, then restore the previous number.

    The regressor is too small to gain from threads; on a loaded 2-core machine
    OpenMP's synchronisation made a 2-thread step 10 times slower than 1 thread.
    """
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def sample_points(surface: np.ndarray, n: int, voxel_size_mm: float,
                  rng: np.random.Generator) -> np.ndarray:
    """``n`` jittered points of one surface (without replacement where it has enough)."""
    index = rng.choice(len(surface), n, replace=len(surface) < n)
    return jitter_points(surface[index], voxel_size_mm, rng)
