"""Preview renders of a skull dataset: shaded surface views, a class grid and slices.

Each skull's bone surface is extracted by marching cubes, in millimetres,
from a blur of the binary volume that is kept on the correct side of the
isolevel at every voxel centre (smooth, yet every bone voxel is inside and
every other voxel outside). It is drawn by a small z-buffer rasteriser in
orthographic projection with Phong-interpolated normals, a key and a fill
light, screen-space darkening of cavities (orbits, nasal aperture, foramina)
and depth cueing. The rasteriser is plain numpy: the three views of a 96^3
skull take about two seconds, and the images are identical from run to run.

Camera conventions follow the RAS axes of :mod:`bench.data.grid`: the frontal
view looks at the face (the subject's right on the image's left), the left
lateral view has the face pointing to the image's left, the superior view
looks down on the vertex with the face at the top of the image.

Files written by :func:`write_previews` (each atomically):

- ``skull_views.png``: frontal, left lateral and superior views of one skull;
- ``skull_grid.png``: an oblique and a superior view per subject, classes
  taken in turn (the vault shape classes are told apart from above);
- ``skull_slices.png``: mid axial, coronal and sagittal slices of that skull.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
import trimesh.smoothing
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import ndimage
from skimage import measure

from bench.data.dataset import SkullDataset
from bench.data.grid import index_to_mm
from bench.core.errors import BenchError
from bench.core.io import atomic_path

BONE_RGB = np.array([0.91, 0.86, 0.75])
BACKGROUND_RGB = np.array([1.0, 1.0, 1.0])
SCALE_BAR_MM = 50.0
VIEWS_FILE = "skull_views.png"
GRID_FILE = "skull_grid.png"
SLICES_FILE = "skull_slices.png"
DPI = 100


@dataclass(frozen=True)
class View:
    """An orthographic camera.

    Attributes:
        name: panel title.
        toward_viewer: direction (x, y, z) in RAS from the skull to the viewer.
        up: world direction that should point up in the image.
        edge_labels: anatomical direction letters at the (left, right, top,
            bottom) edges of the image; empty strings for none.
    """

    name: str
    toward_viewer: tuple[float, float, float]
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    edge_labels: tuple[str, str, str, str] = ("", "", "", "")

    def basis(self) -> np.ndarray:
        """Rows: image right, image up and toward-viewer unit vectors, shape (3, 3)."""
        toward = np.asarray(self.toward_viewer, dtype=np.float64)
        toward = toward / np.linalg.norm(toward)
        right = np.cross(np.asarray(self.up, dtype=np.float64), toward)
        right = right / np.linalg.norm(right)
        return np.stack([right, np.cross(toward, right), toward])


FRONTAL = View("frontal", (0.0, 1.0, 0.0), edge_labels=("R", "L", "S", "I"))
LEFT_LATERAL = View("left lateral", (-1.0, 0.0, 0.0), edge_labels=("A", "P", "S", "I"))
SUPERIOR = View("superior", (0.0, 0.0, 1.0), up=(0.0, 1.0, 0.0),
                edge_labels=("L", "R", "A", "P"))
OBLIQUE = View("oblique front-left", (-0.62, 0.76, 0.2))
ORTHOGONAL_VIEWS = (FRONTAL, LEFT_LATERAL, SUPERIOR)
GRID_VIEWS = (OBLIQUE, SUPERIOR)
GRID_COLUMNS = 4


@dataclass(frozen=True)
class Mesh:
    """A triangle surface in millimetres (RAS).

    Attributes:
        vertices: float array (V, 3), mm.
        faces: int array (F, 3) of vertex indices.
        normals: float array (V, 3), unit outward normals.
    """

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray

    def center(self) -> np.ndarray:
        """Centre of the axis-aligned bounding box, shape (3,), mm."""
        return (self.vertices.min(axis=0) + self.vertices.max(axis=0)) / 2


def extract_surface(volume: np.ndarray, voxel_size_mm: float, field_of_view_mm: float,
                    subject_id: str = "?", sigma_voxels: float = 0.6,
                    normal_sigma_voxels: float = 1.0, taubin_iterations: int = 10) -> Mesh:
    """Bone surface of one binary volume by marching cubes, in grid millimetres.

    Args:
        volume: bool array (R, R, R), axes (x, y, z).
        voxel_size_mm: voxel edge length.
        field_of_view_mm: edge of the cubic field of view centred on the origin.
        subject_id: named in the error when the volume has no bone.
        sigma_voxels: Gaussian smoothing of the binary volume before the 0.5
            isosurface; 0 gives the raw voxel staircase.
        normal_sigma_voxels: further smoothing of the field whose gradient
            gives the shading normals.
        taubin_iterations: Taubin smoothing steps of the mesh (volume-preserving),
            which rounds off the voxel terraces on silhouettes.

    Raises:
        BenchError: the volume contains no bone voxel.
    """
    volume = np.asarray(volume, dtype=bool)
    _require_bone(volume, subject_id)
    margin = 2 + int(np.ceil(3 * sigma_voxels))
    lower = np.argwhere(volume).min(axis=0)
    upper = np.argwhere(volume).max(axis=0) + 1
    crop = volume[tuple(slice(a, b) for a, b in zip(lower, upper))]
    bone = np.pad(crop, margin)
    field = _constrained_blur(bone, sigma_voxels)
    vertices, faces, _, _ = measure.marching_cubes(
        field, level=0.5, spacing=(voxel_size_mm,) * 3)
    normals = _smooth_normals(field, vertices / voxel_size_mm, normal_sigma_voxels)
    origin = (lower - margin + 0.5) * voxel_size_mm - field_of_view_mm / 2
    surface = trimesh.Trimesh(vertices.astype(np.float64) + origin, faces.astype(np.int64),
                              process=False)
    if taubin_iterations > 0:
        trimesh.smoothing.filter_taubin(surface, lamb=0.5, nu=0.53,
                                        iterations=taubin_iterations)
    return Mesh(np.asarray(surface.vertices), np.asarray(surface.faces), normals)


def _require_bone(volume: np.ndarray, subject_id: str) -> None:
    """Raise a BenchError naming the subject when its volume has no bone voxel."""
    if not volume.any():
        raise BenchError(f"subject {subject_id!r}: the volume has no bone voxel, nothing to "
                         f"render; check the import threshold or the generator output.")


def _constrained_blur(bone: np.ndarray, sigma_voxels: float, gap: float = 0.02) -> np.ndarray:
    """Gaussian blur of a binary volume kept above 0.5 in bone and below 0.5 outside.

    The 0.5 isosurface then separates exactly the voxels of the binary volume
    (no thin plate vanishes, no gap closes) while its position between voxel
    centres follows the blur, which smooths away most of the staircase.
    """
    field = ndimage.gaussian_filter(bone.astype(np.float32), sigma_voxels)
    return np.where(bone, np.maximum(field, 0.5 + gap), np.minimum(field, 0.5 - gap))


def _smooth_normals(field: np.ndarray, vertices: np.ndarray, sigma_voxels: float) -> np.ndarray:
    """Outward unit normals (V, 3) from the gradient of a more smoothed field.

    Normals from a wider blur than the surface itself hide the voxel staircase
    in the shading while the silhouette keeps the finer surface.
    """
    smooth = ndimage.gaussian_filter(field, sigma_voxels) if sigma_voxels > 0 else field
    gradient = np.stack([ndimage.map_coordinates(g, vertices.T, order=1)
                         for g in np.gradient(smooth)], axis=1).astype(np.float64)
    return -gradient / np.maximum(np.linalg.norm(gradient, axis=1, keepdims=True), 1e-12)


def render(mesh: Mesh, view: View, center_mm: np.ndarray, half_width_mm: float,
           size_px: int, supersample: int = 2) -> np.ndarray:
    """Shaded orthographic image of a mesh, RGBA float array (size_px, size_px, 4).

    The image covers the square of half-width ``half_width_mm`` around
    ``center_mm`` projected on the view plane; alpha is the bone coverage.
    """
    n = size_px * supersample
    basis = view.basis()
    camera = (mesh.vertices - center_mm) @ basis.T
    pixel_mm = 2 * half_width_mm / n
    points = np.stack([(camera[:, 0] + half_width_mm) / pixel_mm,
                       (half_width_mm - camera[:, 1]) / pixel_mm, camera[:, 2]], axis=1)
    face_id, bary, depth = _rasterise(points, mesh.faces, n)
    covered = face_id >= 0
    normals = np.einsum("pkj,pk->pj", (mesh.normals @ basis.T)[mesh.faces[face_id[covered]]],
                        bary[covered])
    rgb = np.broadcast_to(BACKGROUND_RGB, (n, n, 3)).copy()
    dim = _depth_darkening(depth, covered, pixel_mm) * _depth_cue(depth, covered, half_width_mm)
    shade = _shade(normals) * dim[covered][:, None]
    rgb[covered] = np.clip(shade, 0.0, 1.0)
    rgba = np.concatenate([rgb, covered[..., None].astype(np.float64)], axis=2)
    return rgba.reshape(size_px, supersample, size_px, supersample, 4).mean(axis=(1, 3))


def _rasterise(points: np.ndarray, faces: np.ndarray,
               n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z-buffer of triangles whose vertices are (column, row, depth) in pixels.

    Pixel (r, c) has its centre at (c + 0.5, r + 0.5). Each triangle is cut
    into pixel rows and each row into the run of pixel centres inside it, so
    the work is proportional to the covered pixels.

    Returns the front face per pixel (n, n) (-1 for none), its barycentric
    weights (n, n, 3) and the depth (n, n), larger meaning nearer the viewer.
    """
    face, row = _triangle_rows(points, faces, n)
    slope, offset = _barycentric_lines(points[faces[face]], row + 0.5)
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = -offset / slope
    lower = np.where(slope > 0, bound, -np.inf).max(axis=1)
    upper = np.where(slope < 0, bound, np.inf).min(axis=1)
    flat = (slope == 0) & (offset < 0)
    first = np.maximum(np.ceil(lower - 0.5 - 1e-9), 0).astype(np.int64)
    last = np.minimum(np.floor(upper - 0.5 + 1e-9), n - 1).astype(np.int64)
    count = np.where(flat.any(axis=1), 0, np.maximum(last - first + 1, 0))
    run = np.repeat(np.arange(len(count)), count)
    col = first[run] + _ranks(count)
    weights = slope[run] * (col + 0.5)[:, None] + offset[run]
    depth = (weights * points[faces[face[run]], 2]).sum(axis=1)
    pixel = row[run] * n + col
    zbuf = np.full(n * n, -np.inf)
    np.maximum.at(zbuf, pixel, depth)
    front = depth >= zbuf[pixel]
    face_id = np.full(n * n, -1)
    bary = np.zeros((n * n, 3))
    face_id[pixel[front]] = face[run[front]]
    bary[pixel[front]] = weights[front]
    return face_id.reshape(n, n), bary.reshape(n, n, 3), zbuf.reshape(n, n)


def _triangle_rows(points: np.ndarray, faces: np.ndarray,
                   n: int) -> tuple[np.ndarray, np.ndarray]:
    """(face, row) pairs for every image row whose pixel centres a triangle's box spans."""
    ys = points[faces, 1]
    top = np.maximum(np.ceil(ys.min(axis=1) - 0.5), 0).astype(np.int64)
    bottom = np.minimum(np.floor(ys.max(axis=1) - 0.5), n - 1).astype(np.int64)
    count = np.maximum(bottom - top + 1, 0)
    face = np.repeat(np.arange(len(faces)), count)
    return face, top[face] + _ranks(count)


def _barycentric_lines(tri: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric weights along image rows as ``slope * x + offset``, each (M, 3).

    Args:
        tri: (M, 3, >=2) triangle vertices, columns x then y in pixels.
        y: (M,) row centre of each entry.
    """
    a, e1, e2 = tri[:, 0, :2], tri[:, 1, :2] - tri[:, 0, :2], tri[:, 2, :2] - tri[:, 0, :2]
    det = e1[:, 0] * e2[:, 1] - e2[:, 0] * e1[:, 1]
    det = np.where(np.abs(det) < 1e-12, np.nan, det)
    dy = y - a[:, 1]
    s1, o1 = e2[:, 1] / det, (-a[:, 0] * e2[:, 1] - e2[:, 0] * dy) / det
    s2, o2 = -e1[:, 1] / det, (e1[:, 0] * dy + a[:, 0] * e1[:, 1]) / det
    slope = np.stack([-(s1 + s2), s1, s2], axis=1)
    offset = np.stack([1 - o1 - o2, o1, o2], axis=1)
    degenerate = np.isnan(det)[:, None]
    return np.where(degenerate, 0.0, slope), np.where(degenerate, -1.0, offset)


def _ranks(count: np.ndarray) -> np.ndarray:
    """0, 1, ..., c - 1 for each c in ``count``, concatenated."""
    starts = np.cumsum(count) - count
    return np.arange(int(count.sum())) - np.repeat(starts, count)


def _shade(normals: np.ndarray) -> np.ndarray:
    """Bone colour under a key and a fill light, two-sided, RGB (P, 3).

    ``normals`` (P, 3) are in camera coordinates (right, up, toward viewer).
    """
    normals = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    normals = normals * np.where(normals[:, 2:] < 0, -1.0, 1.0)
    key = np.array([-0.45, 0.55, 0.70]) / np.linalg.norm([-0.45, 0.55, 0.70])
    fill = np.array([0.60, -0.20, 0.77]) / np.linalg.norm([0.60, -0.20, 0.77])
    half = (key + [0, 0, 1]) / np.linalg.norm(key + [0, 0, 1])
    diffuse = 0.72 * np.clip(normals @ key, 0, None) + 0.25 * np.clip(normals @ fill, 0, None)
    specular = 0.18 * np.clip(normals @ half, 0, None) ** 24
    return BONE_RGB * (0.22 + diffuse[:, None]) + specular[:, None]


def _depth_darkening(depth: np.ndarray, covered: np.ndarray, pixel_mm: float,
                     radius_mm: float = 8.0, strength_per_mm: float = 0.04) -> np.ndarray:
    """Darkening factor (n, n) for pixels lying behind their neighbourhood (cavities).

    A cheap screen-space ambient occlusion: the blurred depth of the covered
    neighbourhood minus the pixel's own depth, in mm, scaled and clipped.
    """
    size = max(3, int(round(2 * radius_mm / pixel_mm)) | 1)
    weight = _box_blur(covered.astype(np.float64), size)
    blurred = _box_blur(np.where(covered, depth, 0.0), size) / np.maximum(weight, 1e-9)
    return 1.0 - np.clip((blurred - depth) * strength_per_mm, 0.0, 0.55)


def _depth_cue(depth: np.ndarray, covered: np.ndarray, half_width_mm: float,
               fog: float = 0.5) -> np.ndarray:
    """Darkening factor (n, n) growing with distance behind the nearest surface.

    Surfaces seen through openings (the inside of the vault behind the orbits)
    lie far behind the face and come out darker, which reads as depth. A view that
    covers no pixel (a sample with its bone outside the frame) is left undarkened.
    """
    if not covered.any():
        return np.ones_like(depth)
    nearest = depth[covered].max()
    return 1.0 - fog * np.clip((nearest - depth) / (2 * half_width_mm), 0.0, 1.0)


def _box_blur(image: np.ndarray, size: int) -> np.ndarray:
    """Two passes of a box filter: a cheap, smooth low-pass whose cost ignores ``size``."""
    return ndimage.uniform_filter(ndimage.uniform_filter(image, size), size)


def grid_subjects(dataset: SkullDataset, n: int) -> list[int]:
    """Indices of up to ``n`` subjects, taking the classes in turn (deterministic).

    Classes are visited in label order (unknown labels, -1, last), and within a
    class the subjects in dataset order; without labels, the first ``n``.
    """
    if dataset.labels is None:
        return list(range(min(n, len(dataset))))
    labels = np.asarray(dataset.labels)
    order = sorted(set(labels.tolist()), key=lambda label: (label < 0, label))
    queues = [list(np.flatnonzero(labels == label)) for label in order]
    chosen: list[int] = []
    while len(chosen) < min(n, len(dataset)):
        for queue in queues:
            if queue and len(chosen) < n:
                chosen.append(int(queue.pop(0)))
    return chosen


def class_name(dataset: SkullDataset, index: int) -> str:
    """Class name of subject ``index``; "unlabelled" where there is none."""
    if dataset.labels is None or dataset.labels[index] < 0:
        return "unlabelled"
    label = int(dataset.labels[index])
    return dataset.class_names[label] if label < len(dataset.class_names) else f"class {label}"


def write_previews(dataset: SkullDataset, out_dir: str | Path, n: int = 16,
                   subject: int = 0, size_px: int = 520) -> list[Path]:
    """Render a dataset to PNG files in ``out_dir``; return their paths.

    Args:
        dataset: the skulls; volumes (N, R, R, R).
        out_dir: folder, created if missing.
        n: at most this many subjects in the grid, classes taken in turn.
        subject: index of the subject shown in the views and the slices.
        size_px: edge of one view panel in pixels.

    Raises:
        BenchError: empty dataset, n < 1, subject out of range, or a rendered
            subject without bone.
    """
    if len(dataset) == 0:
        raise BenchError(f"dataset {dataset.name!r} has no subjects; nothing to preview.")
    if n < 1:
        raise BenchError(f"preview: n must be at least 1, got {n}")
    if not 0 <= subject < len(dataset):
        raise BenchError(f"preview: subject must be an index in [0, {len(dataset)}), "
                         f"got {subject}")
    out_dir = Path(out_dir)
    views = _views_figure(dataset, subject, size_px)
    grid = _grid_figure(dataset, grid_subjects(dataset, n), max(size_px * 2 // 5, 120))
    slices = _slices_figure(dataset, subject)
    return [_save(views, out_dir / VIEWS_FILE), _save(grid, out_dir / GRID_FILE),
            _save(slices, out_dir / SLICES_FILE)]


def _surface(dataset: SkullDataset, index: int) -> Mesh:
    """Bone surface of subject ``index`` of the dataset, in mm."""
    return extract_surface(dataset.volumes[index], dataset.voxel_size_mm,
                           dataset.field_of_view_mm, dataset.subject_ids[index])


def _half_width(meshes: list[Mesh], views: tuple[View, ...], margin: float = 1.2) -> float:
    """Half-width (mm) of a square that holds every mesh in every view, with a margin."""
    extent = max(np.abs((m.vertices - m.center()) @ v.basis()[:2].T).max()
                 for m in meshes for v in views)
    return margin * float(extent)


def _subject_line(dataset: SkullDataset, index: int) -> str:
    """Figure title: dataset, subject id, class and grid."""
    return (f"{dataset.name} · subject {dataset.subject_ids[index]} · "
            f"class {class_name(dataset, index)} · {dataset.resolution}³ voxels of "
            f"{dataset.voxel_size_mm:.2f} mm")


def _views_figure(dataset: SkullDataset, index: int, size_px: int) -> Figure:
    """Frontal, left lateral and superior views of one subject at one scale."""
    mesh = _surface(dataset, index)
    half = _half_width([mesh], ORTHOGONAL_VIEWS)
    fig, axes = _panel_figure(1, 3, size_px, _subject_line(dataset, index))
    for ax, view in zip(axes, ORTHOGONAL_VIEWS):
        _show_render(ax, render(mesh, view, mesh.center(), half, size_px), half)
        ax.set_title(view.name, fontsize=11)
        _letters(ax, view.edge_labels, half, colour="0.35")
        _scale_bar(ax, half)
    return fig


def _grid_figure(dataset: SkullDataset, indices: list[int], size_px: int) -> Figure:
    """Each subject as an oblique and a superior view, side by side, all at one scale."""
    meshes = [_surface(dataset, i) for i in indices]
    half = _half_width(meshes, GRID_VIEWS, margin=1.08)
    cols = min(len(indices), GRID_COLUMNS)
    rows = -(-len(indices) // cols)
    title = (f"{dataset.name}: {len(indices)} subjects, "
             f"{' and '.join(v.name for v in GRID_VIEWS)} views, same scale")
    fig, axes = _panel_figure(rows, cols * len(GRID_VIEWS), size_px, title, panel_title_px=40)
    for k, ax in enumerate(axes):
        subject, view = divmod(k, len(GRID_VIEWS))
        ax.set_axis_off()
        if subject >= len(indices):
            continue
        mesh = meshes[subject]
        _show_render(ax, render(mesh, GRID_VIEWS[view], mesh.center(), half, size_px), half)
        if view == 0:
            index = indices[subject]
            ax.set_title(f"{class_name(dataset, index)}\n{dataset.subject_ids[index]}",
                         fontsize=10, x=len(GRID_VIEWS) / 2)
    _scale_bar(axes[1], half)
    return fig


def _panel_figure(rows: int, cols: int, size_px: int, title: str,
                  panel_title_px: int = 28, header_px: int = 40) -> tuple[Figure, list[Axes]]:
    """A figure of square image panels of ``size_px`` pixels, each under its own title."""
    cell_h = size_px + panel_title_px
    width, height = cols * size_px, rows * cell_h + header_px
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    fig.suptitle(title, fontsize=12, y=1 - 12 / height, va="top")
    axes = []
    for k in range(rows * cols):
        row, col = divmod(k, cols)
        bottom = height - header_px - row * cell_h - cell_h
        axes.append(fig.add_axes((col * size_px / width, bottom / height,
                                  size_px / width, size_px / height)))
    return fig, axes


def _slices_figure(dataset: SkullDataset, index: int) -> Figure:
    """Mid axial, coronal and sagittal slices through the bone's bounding-box centre."""
    volume = dataset.volumes[index]
    _require_bone(volume, dataset.subject_ids[index])
    points = np.argwhere(volume)
    mid = (points.min(axis=0) + points.max(axis=0)) // 2
    at_mm = index_to_mm(mid, dataset.resolution, dataset.field_of_view_mm)
    half = dataset.field_of_view_mm / 2
    planes = [(f"axial, z = {at_mm[2]:.0f} mm", volume[:, :, mid[2]].T[::-1, ::-1],
               ("R", "L", "A", "P")),
              (f"coronal, y = {at_mm[1]:.0f} mm", volume[:, mid[1], :].T[::-1, ::-1],
               ("R", "L", "S", "I")),
              (f"sagittal, x = {at_mm[0]:.0f} mm", volume[mid[0], :, :].T[::-1, ::-1],
               ("A", "P", "S", "I"))]
    fig = Figure(figsize=(12, 4.6), dpi=DPI)
    fig.suptitle(_subject_line(dataset, index), fontsize=12)
    for k, (name, image, letters) in enumerate(planes):
        ax = fig.add_subplot(1, 3, k + 1)
        ax.imshow(image, cmap="bone", extent=(-half, half, -half, half), interpolation="nearest")
        ax.set_title(name, fontsize=11)
        ax.set_axis_off()
        _letters(ax, letters, half, colour="yellow")
        _scale_bar(ax, half, colour="white")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.86, wspace=0.04)
    return fig


def _show_render(ax: Axes, rgba: np.ndarray, half: float) -> None:
    """Show a render in a panel whose data coordinates are camera-plane mm."""
    ax.imshow(rgba[..., :3], extent=(-half, half, -half, half), interpolation="antialiased")
    ax.set_xlim(-half, half)
    ax.set_ylim(-half, half)
    ax.set_aspect("equal")
    ax.set_axis_off()


def _letters(ax: Axes, letters: tuple[str, str, str, str], half: float, colour: str) -> None:
    """Direction letters at the left, right, top and bottom edges of a panel."""
    spots = [(-0.93, 0.0), (0.93, 0.0), (0.0, 0.93), (0.0, -0.93)]
    for letter, (x, y) in zip(letters, spots):
        ax.text(x * half, y * half, letter, color=colour, fontsize=11, fontweight="bold",
                ha="center", va="center")


def _scale_bar(ax: Axes, half: float, colour: str = "0.2") -> None:
    """A ``SCALE_BAR_MM`` bar in the bottom-right corner of a panel in mm coordinates."""
    x0, y0 = 0.95 * half - SCALE_BAR_MM, -0.95 * half
    ax.plot([x0, x0 + SCALE_BAR_MM], [y0, y0], color=colour, linewidth=3,
            solid_capstyle="butt")
    ax.text(x0 + SCALE_BAR_MM / 2, y0 + 0.03 * half, f"{SCALE_BAR_MM:.0f} mm", color=colour,
            fontsize=9, ha="center", va="bottom")


def _save(fig: Figure, path: Path) -> Path:
    """Write a figure as PNG atomically; return the path."""
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return path
