"""The classical baseline of the alignment task: principal axes, then ICP to a template.

The template is built from the training skulls (:func:`build_template`); the
aligner (:class:`IcpAligner`) sees ``icp_points`` points drawn from the posed
surface cloud.
"""

from __future__ import annotations

import itertools

import numpy as np
import open3d as o3d
from scipy.spatial import cKDTree

from bench.core.errors import BenchError

ICP_STARTS = 2
"""Principal-axes initialisations (of 24) that get an ICP run."""
PROBE_POINTS = 150
"""About this many posed points score an initialisation."""
COARSE_POINTS = 400
"""About this many posed points (and 4 times as many template points) in coarse ICP."""


def build_template(volumes: np.ndarray) -> np.ndarray:
    """The voxel-wise mean occupancy > 0.5 of bool volumes (N, R, R, R), or a fallback.

    When the mean shape has under a quarter of the median bone of the volumes
    with bone (training skulls that disagree too much to overlap), the volume
    with the median amount of bone among them is the template instead.
    """
    counts = np.zeros(volumes.shape[1:], dtype=np.int32)
    for volume in volumes:
        counts += volume
    template = 2 * counts > len(volumes)
    bone = volumes.reshape(len(volumes), -1).sum(1)
    with_bone = np.flatnonzero(bone > 0)
    if template.sum() < 0.25 * np.median(bone[with_bone]):
        order = with_bone[np.argsort(bone[with_bone], kind="stable")]
        template = volumes[order[len(order) // 2]]
    return template


class IcpAligner:
    """Principal-axes initialisation, then ICP (open3d) of the posed cloud to a template.

    The principal axes of the posed cloud and of the template fix the rotation
    up to which axis is which and their signs: all 24 proper signed
    permutations are ranked by the mean closest-point distance of a probe of
    the cloud to the template; the ``ICP_STARTS`` best each get a coarse ICP
    (15 iterations, correspondences up to 2.5 ``max_distance_mm``, on thinned
    clouds of about ``COARSE_POINTS`` points), and the one that ends closest to
    the template is refined by ICP on the full clouds at ``max_distance_mm``
    (up to 40 iterations). ICP finds the transform A y + b from the posed
    cloud to the template; the pose estimate is its inverse, R = A^T and
    t = -A^T b.
    """

    def __init__(self, template_points: np.ndarray, method: str, max_distance_mm: float) -> None:
        self.template_points = np.asarray(template_points, dtype=np.float64)
        self.method = method
        self.max_distance_mm = max_distance_mm
        self._tree = cKDTree(self.template_points)
        self._target = self._cloud(self.template_points)
        self._coarse_target = self._cloud(_thinned(self.template_points, 4 * COARSE_POINTS))
        self._centroid, self._axes = _principal_axes(self.template_points)

    def _cloud(self, points: np.ndarray) -> o3d.geometry.PointCloud:
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
        if self.method == "point_to_plane":
            cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(12))
        return cloud

    def estimate(self, posed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pose (R (3, 3), t (3,)) of a posed cloud (M, 3) in mm relative to the template."""
        probe = _thinned(posed, PROBE_POINTS)
        coarse_source = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(
            _thinned(posed, COARSE_POINTS)))
        centroid, axes = _principal_axes(posed)
        starts = []
        for flip in _SIGNED_PERMUTATIONS:
            rotation = axes @ flip @ self._axes.T  # template frame -> posed frame
            if np.linalg.det(rotation) > 0:
                starts.append(_rigid(rotation.T, self._centroid - rotation.T @ centroid))
        moved = np.concatenate([probe @ s[:3, :3].T + s[:3, 3] for s in starts])
        costs = self._tree.query(moved)[0].reshape(len(starts), -1).mean(1)
        best, best_cost = None, np.inf
        for init in (starts[i] for i in np.argsort(costs, kind="stable")[:ICP_STARTS]):
            result = self._icp(coarse_source, self._coarse_target, init,
                               2.5 * self.max_distance_mm, 15)
            cost = self._mean_distance(probe, result)
            if cost < best_cost:
                best, best_cost = result, cost
        if best is None:
            raise BenchError("ICP: no initialisation ends at a finite distance to the template")
        source = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(posed))
        fine = self._icp(source, self._target, best, self.max_distance_mm, 40)
        a, b = fine[:3, :3], fine[:3, 3]
        return a.T, -a.T @ b

    def _icp(self, source: o3d.geometry.PointCloud, target: o3d.geometry.PointCloud,
             init: np.ndarray, distance: float, iterations: int) -> np.ndarray:
        registration = o3d.pipelines.registration
        estimation = (registration.TransformationEstimationPointToPlane()
                      if self.method == "point_to_plane"
                      else registration.TransformationEstimationPointToPoint())
        result = registration.registration_icp(
            source, target, distance, init, estimation,
            registration.ICPConvergenceCriteria(max_iteration=iterations))
        return np.asarray(result.transformation)

    def _mean_distance(self, points: np.ndarray, transform: np.ndarray) -> float:
        moved = points @ transform[:3, :3].T + transform[:3, 3]
        return float(self._tree.query(moved)[0].mean())


def _thinned(points: np.ndarray, count: int) -> np.ndarray:
    """Every k-th point, k chosen so that about ``count`` remain (all when there are fewer)."""
    return points[:: max(len(points) // count, 1)]


def _principal_axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroid (3,) and eigenvectors (3, 3 columns, decreasing variance) of a cloud."""
    centroid = points.mean(0)
    _, vectors = np.linalg.eigh(np.cov((points - centroid).T))
    return centroid, vectors[:, ::-1]


def _rigid(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    transform = np.eye(4)
    transform[:3, :3], transform[:3, 3] = rotation, translation
    return transform


def _signed_permutations() -> list[np.ndarray]:
    """The 48 signed permutation matrices; half of them give proper rotations per cloud."""
    out = []
    for order in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            matrix = np.zeros((3, 3))
            matrix[range(3), order] = signs
            out.append(matrix)
    return out


_SIGNED_PERMUTATIONS = _signed_permutations()
