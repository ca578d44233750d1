"""Tests of the preview renders: files, pixels, camera conventions and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from skimage import measure

from bench.data import preview
from bench.data.dataset import SkullDataset
from bench.data.grid import axis_centers_mm
from bench.core.errors import BenchError

RESOLUTION = 32
FILES = {preview.VIEWS_FILE, preview.GRID_FILE, preview.SLICES_FILE}


def toy_skull(resolution: int, scale: float = 1.0) -> np.ndarray:
    """A stand-in skull (R, R, R): ellipsoidal shell with orbits and a U-shaped jaw bar."""
    c = axis_centers_mm(resolution)
    x, y, z = np.meshgrid(c, c, c, indexing="ij")
    q = (x / (70 * scale)) ** 2 + (y / (90 * scale)) ** 2 + (z / (65 * scale)) ** 2
    shell = (q < 1.0) & (q > 0.7)
    for side in (-1, 1):
        shell &= ~(((x - side * 32 * scale) ** 2 + (z + 5) ** 2 < (18 * scale) ** 2) & (y > 40))
    ring = np.hypot(x / (45 * scale), (y - 20) / (70 * scale))
    jaw = (np.abs(ring - 1) < 0.2) & (y > 20) & (np.abs(z + 62 * scale) < 9)
    return shell | jaw


def toy_dataset(n: int = 5, n_classes: int = 2, resolution: int = RESOLUTION) -> SkullDataset:
    volumes = np.stack([toy_skull(resolution, 0.9 + 0.04 * i) for i in range(n)])
    return SkullDataset(name="toy", volumes=volumes,
                        subject_ids=[f"toy-{i:02d}" for i in range(n)],
                        split=np.array(["train"] * n), labels=np.arange(n) % n_classes,
                        class_names=tuple(f"class-{k}" for k in range(n_classes)))


def sphere_mesh(radius_mm: float, center_mm: tuple[float, float, float]) -> preview.Mesh:
    """A fine sphere by marching cubes of its analytic distance, independent of the voxels."""
    step = 2.0
    axis = np.arange(-radius_mm - 4, radius_mm + 4 + step, step)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    distance = np.sqrt(x ** 2 + y ** 2 + z ** 2) - radius_mm
    vertices, faces, _, _ = measure.marching_cubes(distance, 0.0, spacing=(step,) * 3)
    vertices = vertices + axis[0]
    normals = vertices / np.linalg.norm(vertices, axis=1, keepdims=True)
    return preview.Mesh(vertices + np.asarray(center_mm), faces.astype(np.int64), normals)


def bone_pixels(image: np.ndarray) -> np.ndarray:
    """Boolean mask of bone-tinted pixels (warmer than grey background, text and bars)."""
    return image[..., 0] - image[..., 2] > 0.02


def test_write_previews_writes_three_valid_pngs(tmp_path: Path) -> None:
    dataset = toy_dataset()
    paths = preview.write_previews(dataset, tmp_path / "out", n=4, size_px=240)
    assert [p.name for p in paths] == [preview.VIEWS_FILE, preview.GRID_FILE,
                                       preview.SLICES_FILE]
    assert {p.name for p in (tmp_path / "out").iterdir()} == FILES  # no temporary leftovers
    for path in paths:
        image = imread(path)
        assert image.ndim == 3 and image.shape[0] >= 200 and image.shape[1] >= 400
        assert image.shape[1] / image.shape[0] < 6
    views = imread(paths[0])
    bone = bone_pixels(views)
    assert 0.1 < bone.mean() < 0.8
    assert views[..., :3][bone].mean(axis=1).std() > 0.13  # lit and shaded, not flat


def test_write_previews_is_deterministic(tmp_path: Path) -> None:
    dataset = toy_dataset(3)
    first = preview.write_previews(dataset, tmp_path / "a", n=3, size_px=160)
    second = preview.write_previews(dataset, tmp_path / "b", n=3, size_px=160)
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes()


def test_grid_subjects_cover_every_class_round_robin() -> None:
    dataset = toy_dataset(n=9, n_classes=3)
    dataset.labels = np.array([2, 2, 2, 2, 0, 0, 1, -1, 1])
    chosen = preview.grid_subjects(dataset, 5)
    assert chosen == [4, 6, 0, 7, 5]
    assert {int(dataset.labels[i]) for i in chosen} == {-1, 0, 1, 2}
    assert preview.grid_subjects(dataset, 100) == [4, 6, 0, 7, 5, 8, 1, 2, 3]
    dataset.labels = None
    assert preview.grid_subjects(dataset, 4) == [0, 1, 2, 3]


def test_grid_png_has_one_panel_per_subject(tmp_path: Path) -> None:
    dataset = toy_dataset(n=6, n_classes=3)
    paths = preview.write_previews(dataset, tmp_path, n=3, size_px=200)
    grid = imread(paths[1])
    columns = bone_pixels(grid).any(axis=0)
    starts = np.flatnonzero(columns[1:] & ~columns[:-1])
    panels = len(starts) + int(columns[0])
    assert panels == 3 * len(preview.GRID_VIEWS)  # three subjects side by side, each twice


def test_render_matches_sphere_area_and_depth() -> None:
    radius, half, size = 40.0, 100.0, 200
    mesh = sphere_mesh(radius, (10.0, -5.0, 20.0))
    rgba = preview.render(mesh, preview.FRONTAL, mesh.center(), half, size, supersample=1)
    covered = rgba[..., 3] > 0.5
    expected = np.pi * radius ** 2 / (2 * half / size) ** 2
    assert abs(covered.sum() / expected - 1) < 0.03
    luminance = rgba[..., :3].mean(axis=-1)[covered]
    assert luminance.max() - luminance.min() > 0.4  # lit side versus limb


@pytest.mark.parametrize("view, axis, expect", [
    (preview.FRONTAL, 0, "top"),          # a superior bump is at the top of the image
    (preview.LEFT_LATERAL, 1, "left"),    # an anterior bump points to the image's left
    (preview.SUPERIOR, 0, "top"),         # anterior at the top when seen from above
    (preview.FRONTAL, 1, "left"),         # the subject's right is on the image's left
])
def test_camera_orientation(view: preview.View, axis: int, expect: str) -> None:
    offsets = {"top": {preview.FRONTAL.name: (0, 0, 60), preview.SUPERIOR.name: (0, 60, 0)},
               "left": {preview.LEFT_LATERAL.name: (0, 60, 0), preview.FRONTAL.name: (60, 0, 0)}}
    bump = sphere_mesh(15.0, offsets[expect][view.name])
    body = sphere_mesh(40.0, (0.0, 0.0, 0.0))
    mesh = preview.Mesh(np.concatenate([body.vertices, bump.vertices]),
                        np.concatenate([body.faces, bump.faces + len(body.vertices)]),
                        np.concatenate([body.normals, bump.normals]))
    covered = preview.render(mesh, view, np.zeros(3), 100.0, 100, supersample=1)[..., 3] > 0.5
    profile = covered.sum(axis=1 - axis)
    first, last = np.flatnonzero(profile)[[0, -1]]
    assert (50 - first) > (last - 50) + 10  # sticks out further on the expected side


def test_empty_volume_raises_naming_the_subject(tmp_path: Path) -> None:
    dataset = toy_dataset(3)
    dataset.volumes[1] = False
    with pytest.raises(BenchError, match="toy-01"):
        preview.write_previews(dataset, tmp_path, n=3, size_px=120)
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_bad_arguments_raise(tmp_path: Path) -> None:
    dataset = toy_dataset(2)
    with pytest.raises(BenchError, match="n must be"):
        preview.write_previews(dataset, tmp_path, n=0)
    with pytest.raises(BenchError, match="subject"):
        preview.write_previews(dataset, tmp_path, subject=5)
