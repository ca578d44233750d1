"""Skull alignment as a clinic uses it: bring a partial scan in an unknown pose into the
canonical (Frankfort) frame.

Test cases: each test skull's surface voxel centres
(:func:`~downstream.poses.surface_points_mm`) are cut to a scan's partial
field of view (the mandible and lower face cut by up to ``lower_cut_mm``
(60), the vertex by up to ``upper_cut_mm`` (25), by random amounts: see
:func:`~downstream.poses.crop_field_of_view`), so that the pose cannot be read
from the centroid and second moments; moved uniformly within their voxel (the
lattice gives no cue to the pose); and posed, y = R x + t. Poses and cuts are
drawn per test subject from ``numpy.random.default_rng([seed, index, 1])``:
in the clinical range every Euler angle is uniform in [-30, 30] degrees, in
the hard range the rotation is uniform on SO(3); translations are uniform in
[-20, 20] mm per axis.

The learned aligner (:mod:`downstream.pose_regressor`), a PointNet pose
regressor, is trained on the given skulls with poses and cuts drawn on the fly
from the same ranges; it sees ``n_points`` (128) points of the cloud plus the
centroid and second moments of the whole (partial) cloud. Two baselines
frame it and are reported once per run, unranked (:meth:`baselines`): the
identity pose, and principal axes + ICP (:mod:`downstream.icp`) to a template
of the real training skulls.

Scores, averaged over the test skulls:

- ``align-frankfort-deg``: angle between the true Frankfort horizontal plane
  (fitted to the subject's porions and orbitales) and where the estimate
  leaves it;
- ``align-midsagittal-deg``: the same for the midsagittal plane (x = 0 of
  the canonical frame);
- ``align-landmark-mm``: mean distance of the landmarks (nasion, porions,
  orbitales, menton) posed with the true pose and brought back with the
  estimate;
- ``align-success-rate``: the share of scans with both plane errors within
  ``success_angle_deg`` (3) and the landmark error within
  ``success_landmark_mm`` (4 mm, one voxel at 64^3; clinical cephalometry asks
  for about 2 degrees and 2 mm, below this grid's resolution);
- ``align-rot-err-deg``: geodesic rotation error, and ``align-surface-mm``:
  mean distance from the scan brought back to its canonical surface, the two
  scores that need no landmarks.

On a dataset without landmarks (SkullBreak, SkullFix) the three landmark
scores are NaN, by design and never by failure; the report names them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy.spatial import cKDTree

from bench.data.dataset import SkullDataset
from bench.core.errors import BenchError
from bench.core.values import ValueSpec
from downstream.base import (DegenerateTrainingSet, Params, Task, check_choice,
                             check_counts, check_positive, register_task)
from downstream.icp import IcpAligner, build_template
from downstream.pose_regressor import cloud_moments, cpu_threads, predict_pose, train_regressor
from downstream.poses import (crop_field_of_view, frankfort_normals, geodesic_error_deg,
                              jitter_points, landmark_error_mm, plane_angle_error_deg,
                              sample_rotations, sample_translations, surface_points_mm,
                              undo_pose)

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
        lower_cut_mm, upper_cut_mm: largest cuts of a scan's field of view from
            below and from the vertex.
        icp_points: surface points of the posed skull given to ICP.
        icp_method: ``"point_to_point"`` or ``"point_to_plane"``.
        icp_max_distance_mm: correspondence distance of the final ICP stage.
        success_angle_deg, success_landmark_mm: thresholds of a success.
    """

    pose_range: str = "clinical"
    max_rotation_deg: float = 30.0
    max_translation_mm: float = 20.0
    n_points: int = 128
    width: int = 32
    steps: int = 300
    batch_size: int = 16
    learning_rate: float = 3e-3
    lower_cut_mm: float = 60.0
    upper_cut_mm: float = 25.0
    icp_points: int = 1000
    icp_method: str = "point_to_point"
    icp_max_distance_mm: float = 8.0
    success_angle_deg: float = 3.0
    success_landmark_mm: float = 4.0

    @property
    def rotation_bound(self) -> float | None:
        """The ``max_rotation_deg`` of :func:`~downstream.poses.sample_rotations`."""
        return None if self.pose_range == "hard" else self.max_rotation_deg


@register_task("alignment")
class AlignmentTask(Task):
    """Rigid alignment of partial scans: a learned PointNet regressor; identity and ICP
    baselines."""

    description = ("alignment of partial scans to the Frankfort frame: PointNet pose "
                   "regressor; identity and ICP baselines")
    Params = AlignmentParams
    baseline_names = ("identity", "icp")
    metrics = (ValueSpec("align-frankfort-deg", False, "deg", {"headline"}),
               ValueSpec("align-midsagittal-deg", False, "deg"),
               ValueSpec("align-landmark-mm", False, "mm"),
               ValueSpec("align-success-rate", True, "%"),
               ValueSpec("align-rot-err-deg", False, "deg", {"gate"}),
               ValueSpec("align-surface-mm", False, "mm"))
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
                       success_angle_deg=p.success_angle_deg,
                       success_landmark_mm=p.success_landmark_mm)
        if p.lower_cut_mm < 0 or p.upper_cut_mm < 0:
            raise BenchError(f"task {self.name!r}: lower_cut_mm and upper_cut_mm must be 0 or "
                             f"more, got {p.lower_cut_mm} and {p.upper_cut_mm}")

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
            lower_cut_mm=p.lower_cut_mm, upper_cut_mm=p.upper_cut_mm, seed=seed, device=device)

    def _evaluate(self, test: SkullDataset, seed: int, device: torch.device
                  ) -> dict[str, float]:
        cases = posed_test_cases(test, seed, self.params)
        n_points = self.params.n_points
        subsets = np.stack([cloud[rng.choice(len(cloud), n_points, replace=len(cloud) < n_points)]
                            for cloud, rng in zip(cases.clouds, cases.rngs)])
        summaries = [cloud_moments(cloud) for cloud in cases.clouds]
        inputs = (subsets, np.array([c for c, _ in summaries]), np.array([m for _, m in summaries]))
        with torch.no_grad(), cpu_threads(1 if device.type == "cpu" else None):
            rotation, translation = predict_pose(
                self.model_, *(torch.as_tensor(a, dtype=torch.float32, device=device)
                               for a in inputs))
        values, self.cases_ = pose_scores(cases, rotation.cpu().double().numpy(),
                                          translation.cpu().double().numpy(), self.params)
        return values

    def baselines(self, train: np.ndarray, test: SkullDataset, seed: int
                  ) -> dict[str, dict[str, float]]:
        """The identity pose, and principal axes + ICP to a template of ``train``."""
        cases = posed_test_cases(test, seed, self.params)
        n = len(cases.clouds)
        identity = pose_scores(cases, np.repeat(np.eye(3)[None], n, 0), np.zeros((n, 3)),
                               self.params)[0]
        template = surface_points_mm(build_template(train), test.voxel_size_mm)
        icp = IcpAligner(template, self.params.icp_method, self.params.icp_max_distance_mm)
        rotation, translation = np.empty((n, 3, 3)), np.empty((n, 3))
        for i, (cloud, rng) in enumerate(zip(cases.clouds, cases.rngs)):
            subset = cloud[rng.choice(len(cloud), min(len(cloud), self.params.icp_points),
                                      replace=False)]
            rotation[i], translation[i] = icp.estimate(subset)
        return {"identity": identity,
                "icp": pose_scores(cases, rotation, translation, self.params)[0]}


@dataclass
class PosedCases:
    """Partial test scans in random poses.

    Attributes:
        clouds: per scan, its jittered surface points after the pose, (M_i, 3) mm.
        canonical: per scan, the same points before the pose, (M_i, 3) mm.
        rotations, translations: (n, 3, 3) and (n, 3), the true poses.
        landmarks: (n, L, 3) canonical landmarks in mm, NaN where missing (L may be 0).
        frankfort: (n, 3) canonical Frankfort normals, NaN without porions and orbitales.
        rngs: per scan, the generator that drew its pose, for any further draws.
    """

    clouds: list[np.ndarray]
    canonical: list[np.ndarray]
    rotations: np.ndarray
    translations: np.ndarray
    landmarks: np.ndarray
    frankfort: np.ndarray
    rngs: list[np.random.Generator]


def posed_test_cases(test: SkullDataset, seed: int, params: AlignmentParams) -> PosedCases:
    """Cut and pose every test skull; skull i draws from ``default_rng([seed, i, POSE_STREAM])``."""
    clouds, canonical, rotations, translations, rngs = [], [], [], [], []
    for index, volume in enumerate(test.volumes):
        rng = np.random.default_rng([seed, index, POSE_STREAM])
        rotation = sample_rotations(1, params.rotation_bound, rng)[0]
        translation = sample_translations(1, params.max_translation_mm, rng)[0]
        surface = surface_points_mm(volume, test.voxel_size_mm)
        if len(surface) == 0:
            raise BenchError(f"alignment: test skull {test.subject_ids[index]!r} has no bone")
        scan = crop_field_of_view(surface, params.lower_cut_mm, params.upper_cut_mm, rng)
        points = jitter_points(scan, test.voxel_size_mm, rng)
        canonical.append(points)
        clouds.append(points @ rotation.T + translation)
        rotations.append(rotation)
        translations.append(translation)
        rngs.append(rng)
    names = sorted(test.landmarks)
    landmarks = (np.stack([test.landmarks[k] for k in names], axis=1) if names
                 else np.full((len(test), 0, 3), np.nan))
    try:
        frankfort = frankfort_normals(test.landmarks)
    except KeyError:
        frankfort = np.full((len(test), 3), np.nan)
    return PosedCases(clouds, canonical, np.array(rotations), np.array(translations),
                      landmarks, frankfort, rngs)


def pose_scores(cases: PosedCases, rotation: np.ndarray, translation: np.ndarray,
                params: AlignmentParams) -> tuple[dict[str, float], pd.DataFrame]:
    """Mean scores of estimated poses against the true ones, and the per-scan scores."""
    n = len(cases.clouds)
    midsagittal = np.repeat(np.array([[1.0, 0.0, 0.0]]), n, 0)
    per_scan = {
        "align-frankfort-deg": plane_angle_error_deg(cases.frankfort, cases.rotations, rotation),
        "align-midsagittal-deg": plane_angle_error_deg(midsagittal, cases.rotations, rotation),
        "align-landmark-mm": landmark_error_mm(cases.landmarks, cases.rotations,
                                               cases.translations, rotation, translation),
        "align-rot-err-deg": geodesic_error_deg(rotation, cases.rotations),
        "align-surface-mm": np.array([
            cKDTree(canonical).query(undo_pose(cloud, rotation[i], translation[i]))[0].mean()
            for i, (cloud, canonical) in enumerate(zip(cases.clouds, cases.canonical))])}
    success = ((per_scan["align-frankfort-deg"] <= params.success_angle_deg)
               & (per_scan["align-midsagittal-deg"] <= params.success_angle_deg)
               & (per_scan["align-landmark-mm"] <= params.success_landmark_mm))
    known = (np.isfinite(per_scan["align-landmark-mm"])
             & np.isfinite(per_scan["align-frankfort-deg"]))
    values = {name: float(np.mean(scores[np.isfinite(scores)])) if np.isfinite(scores).any()
              else float("nan") for name, scores in per_scan.items()}
    values["align-success-rate"] = 100.0 * float(success[known].mean()) if known.any() \
        else float("nan")
    frame = pd.DataFrame([{"case": i, "metric": name, "value": float(scores[i])}
                          for name, scores in per_scan.items() for i in range(n)])
    return values, frame
