"""Skull alignment: bring a skull in an unknown rigid pose back to the canonical pose.

What the models see: the surface of the skull as a point cloud in mm. A test
skull's surface voxel centres (:func:`~downstream.poses.surface_points_mm`)
are each moved uniformly within their voxel (so the lattice gives no cue to
the pose) and then posed, y = R x + t, in continuous coordinates; posing the
points instead of resampling the volume is cheaper and never crops a skull
at the edge of the field of view. Poses are drawn per test subject from
``numpy.random.default_rng([seed, index, 1])``: in the clinical range every
Euler angle (x, then y, then z, fixed axes) is uniform in [-30, 30] degrees;
in the hard range the rotation is uniform on SO(3); translations are uniform
in [-20, 20] mm per axis. Both models estimate (R, t) from the posed cloud:

- learned (:mod:`downstream.pose_regressor`): a PointNet pose regressor
  trained on the given skulls with poses drawn on the fly from the same
  range; it sees ``n_points`` (128) points drawn from the cloud plus the
  centroid and the second moments of the whole cloud;
- icp (:mod:`downstream.icp`): principal-axes initialisation, then open3d ICP
  to a template built from the given skulls (the surface of their voxel-wise
  mean occupancy > 0.5); it sees ``icp_points`` (1000) points of the cloud.

Scores, averaged over the test skulls: geodesic rotation error (degrees),
translation error (mm), landmark error (mm; canonical landmarks posed with
the true pose and brought back with the estimate, NaN-aware) and the success
rate (rotation error below 5 degrees and translation error below 5 mm, %).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.data.dataset import SkullDataset
from bench.core.errors import BenchError
from bench.core.values import ValueSpec
from downstream.base import (DegenerateTrainingSet, Params, Task, check_choice,
                             check_counts, check_positive, register_task)
from downstream.icp import IcpAligner, build_template
from downstream.pose_regressor import cloud_moments, cpu_threads, predict_pose, train_regressor
from downstream.poses import (geodesic_error_deg, jitter_points, landmark_error_mm,
                              sample_rotations, sample_translations, surface_points_mm,
                              translation_error_mm)

POSE_RANGES = ("clinical", "hard")
ICP_METHODS = ("point_to_point", "point_to_plane")
POSE_STREAM = 1
"""Third entry of the per-subject seed ``[seed, index, POSE_STREAM]`` of test poses."""


@dataclass(frozen=True)
class AlignmentParams(Params):
    """Hyperparameters of the alignment task.

    Attributes:
        pose_range: ``"clinical"`` (Euler angles up to ``max_rotation_deg``) or
            ``"hard"`` (any rotation, uniform on SO(3)).
        max_rotation_deg: bound on each Euler angle in the clinical range.
        max_translation_mm: bound on each translation component.
        n_points: surface points the regressor sees per skull.
        width: channels of the regressor's first layer (then 2x and 4x).
        steps: optimiser steps of the regressor.
        batch_size: skulls per step, each in a freshly drawn pose.
        learning_rate: Adam's step size (cosine decay to zero).
        icp_points: surface points of the posed skull given to ICP.
        icp_method: ``"point_to_point"`` or ``"point_to_plane"``.
        icp_max_distance_mm: correspondence distance of the final ICP stage.
        success_rotation_deg, success_translation_mm: thresholds of a success.
    """

    pose_range: str = "clinical"
    max_rotation_deg: float = 30.0
    max_translation_mm: float = 20.0
    n_points: int = 128
    width: int = 32
    steps: int = 300
    batch_size: int = 16
    learning_rate: float = 3e-3
    icp_points: int = 1000
    icp_method: str = "point_to_point"
    icp_max_distance_mm: float = 8.0
    success_rotation_deg: float = 5.0
    success_translation_mm: float = 5.0

    @property
    def rotation_bound(self) -> float | None:
        """The ``max_rotation_deg`` of :func:`~downstream.poses.sample_rotations`."""
        return None if self.pose_range == "hard" else self.max_rotation_deg


@register_task("alignment")
class AlignmentTask(Task):
    """Rigid skull alignment: a learned PointNet regressor and an ICP baseline."""

    description = "rigid alignment of posed skulls: PointNet pose regressor and ICP baseline"
    Params = AlignmentParams
    metrics = tuple(
        spec for prefix in ("align", "align-icp") for spec in (
            ValueSpec(f"{prefix}-rot-err-deg", False, "deg",
                      {"headline", "gate"} if prefix == "align" else set()),
            ValueSpec(f"{prefix}-trans-err-mm", False, "mm"),
            ValueSpec(f"{prefix}-landmark-err-mm", False, "mm"),
            ValueSpec(f"{prefix}-success-rate", True, "%")))
    params: AlignmentParams

    def _check_params(self) -> None:
        p = self.params
        check_choice(self.name, "pose_range", p.pose_range, POSE_RANGES)
        check_choice(self.name, "icp_method", p.icp_method, ICP_METHODS)
        check_counts(self.name, n_points=p.n_points, width=p.width, steps=p.steps,
                     batch_size=p.batch_size, icp_points=p.icp_points)
        check_positive(self.name, max_rotation_deg=p.max_rotation_deg,
                       max_translation_mm=p.max_translation_mm,
                       learning_rate=p.learning_rate,
                       icp_max_distance_mm=p.icp_max_distance_mm,
                       success_rotation_deg=p.success_rotation_deg,
                       success_translation_mm=p.success_translation_mm)

    def _train(self, volumes: np.ndarray, seed: int, device: torch.device) -> None:
        voxel_size_mm = self._voxel_size_mm()
        surfaces = [surface_points_mm(v, voxel_size_mm) for v in volumes]
        surfaces = [s for s in surfaces if len(s) > 0]
        if not surfaces:
            raise DegenerateTrainingSet(f"task {self.name!r}: none of the {len(volumes)} "
                                        f"training volumes has any bone")
        p = self.params
        self.model_, self.losses_ = train_regressor(
            surfaces, voxel_size_mm, width=p.width, steps=p.steps,
            batch_size=p.batch_size, n_points=p.n_points, learning_rate=p.learning_rate,
            max_rotation_deg=p.rotation_bound, max_translation_mm=p.max_translation_mm,
            seed=seed, device=device)
        template = surface_points_mm(build_template(volumes), voxel_size_mm)
        self.icp_ = IcpAligner(template, self.params.icp_method,
                               self.params.icp_max_distance_mm)

    def _evaluate(self, test: SkullDataset, seed: int, device: torch.device
                  ) -> dict[str, float]:
        cases = posed_test_cases(test, seed, self.params)
        n_points = self.params.n_points
        subsets = np.stack([cloud[rng.choice(len(cloud), n_points, replace=len(cloud) < n_points)]
                            for cloud, rng in zip(cases.clouds, cases.rngs)])
        summaries = [cloud_moments(cloud) for cloud in cases.clouds]
        inputs = (subsets, np.array([c for c, _ in summaries]), np.array([m for _, m in summaries]))
        with torch.no_grad(), cpu_threads(1 if device.type == "cpu" else None):
            predicted = predict_pose(self.model_, *(torch.as_tensor(a, dtype=torch.float32,
                                                                    device=device) for a in inputs))
        learned = [a.cpu().double().numpy() for a in predicted]
        icp = [np.empty((len(subsets), 3, 3)), np.empty((len(subsets), 3))]
        for i, (cloud, rng) in enumerate(zip(cases.clouds, cases.rngs)):
            subset = cloud[rng.choice(len(cloud), min(len(cloud), self.params.icp_points),
                                      replace=False)]
            icp[0][i], icp[1][i] = self.icp_.estimate(subset)
        values = {}
        for prefix, (rotation, translation) in (("align", learned), ("align-icp", icp)):
            values.update(pose_scores(prefix, cases, rotation, translation, self.params))
        return values


@dataclass
class PosedCases:
    """Test skulls in random poses.

    Attributes:
        clouds: per skull, its jittered surface points after the pose, (M_i, 3) mm.
        rotations, translations: (n, 3, 3) and (n, 3), the true poses.
        landmarks: (n, L, 3) canonical landmarks in mm, NaN where missing (L may be 0).
        rngs: per skull, the generator that drew its pose, for any further draws.
    """

    clouds: list[np.ndarray]
    rotations: np.ndarray
    translations: np.ndarray
    landmarks: np.ndarray
    rngs: list[np.random.Generator]


def posed_test_cases(test: SkullDataset, seed: int, params: AlignmentParams) -> PosedCases:
    """Pose every test skull; skull i draws from ``default_rng([seed, i, POSE_STREAM])``."""
    clouds, rotations, translations, rngs = [], [], [], []
    for index, volume in enumerate(test.volumes):
        rng = np.random.default_rng([seed, index, POSE_STREAM])
        rotation = sample_rotations(1, params.rotation_bound, rng)[0]
        translation = sample_translations(1, params.max_translation_mm, rng)[0]
        surface = surface_points_mm(volume, test.voxel_size_mm)
        if len(surface) == 0:
            raise BenchError(f"alignment: test skull {test.subject_ids[index]!r} has no bone")
        points = jitter_points(surface, test.voxel_size_mm, rng)
        clouds.append(points @ rotation.T + translation)
        rotations.append(rotation)
        translations.append(translation)
        rngs.append(rng)
    names = sorted(test.landmarks)
    landmarks = (np.stack([test.landmarks[k] for k in names], axis=1) if names
                 else np.full((len(test), 0, 3), np.nan))
    return PosedCases(clouds, np.array(rotations), np.array(translations), landmarks, rngs)


def pose_scores(prefix: str, cases: PosedCases, rotation: np.ndarray, translation: np.ndarray,
                params: AlignmentParams) -> dict[str, float]:
    """Mean errors and success rate of estimated poses against the true ones."""
    rotation_error = geodesic_error_deg(rotation, cases.rotations)
    translation_error = translation_error_mm(translation, cases.translations)
    landmark_error = landmark_error_mm(cases.landmarks, cases.rotations, cases.translations,
                                       rotation, translation)
    known = np.isfinite(landmark_error)
    success = (rotation_error < params.success_rotation_deg) & \
        (translation_error < params.success_translation_mm)
    return {f"{prefix}-rot-err-deg": float(rotation_error.mean()),
            f"{prefix}-trans-err-mm": float(translation_error.mean()),
            f"{prefix}-landmark-err-mm": float(landmark_error[known].mean()) if known.any()
            else float("nan"),
            f"{prefix}-success-rate": 100.0 * float(success.mean())}
