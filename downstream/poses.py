"""Rigid poses, rotation representations, pose errors and skull surface points.

A pose (R, t) moves a skull from its canonical pose to the posed one: a point
x (mm, grid frame, rotation about the grid centre at the origin) goes to

    y = R x + t,            and back:  x = R^T (y - t).

Point arrays are (..., 3) in mm; rotations are (..., 3, 3) with the columns
of R the images of the canonical axes.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.data.grid import index_to_mm


# ----------------------------------------------------------------------------- surfaces

def surface_mask(volume: np.ndarray) -> np.ndarray:
    """Bone voxels with at least one of their 6 face neighbours empty (or off the grid).

    Args:
        volume: bool (R, R, R).

    Returns:
        bool (R, R, R).
    """
    padded = np.pad(volume, 1, constant_values=False)
    interior = padded[1:-1, 1:-1, 1:-1].copy()
    for axis in range(3):
        for shift in (0, 2):
            index = [slice(1, -1)] * 3
            index[axis] = slice(shift, shift + volume.shape[axis])
            interior &= padded[tuple(index)]
    return volume & ~interior


def surface_points_mm(volume: np.ndarray, voxel_size_mm: float) -> np.ndarray:
    """Centres of the surface voxels of ``volume`` (R, R, R), float64 (M, 3) in mm."""
    resolution = volume.shape[0]
    index = np.argwhere(surface_mask(volume))
    return index_to_mm(index, resolution, resolution * voxel_size_mm)


def jitter_points(points: np.ndarray, voxel_size_mm: float, rng: np.random.Generator
                  ) -> np.ndarray:
    """Each voxel centre moved uniformly within its voxel (a cube of edge ``voxel_size_mm``).

    Posed voxel centres keep the lattice's directions, a cue to the pose that
    a real scan of a posed skull would not give; jitter removes it.
    """
    return points + rng.uniform(-0.5, 0.5, points.shape) * voxel_size_mm


# ---------------------------------------------------------------------------- rotations

def euler_rotation(angles_deg: np.ndarray) -> np.ndarray:
    """Rotations R = R_z(c) R_y(b) R_x(a) from angles (..., 3) = (a, b, c) in degrees.

    That is: rotate about the x axis (right) by a, then about y (anterior) by b,
    then about z (superior) by c, all about fixed axes through the origin.
    """
    a, b, c = np.moveaxis(np.deg2rad(np.asarray(angles_deg, dtype=np.float64)), -1, 0)
    zero, one = np.zeros_like(a), np.ones_like(a)
    rx = _stack3(one, zero, zero, zero, np.cos(a), -np.sin(a), zero, np.sin(a), np.cos(a))
    ry = _stack3(np.cos(b), zero, np.sin(b), zero, one, zero, -np.sin(b), zero, np.cos(b))
    rz = _stack3(np.cos(c), -np.sin(c), zero, np.sin(c), np.cos(c), zero, zero, zero, one)
    return rz @ ry @ rx


def _stack3(*entries: np.ndarray) -> np.ndarray:
    return np.stack(entries, axis=-1).reshape(entries[0].shape + (3, 3))


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Unit quaternions (..., 4) as (w, x, y, z) to rotation matrices (..., 3, 3)."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return _stack3(1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                   2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                   2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y))


def sample_rotations(n: int, max_rotation_deg: float | None, rng: np.random.Generator
                     ) -> np.ndarray:
    """(n, 3, 3) random rotations.

    Args:
        n: how many.
        max_rotation_deg: each of the three Euler angles of :func:`euler_rotation`
            uniform in [-max, max]; None for rotations uniform on SO(3) (normalised
            Gaussian quaternions, which are uniform on the 3-sphere).
        rng: the generator to draw from.
    """
    if max_rotation_deg is None:
        return quaternion_to_matrix(rng.standard_normal((n, 4)))
    return euler_rotation(rng.uniform(-max_rotation_deg, max_rotation_deg, (n, 3)))


def sample_translations(n: int, max_translation_mm: float, rng: np.random.Generator
                        ) -> np.ndarray:
    """(n, 3) translations, each component uniform in [-max, max] mm."""
    return rng.uniform(-max_translation_mm, max_translation_mm, (n, 3))


def rotation_6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """The continuous 6D rotation representation to matrices (Zhou et al., CVPR 2019, eq. 15).

    The 6 numbers are two 3-vectors a_1, a_2; Gram-Schmidt gives the columns
    b_1 = N(a_1), b_2 = N(a_2 - (b_1 . a_2) b_1), b_3 = b_1 x b_2.

    Args:
        x: (..., 6) as (a_1, a_2).

    Returns:
        (..., 3, 3) rotations with columns (b_1, b_2, b_3).
    """
    a1, a2 = x[..., :3], x[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rotation_6d(rotation: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotations to their 6D representation (..., 6): the first two columns."""
    return torch.cat([rotation[..., :, 0], rotation[..., :, 1]], dim=-1)


# ------------------------------------------------------------------------ applying poses

def apply_pose(points: np.ndarray, rotation: np.ndarray, translation: np.ndarray
               ) -> np.ndarray:
    """y = R x + t for points (..., M, 3), rotation (..., 3, 3), translation (..., 3)."""
    return points @ np.swapaxes(rotation, -1, -2) + translation[..., None, :]


def undo_pose(points: np.ndarray, rotation: np.ndarray, translation: np.ndarray
              ) -> np.ndarray:
    """x = R^T (y - t): posed points (..., M, 3) back to the canonical pose."""
    return (points - translation[..., None, :]) @ rotation


# --------------------------------------------------------------------------- pose errors

def geodesic_error_deg(rotation_est: np.ndarray, rotation_true: np.ndarray) -> np.ndarray:
    """Angle of R_est^T R_true in degrees: arccos((trace(R_est^T R_true) - 1) / 2), (...,).

    The cosine is clipped to [-1, 1] against rounding.
    """
    trace = np.einsum("...ij,...ij->...", rotation_est, rotation_true)
    return np.rad2deg(np.arccos(np.clip((trace - 1.0) / 2.0, -1.0, 1.0)))


def translation_error_mm(translation_est: np.ndarray, translation_true: np.ndarray
                         ) -> np.ndarray:
    """Euclidean distance between translations (..., 3), in mm."""
    return np.linalg.norm(translation_est - translation_true, axis=-1)


def landmark_error_mm(landmarks: np.ndarray, rotation_true: np.ndarray,
                      translation_true: np.ndarray, rotation_est: np.ndarray,
                      translation_est: np.ndarray) -> np.ndarray:
    """Mean distance between canonical landmarks and the posed ones brought back by the estimate.

    Each landmark x is posed with the true pose, y = R x + t, and brought back
    with the estimated one, x_hat = R_est^T (y - t_est); the error is |x_hat - x|.

    Args:
        landmarks: (n, L, 3) canonical landmarks in mm; NaN where missing.
        rotation_true, translation_true: (n, 3, 3) and (n, 3), the applied poses.
        rotation_est, translation_est: (n, 3, 3) and (n, 3), the estimates.

    Returns:
        (n,) mean over each subject's known landmarks; NaN for a subject with none.
    """
    posed = apply_pose(landmarks, rotation_true, translation_true)
    back = undo_pose(posed, rotation_est, translation_est)
    errors = np.linalg.norm(back - landmarks, axis=-1)
    known = np.isfinite(errors)
    counts = known.sum(axis=1)
    sums = np.where(known, errors, 0.0).sum(axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def crop_field_of_view(points: np.ndarray, lower_cut_mm: float, upper_cut_mm: float,
                       rng: np.random.Generator) -> np.ndarray:
    """A scan's partial field of view: the canonical cloud (M, 3) cut below and above.

    The bone below ``z_min + u_1 lower_cut_mm`` (the mandible and lower face,
    by a random amount) and above ``z_max - u_2 upper_cut_mm`` (the vertex) is
    removed, u_1 and u_2 uniform in [0, 1], so that a scan's centroid and
    second moments no longer give its pose away. At least a tenth of the points
    are kept.
    """
    z = points[:, 2]
    low = z.min() + rng.uniform() * lower_cut_mm
    high = z.max() - rng.uniform() * upper_cut_mm
    kept = points[(z >= low) & (z <= high)]
    return kept if len(kept) >= max(len(points) // 10, 1) else points


def plane_angle_error_deg(normals: np.ndarray, rotation_true: np.ndarray,
                          rotation_est: np.ndarray) -> np.ndarray:
    """Angle between each canonical plane normal and where the estimate leaves it, degrees.

    A canonical direction v ends at R_est^T R v after posing with the true
    rotation and undoing with the estimate; the plane's error is the angle
    between the two normals, sign-free (a plane has no orientation).

    Args:
        normals: (n, 3) unit normals in the canonical frame.
        rotation_true, rotation_est: (n, 3, 3).
    """
    moved = np.einsum("nji,njk,nk->ni", rotation_est, rotation_true, normals)
    cosine = np.abs(np.einsum("ni,ni->n", moved, normals))
    return np.degrees(np.arccos(np.clip(cosine, 0.0, 1.0)))


def frankfort_normals(landmarks: dict[str, np.ndarray]) -> np.ndarray:
    """Unit normals (n, 3) of the Frankfort horizontal planes fitted to each subject's
    porions and orbitales (least squares); NaN for a subject that lacks them."""
    names = ("porion_left", "porion_right", "orbitale_left", "orbitale_right")
    if not all(name in landmarks for name in names):
        raise KeyError("porions and orbitales")
    points = np.stack([landmarks[name] for name in names], axis=1)
    normals = np.full((len(points), 3), np.nan)
    for i, subject in enumerate(points):
        known = subject[np.isfinite(subject).all(axis=1)]
        if len(known) >= 3:
            normal = np.linalg.svd(known - known.mean(0))[2][-1]
            normals[i] = normal * np.sign(normal[2] or 1.0)
    return normals
