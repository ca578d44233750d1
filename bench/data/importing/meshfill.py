"""Fill the inside of a closed triangle surface on a voxel grid (ray parity)."""

from __future__ import annotations

import numpy as np

_RAY_OFFSET = (0.0137, 0.0291)  # voxels; keeps rays off mesh vertices and edges
_TRIANGLE_CHUNK = 200_000  # triangles per batch, to bound memory on large meshes


def fill_mesh(triangles: np.ndarray, affine: np.ndarray, shape: tuple[int, int, int]
              ) -> np.ndarray:
    """Voxels whose centres lie inside a closed triangle surface.

    Rays are cast along each grid axis through every row of voxel centres
    (nudged by a hundredth of a voxel so they miss vertices and edges); a
    centre is inside along one axis when an odd number of crossings lie
    before it. A voxel is bone when at least two of the three axes say so: a
    small hole in an almost closed mesh spoils the rays through it along one
    axis, and is outvoted. For a closed mesh every axis gives the same answer.

    Args:
        triangles: (F, 3, 3) vertex positions, mm.
        affine: (4, 4) voxel index -> mm, axis-aligned (a scaled identity
            plus a translation).
        shape: grid shape (X, Y, Z).

    Returns:
        bool (X, Y, Z).
    """
    points = (triangles - affine[:3, 3]) / np.diag(affine)[:3]
    votes = np.zeros(shape, dtype=np.uint8)
    for axis in range(3):
        votes += _fill_along(points, shape, axis)
    return votes >= 2


def _fill_along(points: np.ndarray, shape: tuple[int, int, int], axis: int) -> np.ndarray:
    """Parity fill with rays along ``axis``; ``points`` (F, 3, 3) in voxel indices."""
    u, v = [a for a in range(3) if a != axis]
    length = shape[axis]
    rays, depth = _ray_hits(points[..., [u, v, axis]], shape[u], shape[v])
    order = np.lexsort((depth, rays))
    rays, depth = rays[order], depth[order]
    rank = np.arange(len(rays)) - np.searchsorted(rays, rays)
    entry = np.flatnonzero((rank % 2 == 0)[:-1] & (rays[1:] == rays[:-1]))
    first = np.clip(np.ceil(depth[entry]), 0, length).astype(np.int64)
    stop = np.clip(np.floor(depth[entry + 1]) + 1, 0, length).astype(np.int64)
    steps = np.zeros((shape[u] * shape[v], length + 1), dtype=np.int8)
    np.add.at(steps, (rays[entry], first), 1)
    np.add.at(steps, (rays[entry], stop), -1)
    inside = np.cumsum(steps[:, :length], axis=1, dtype=np.int8) > 0
    return np.moveaxis(inside.reshape(shape[u], shape[v], length), (0, 1, 2), (u, v, axis))


def _ray_hits(points: np.ndarray, n_u: int, n_v: int) -> tuple[np.ndarray, np.ndarray]:
    """Where rays along the third coordinate cross the triangles.

    Args:
        points: (F, 3, 3) triangle vertices as (u, v, depth) in voxel indices.
        n_u, n_v: rays are at (i + offset, j + offset) for i < n_u, j < n_v.

    Returns:
        Ray numbers ``i * n_v + j`` (H,) and crossing depths (H,) in voxel indices.
    """
    rays, depths = [], []
    for start in range(0, len(points), _TRIANGLE_CHUNK):
        chunk = points[start:start + _TRIANGLE_CHUNK]
        edge1, edge2 = chunk[:, 1] - chunk[:, 0], chunk[:, 2] - chunk[:, 0]
        det = edge1[:, 0] * edge2[:, 1] - edge2[:, 0] * edge1[:, 1]
        chunk, edge1, edge2, det = (a[det != 0] for a in (chunk, edge1, edge2, det))
        tri, i, j = _rays_under(chunk, n_u, n_v)
        du, dv = i + _RAY_OFFSET[0] - chunk[tri, 0, 0], j + _RAY_OFFSET[1] - chunk[tri, 0, 1]
        s = (du * edge2[tri, 1] - edge2[tri, 0] * dv) / det[tri]
        t = (edge1[tri, 0] * dv - du * edge1[tri, 1]) / det[tri]
        hit = (s >= 0) & (t >= 0) & (s + t <= 1)
        rays.append((i * n_v + j)[hit])
        depths.append((chunk[tri, 0, 2] + s * edge1[tri, 2] + t * edge2[tri, 2])[hit])
    return np.concatenate(rays), np.concatenate(depths)


def _rays_under(points: np.ndarray, n_u: int, n_v: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(triangle, i, j) for every ray inside a triangle's (u, v) bounding box."""
    low = np.ceil(points[..., :2].min(axis=1) - _RAY_OFFSET).astype(np.int64)
    high = np.floor(points[..., :2].max(axis=1) - _RAY_OFFSET).astype(np.int64) + 1
    low, high = np.maximum(low, 0), np.minimum(high, [n_u, n_v])
    size = np.maximum(high - low, 0)
    count = size[:, 0] * size[:, 1]
    tri = np.repeat(np.arange(len(points)), count)
    k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    return tri, low[tri, 0] + k // size[tri, 1], low[tri, 1] + k % size[tri, 1]
