"""Solid primitives and the painting program that turns them into bone.

A skull is an ordered list of strokes: each adds or cuts one primitive. The
same program is evaluated on the voxel grid (each stroke only inside its
bounding box, which keeps a 64^3 skull at a few milliseconds) and at arbitrary
points (to place landmarks on the continuous surface, independent of R).

Every primitive answers ``inside(x, y, z)`` for coordinate arrays in mm that
broadcast against each other, and ``bounds()`` as (low, high) corners in mm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from bench.data.grid import axis_centers_mm


@dataclass(frozen=True)
class Ellipsoid:
    """Solid ellipsoid with semi-axes ``radii`` (mm) along the frame axes, then rotated.

    ``rotation`` (3, 3) maps the ellipsoid's own axes to the frame's.
    """

    centre: np.ndarray
    radii: np.ndarray
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        # Python floats keep float32 grids in float32 (NumPy's scalar promotion).
        cx, cy, cz = (float(c) for c in self.centre)
        dx, dy, dz = x - cx, y - cy, z - cz
        squares = []
        for axis in range(3):
            r0, r1, r2 = (float(r) / float(self.radii[axis]) for r in self.rotation[:, axis])
            squares.append((dx * r0 + dy * r1 + dz * r2) ** 2)
        return squares[0] + squares[1] + squares[2] <= 1.0

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        half = np.sqrt(((self.rotation * self.radii) ** 2).sum(axis=1))
        return self.centre - half, self.centre + half


@dataclass(frozen=True)
class Sweep:
    """An elliptic cross-section swept along a polyline: bars, arches, plates.

    At each vertex the cross-section has half-width ``half_width`` along the
    side direction and half-height ``half_height`` along ``up`` (made
    orthogonal to the segment); both are interpolated along each segment. A
    point belongs to the segment whose axis is nearest to it; the ends are
    rounded.

    Args:
        points: (K, 3) polyline vertices, mm.
        half_width: (K,) half-thickness along the side direction, mm.
        half_height: (K,) half-extent along ``up``, mm.
        up: (3,) direction of the section's height.
    """

    points: np.ndarray
    half_width: np.ndarray
    half_height: np.ndarray
    up: np.ndarray

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        shape = np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z))
        query = np.stack([np.broadcast_to(c, shape).ravel() for c in (x, y, z)], axis=1)
        start, segment = self.points[:-1], np.diff(self.points, axis=0)
        length2 = (segment ** 2).sum(axis=1)
        # Squared distance to each segment from dot products only, (M, K-1):
        # |q - s - t d|^2 = |q - s|^2 - 2 t (q - s).d + t^2 |d|^2, t clamped to [0, 1].
        along = query @ segment.T - (start * segment).sum(axis=1)
        t = np.clip(along / length2, 0.0, 1.0)
        distance2 = ((query ** 2).sum(axis=1, keepdims=True) - 2 * query @ start.T
                     + (start ** 2).sum(axis=1) - 2 * t * along + t * t * length2)
        k = np.argmin(distance2, axis=1)
        tk = t[np.arange(len(query)), k]
        offset = query - start[k] - tk[:, None] * segment[k]
        tangent = segment[k] / np.sqrt(length2[k])[:, None]
        up = self.up - (tangent @ self.up)[:, None] * tangent
        up /= np.linalg.norm(up, axis=1, keepdims=True)
        side = np.cross(tangent, up)
        width = self.half_width[k] + tk * (self.half_width[k + 1] - self.half_width[k])
        height = self.half_height[k] + tk * (self.half_height[k + 1] - self.half_height[k])
        across = (offset * side).sum(axis=1) / width
        along_up = (offset * up).sum(axis=1) / height
        # Zero inside a segment; beyond an end it rounds the cap off.
        beyond = (offset * tangent).sum(axis=1) / np.minimum(width, height)
        return (across ** 2 + along_up ** 2 + beyond ** 2 <= 1.0).reshape(shape)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        reach = max(self.half_width.max(), self.half_height.max())
        return self.points.min(axis=0) - reach, self.points.max(axis=0) + reach


@dataclass(frozen=True)
class Bump:
    """A smooth bump on the unit sphere: ``amplitude * exp((d . direction - 1) / width^2)``.

    Used to deform the vault's radius and thickness direction by direction;
    ``width`` is about the bump's angular radius in radians.
    """

    direction: npt.ArrayLike
    width: float
    amplitude: float

    def __call__(self, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray) -> np.ndarray:
        d = np.asarray(self.direction, dtype=float)
        d0, d1, d2 = (float(c) for c in d / np.linalg.norm(d))
        cosine = dx * d0 + dy * d1 + dz * d2
        return float(self.amplitude) * np.exp((cosine - 1.0) / float(self.width) ** 2)


@dataclass(frozen=True)
class VaultShell:
    """The cranial vault: a bone shell outside a deformed radial inner surface.

    Along each ray from ``centre``, bone lies between the inner surface and
    ``thickness`` mm beyond it. The inner surface is the template's radial
    table, scaled per axis by ``scale`` and multiplied direction by direction by
    ``1 + sum(shape_bumps)``; the thickness is ``thickness_mm * (1 +
    sum(thickness_bumps))``. Directions are taken in the scaled frame, so the
    shell thickness is measured in mm along the ray. With ``cavity`` the
    primitive is instead the space inside the inner surface; ``clip`` limits
    its bounding box (low, high corners in mm).
    """

    radius_table: np.ndarray
    centre: np.ndarray
    scale: np.ndarray
    thickness_mm: float
    shape_bumps: tuple[Bump, ...] = ()
    thickness_bumps: tuple[Bump, ...] = ()
    cavity: bool = False
    clip: tuple[np.ndarray, np.ndarray] | None = None
    _inner: np.ndarray = field(init=False, repr=False, compare=False)
    _thickness: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Bumps depend on direction only: apply them once to the tables rather
        # than at every voxel.
        rows, cols = self.radius_table.shape
        polar = (np.arange(rows) + 0.5) * np.pi / rows
        azimuth = -np.pi + (np.arange(cols) + 0.5) * 2 * np.pi / cols
        polar, azimuth = np.meshgrid(polar, azimuth, indexing="ij")
        dx, dy, dz = np.sin(polar) * np.cos(azimuth), np.sin(polar) * np.sin(azimuth), np.cos(polar)
        zero = np.zeros_like(dx)
        inner = self.radius_table * (1.0 + sum((b(dx, dy, dz) for b in self.shape_bumps), zero))
        thickness = self.thickness_mm * (1.0 + sum((b(dx, dy, dz) for b in self.thickness_bumps),
                                                   zero))
        object.__setattr__(self, "_inner", inner.astype(np.float32))
        object.__setattr__(self, "_thickness", thickness.astype(np.float32))

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Bone of the shell, or with ``cavity`` the space inside the inner surface."""
        cx, cy, cz = (float(c) for c in self.centre)
        sx, sy, sz = (float(c) for c in self.scale)
        px, py, pz = x - cx, y - cy, z - cz
        qx, qy, qz = px / sx, py / sy, pz / sz
        radius = np.sqrt(qx * qx + qy * qy + qz * qz) + 1e-6
        if self.cavity:
            return radius < _lookup(self._inner, qx, qy, qz, radius)
        inner, thickness = _lookup((self._inner, self._thickness), qx, qy, qz, radius)
        distance = np.sqrt(px * px + py * py + pz * pz) + 1e-6
        return (radius >= inner) & (radius <= inner + thickness * radius / distance)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        growth = 1.0 + sum(max(b.amplitude, 0.0) for b in self.shape_bumps)
        thickness = self.thickness_mm * (1.0 + sum(max(b.amplitude, 0.0)
                                                   for b in self.thickness_bumps))
        reach = self.radius_table.max() * growth * self.scale + thickness
        low, high = self.centre - reach, self.centre + reach
        if self.clip is not None:
            low, high = np.maximum(low, self.clip[0]), np.minimum(high, self.clip[1])
        return low, high


def _lookup(tables, qx: np.ndarray, qy: np.ndarray, qz: np.ndarray, radius: np.ndarray):
    """Bilinear lookup of (polar, azimuth) tables in the direction of q (periodic azimuth).

    ``tables`` is one (P, A) array or a tuple of them; returns the same structure
    of arrays shaped like ``qx``.
    """
    single = isinstance(tables, np.ndarray)
    rows, cols = (tables if single else tables[0]).shape
    polar = np.arccos(np.clip(qz / radius, -1.0, 1.0)) * np.float32(rows / np.pi) - 0.5
    azimuth = (np.arctan2(qy, qx) + np.float32(np.pi)) * np.float32(cols / (2 * np.pi)) - 0.5
    r0 = np.clip(np.floor(polar), 0, rows - 2).astype(np.intp)
    c0 = np.floor(azimuth).astype(np.intp)
    fr = np.clip(polar - r0, 0.0, 1.0)
    fc = azimuth - c0
    c0 %= cols
    c1 = (c0 + 1) % cols
    results = []
    for table in ((tables,) if single else tables):
        top = table[r0, c0] * (1 - fc) + table[r0, c1] * fc
        bottom = table[r0 + 1, c0] * (1 - fc) + table[r0 + 1, c1] * fc
        results.append(top * (1 - fr) + bottom * fr)
    return results[0] if single else tuple(results)


@dataclass(frozen=True)
class Stroke:
    """One step of a painting program: add or cut a primitive in one part."""

    shape: Ellipsoid | Sweep | VaultShell
    add: bool = True


def paint(strokes: list[Stroke], resolution: int, field_of_view_mm: float,
          origin_mm: np.ndarray) -> np.ndarray:
    """Rasterise strokes in order on the common grid.

    Args:
        strokes: the program, in a frame whose origin lies at ``origin_mm`` in
            grid coordinates.
        resolution: grid size R.
        field_of_view_mm: edge of the cubic field of view.
        origin_mm: (3,) position of the strokes' origin in the grid, mm.

    Returns:
        bool (R, R, R) occupancy, axes (x, y, z); voxel centres as in
        :mod:`bench.data.grid`.
    """
    volume = np.zeros((resolution,) * 3, dtype=bool)
    centres = [axis_centers_mm(resolution, field_of_view_mm) - o for o in origin_mm]
    size = field_of_view_mm / resolution
    for stroke in strokes:
        low, high = (corner + origin_mm for corner in stroke.shape.bounds())
        start = np.clip(np.floor((low + field_of_view_mm / 2) / size).astype(int), 0, resolution)
        stop = np.clip(np.ceil((high + field_of_view_mm / 2) / size).astype(int) + 1, 0,
                       resolution)
        if np.any(stop <= start):
            continue
        box = tuple(slice(a, b) for a, b in zip(start, stop))
        x = centres[0][box[0], None, None]
        y = centres[1][None, box[1], None]
        z = centres[2][None, None, box[2]]
        inside = stroke.shape.inside(x, y, z)
        if stroke.add:
            volume[box] |= inside
        else:
            volume[box] &= ~inside
    return volume


def occupied(strokes: list[Stroke], points: np.ndarray) -> np.ndarray:
    """Evaluate the same program at points (M, 3) in the strokes' frame, mm; bool (M,)."""
    points = np.asarray(points, dtype=float)
    result = np.zeros(len(points), dtype=bool)
    points_low, points_high = points.min(axis=0), points.max(axis=0)
    for stroke in strokes:
        low, high = stroke.shape.bounds()
        if np.any(low > points_high) or np.any(high < points_low):
            continue
        near = np.all((points >= low) & (points <= high), axis=1)
        if not near.any():
            continue
        p = points[near]
        inside = stroke.shape.inside(p[:, 0], p[:, 1], p[:, 2])
        if stroke.add:
            result[near] |= inside
        else:
            result[near] &= ~inside
    return result
