"""Tests of `bench data import`: every format, resampling, alignment, bad files, atomic writes.

Round trips use synthskull skulls written to files on the common grid. The
importer re-centres each skull on its bounding box, so the comparison first
moves the original by the whole number of voxels that puts the two bounding
boxes' low corners together (the importer snaps the box onto voxel boundaries,
so no sub-voxel shift is involved), and separately checks that the imported
box is centred to within half a voxel. Resampling and alignment tests use an
analytic shape, evaluated exactly at the target grid where the transform that
the importer records puts it; that transform is checked on its own (rotation
against the known one, landmarks, centre within half a voxel plus one source
voxel).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel
import nrrd
import numpy as np
import pytest
import trimesh
from scipy import ndimage
from scipy.spatial.transform import Rotation
from skimage.measure import marching_cubes

import bench.data.dataset as dataset_module
from bench.cli import main
from bench.data.cache import dataset_folder
from bench.data.dataset import SkullDataset, assign_split
from bench.data.grid import FIELD_OF_VIEW_MM, index_to_mm
from bench.data.importing import ImportResult, import_folder
from bench.data.importing.meshfill import fill_mesh
from bench.data.synthskull import make_dataset
from bench.core.errors import BenchError
from bench.core.io import sha256_file

R = 48
VOXEL = FIELD_OF_VIEW_MM / R
FORMATS = ["nrrd", "nifti-hu", "nifti-mask", "stl", "ply", "obj", "npy"]


# --- helpers -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def skulls() -> SkullDataset:
    return make_dataset(2, R, seed=0)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.sum(a & b) / (np.sum(a) + np.sum(b))


def aligned_dice(imported: np.ndarray, original: np.ndarray) -> float:
    """Dice after moving ``original`` so that the two bounding boxes start together."""
    offset = np.argwhere(imported).min(axis=0) - np.argwhere(original).min(axis=0)
    return dice(imported, np.roll(original, tuple(offset), axis=(0, 1, 2)))


def box_centre_mm(volume: np.ndarray) -> np.ndarray:
    index = np.argwhere(volume)
    return (index_to_mm(index.min(axis=0), R) + index_to_mm(index.max(axis=0), R)) / 2


def write_scan(folder: Path, subject: str, volume: np.ndarray, kind: str,
               spacing: float = VOXEL) -> None:
    """Write a bool volume (axes RAS, voxel ``spacing`` mm) as one file of format ``kind``."""
    folder.mkdir(parents=True, exist_ok=True)
    origin = np.array([-37.0, 12.5, 101.0])  # any frame: the importer re-centres
    if kind == "nrrd":  # stored in LPS, as 3D Slicer writes it
        header = {"space": "left-posterior-superior",
                  "space directions": np.diag([-spacing, -spacing, spacing]),
                  "space origin": origin * [-1, -1, 1]}
        nrrd.write(str(folder / f"{subject}.nrrd"), volume.astype(np.uint8), header)
    elif kind.startswith("nifti"):
        affine = np.diag([spacing, spacing, spacing, 1.0])
        affine[:3, 3] = origin
        if kind == "nifti-mask":
            image = nibabel.Nifti1Image(volume.astype(np.uint8), affine)
        else:  # floats stored as scaled int16, as scanners write them
            image = nibabel.Nifti1Image(ct_in_hu(volume), affine)
            image.set_data_dtype(np.int16)
        nibabel.save(image, str(folder / f"{subject}.nii.gz"))
    elif kind == "npy":
        np.save(folder / f"{subject}.npy", volume)
        (folder / f"{subject}.json").write_text(json.dumps({"spacing_mm": [spacing] * 3}))
    else:
        vertices, faces, _, _ = marching_cubes(np.pad(volume, 1).astype(np.float32), 0.5,
                                               spacing=(spacing,) * 3)
        trimesh.Trimesh(vertices + origin, faces).export(str(folder / f"{subject}.{kind}"))


def ct_in_hu(bone: np.ndarray) -> np.ndarray:
    """A CT-like volume: bone 1000 HU, soft tissue 40 HU around and inside, air -1000."""
    head = ndimage.binary_fill_holes(ndimage.binary_dilation(bone, iterations=2))
    return np.where(bone, 1000, np.where(head, 40, -1000)).astype(np.float32)


def file_format(kind: str) -> str:
    return kind.split("-")[0]


def run_import(folder: Path, cache: Path, kind: str = "npy", name: str = "imported",
               **kwargs) -> ImportResult:
    kwargs.setdefault("resolution", R)
    return import_folder(folder, file_format=file_format(kind), name=name, cache_root=cache,
                         **kwargs)


def blob(points: np.ndarray) -> np.ndarray:
    """An analytic skull-like shape at (..., 3) points in its own frame (mm).

    A 14 mm ellipsoidal shell, 110 x 180 x 140 mm, plus a ball behind it
    (third moment along y negative) and one on top (along z positive), so its
    principal frame follows the importer's convention.
    """
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    outer = (x / 55) ** 2 + (y / 90) ** 2 + (z / 70) ** 2 <= 1
    inner = (x / 41) ** 2 + (y / 76) ** 2 + (z / 56) ** 2 <= 1
    back = x ** 2 + (y + 95) ** 2 + z ** 2 <= 20 ** 2
    top = x ** 2 + y ** 2 + (z - 75) ** 2 <= 18 ** 2
    return (outer & ~inner) | back | top


BLOB_BOX = (np.array([-55.0, -115.0, -70.0]), np.array([55.0, 90.0, 93.0]))


def sample_blob(to_blob: np.ndarray, shape: tuple[int, int, int],
                spacing: np.ndarray) -> np.ndarray:
    """The blob on a grid whose voxel (i, j, k) is at file point (i, j, k) * spacing mm.

    ``to_blob`` (4, 4) maps file points to the blob's frame.
    """
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    points = index * spacing
    return blob(points @ to_blob[:3, :3].T + to_blob[:3, 3])


def expected_blob(to_canonical: np.ndarray, file_to_blob: np.ndarray) -> np.ndarray:
    """The blob at the common grid's voxel centres, placed by the importer's transform."""
    index = np.stack(np.meshgrid(*[np.arange(R)] * 3, indexing="ij"), axis=-1)
    canonical = index_to_mm(index, R)
    to_blob = file_to_blob @ np.linalg.inv(to_canonical)
    return blob(canonical @ to_blob[:3, :3].T + to_blob[:3, 3])


def rigid(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = rotation, translation
    return affine


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cosine = (np.trace(a @ b.T) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(cosine, -1, 1))))


# --- round trips -------------------------------------------------------------------------

@pytest.mark.parametrize("kind", FORMATS)
def test_round_trip_recovers_every_skull(kind: str, skulls: SkullDataset, tmp_path: Path) -> None:
    for subject, volume in zip(skulls.subject_ids, skulls.volumes):
        write_scan(tmp_path / "scans", subject, volume, kind)
    result = run_import(tmp_path / "scans", tmp_path / "cache", kind)

    imported = result.dataset
    assert imported.subject_ids == skulls.subject_ids
    assert imported.voxel_size_mm == pytest.approx(VOXEL)
    for original, volume in zip(skulls.volumes, imported.volumes):
        assert aligned_dice(volume, original) >= 0.95
        assert np.all(np.abs(box_centre_mm(volume)) <= VOXEL / 2 + 1e-9)
    loaded = SkullDataset.load(result.folder)
    assert np.array_equal(loaded.volumes, imported.volumes)
    assert loaded.manifest["source"]["format"] == file_format(kind)
    assert loaded.manifest["skipped"] == [] and result.skipped == []
    assert list(loaded.split) == list(assign_split(skulls.subject_ids, None, seed=0))


def test_manifest_records_files_and_every_step(skulls: SkullDataset, tmp_path: Path) -> None:
    write_scan(tmp_path / "scans", "ct", skulls.volumes[0], "nifti-hu", spacing=VOXEL / 1.5)
    assert nibabel.load(tmp_path / "scans" / "ct.nii.gz").dataobj.slope != 1  # scaled on disk
    result = run_import(tmp_path / "scans", tmp_path / "cache", "nifti", threshold_hu=250.0,
                        min_component_fraction=0.05)
    manifest = SkullDataset.load(result.folder).manifest

    (entry,) = manifest["files"]
    assert entry["file"] == "ct.nii.gz" and entry["subject_id"] == "ct"
    assert entry["sha256"] == sha256_file(tmp_path / "scans" / "ct.nii.gz")
    assert entry["spacing_mm"] == pytest.approx([VOXEL / 1.5] * 3)
    assert entry["shape"] == [R, R, R]
    assert entry["intensity"] == "hounsfield"
    assert entry["value_range"] == pytest.approx([-1000, 1000], abs=0.1)
    steps = manifest["preprocessing"]
    assert steps["order"] == ["binarise", "drop_small_components", "crop", "align", "centre",
                              "resample"]
    assert steps["binarise"]["threshold_hu"] == 250.0
    assert steps["drop_small_components"]["min_component_fraction"] == 0.05
    assert steps["resample"]["voxel_size_mm"] == pytest.approx(VOXEL)
    assert manifest["source"]["path"] == str((tmp_path / "scans").resolve())


@pytest.mark.parametrize("source_resolution", [72, 96, 32])
def test_resampling_keeps_physical_shape(source_resolution: int, tmp_path: Path) -> None:
    """Finer (1.5x, 2x) and coarser sources land on the grid at their physical size."""
    spacing = np.full(3, FIELD_OF_VIEW_MM / source_resolution)
    file_to_blob = rigid(np.eye(3), [-150.0, -140.0, -110.0])  # blob centre at (150, 140, 110)
    shape = tuple(np.ceil([300, 280, 220] / spacing).astype(int))
    np.save(tmp_path / "blob.npy", sample_blob(file_to_blob, shape, spacing))
    (tmp_path / "blob.json").write_text(json.dumps({"spacing_mm": spacing.tolist()}))
    result = run_import(tmp_path, tmp_path / "cache")

    to_canonical = np.array(result.dataset.manifest["files"][0]["to_canonical"])
    expected = expected_blob(to_canonical, file_to_blob)
    assert dice(result.dataset.volumes[0], expected) >= 0.9
    assert result.dataset.volumes[0].sum() == pytest.approx(expected.sum(), rel=0.1)
    box_centre = to_canonical @ np.linalg.inv(file_to_blob) @ [*np.mean(BLOB_BOX, axis=0), 1]
    assert np.all(np.abs(box_centre[:3]) <= VOXEL / 2 + spacing.max())


@pytest.mark.parametrize("ratio", [0.5, 0.6, 1.5])
def test_a_box_keeps_its_size_in_millimetres(ratio: float, tmp_path: Path) -> None:
    """A solid box of 12 x 9 x 18 target voxels, scanned at another spacing, keeps its size."""
    spacing = ratio * VOXEL
    sides = np.round(np.array([12, 9, 18]) / ratio).astype(int)
    volume = np.zeros(sides + 6, dtype=bool)
    volume[3:-3, 3:-3, 3:-3] = True
    write_scan(tmp_path / "scans", "box", volume, "npy", spacing=spacing)
    imported = run_import(tmp_path / "scans", tmp_path / "cache").dataset.volumes[0]

    index = np.argwhere(imported)
    assert list(index.max(axis=0) - index.min(axis=0) + 1) == [12, 9, 18]
    assert imported.sum() == 12 * 9 * 18


def test_bone_half_a_voxel_thick_survives_downsampling(tmp_path: Path) -> None:
    """A plate one source voxel thick fills half of each target voxel it crosses: kept."""
    volume = np.zeros((8, 8, 12), dtype=bool)
    volume[:, :, :8] = True  # a cube of 4 target voxels a side
    volume[:, :, 10] = True  # a plate, one voxel of VOXEL / 2 thick
    write_scan(tmp_path / "scans", "plate", volume, "npy", spacing=VOXEL / 2)
    imported = run_import(tmp_path / "scans", tmp_path / "cache").dataset.volumes[0]

    assert imported.sum() == 4 * 4 * 4 + 4 * 4
    low = np.argwhere(imported).min(axis=0)
    assert imported[low[0]:low[0] + 4, low[1]:low[1] + 4, low[2] + 5].all()


def test_anisotropic_spacing_is_resampled(tmp_path: Path) -> None:
    spacing = np.array([2.0, 3.5, 6.0])
    file_to_blob = rigid(np.eye(3), [-130.0, -130.0, -110.0])
    shape = tuple(np.ceil([260, 260, 220] / spacing).astype(int))
    np.save(tmp_path / "aniso.npy", sample_blob(file_to_blob, shape, spacing).astype(np.uint8))
    (tmp_path / "aniso.json").write_text(json.dumps({"spacing_mm": spacing.tolist()}))
    result = run_import(tmp_path, tmp_path / "cache")

    to_canonical = np.array(result.dataset.manifest["files"][0]["to_canonical"])
    assert dice(result.dataset.volumes[0], expected_blob(to_canonical, file_to_blob)) >= 0.9


def test_finer_synthskull_keeps_its_size(tmp_path: Path) -> None:
    """A skull generated at 1.5 R and imported at R matches the same skull generated at R."""
    fine, coarse = make_dataset(1, 72, seed=3).volumes[0], make_dataset(1, R, seed=3).volumes[0]
    write_scan(tmp_path / "scans", "fine", fine, "nrrd", spacing=FIELD_OF_VIEW_MM / 72)
    volume = run_import(tmp_path / "scans", tmp_path / "cache", "nrrd").dataset.volumes[0]

    def extent(v: np.ndarray) -> np.ndarray:
        index = np.argwhere(v)
        return (index.max(axis=0) - index.min(axis=0) + 1) * VOXEL

    assert np.all(np.abs(extent(volume) - extent(coarse)) <= VOXEL + 1e-9)
    assert volume.sum() == pytest.approx(coarse.sum(), rel=0.15)


# --- meshes ------------------------------------------------------------------------------

def test_fill_mesh_box_is_exact_when_rays_meet_edges() -> None:
    """A box with square faces on voxel boundaries: face diagonals pass through voxel rows."""
    box = trimesh.creation.box(bounds=[[1.5, 2.5, 0.5], [7.5, 8.5, 6.5]])
    filled = fill_mesh(np.asarray(box.triangles), np.eye(4), (10, 10, 8))  # index = mm

    expected = np.zeros((10, 10, 8), dtype=bool)
    expected[2:8, 3:9, 1:7] = True
    assert np.array_equal(filled, expected)


def test_fill_mesh_sphere_and_a_small_hole() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=20.0)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = -24.5
    index = np.stack(np.meshgrid(*[np.arange(50)] * 3, indexing="ij"), axis=-1)
    ball = np.linalg.norm(index - 24.5, axis=-1) <= 20.0

    closed = fill_mesh(np.asarray(sphere.triangles), affine, (50, 50, 50))
    assert dice(closed, ball) >= 0.98
    # 12 triangles missing: rays through the hole go wrong along one axis (over 100
    # voxels for any single axis), and the vote of the three axes outweighs them.
    holed = fill_mesh(np.asarray(sphere.triangles)[12:], affine, (50, 50, 50))
    assert np.sum(holed ^ closed) <= 10


def test_mesh_record_and_single_file_path(skulls: SkullDataset, tmp_path: Path) -> None:
    write_scan(tmp_path, "one", skulls.volumes[0], "stl")
    result = run_import(tmp_path / "one.stl", tmp_path / "cache", "stl")
    (entry,) = result.dataset.manifest["files"]
    assert entry["mesh"]["faces"] > 1000
    assert entry["spacing_mm"] == pytest.approx([VOXEL / 2] * 3)
    assert "fill_mesh" in result.dataset.manifest["preprocessing"]["order"]


# --- cleaning ----------------------------------------------------------------------------

def test_small_components_are_dropped(skulls: SkullDataset, tmp_path: Path) -> None:
    volume = skulls.volumes[0].copy()
    volume[1:3, 1:3, 1:3] = True  # a speck far from the skull
    write_scan(tmp_path / "scans", "speck", volume, "npy")
    kept = run_import(tmp_path / "scans", tmp_path / "cache", name="kept",
                      min_component_fraction=0.0).dataset
    dropped = run_import(tmp_path / "scans", tmp_path / "cache", name="dropped").dataset

    assert dropped.manifest["files"][0]["components_dropped"] == 1
    assert aligned_dice(dropped.volumes[0], skulls.volumes[0]) == 1.0
    assert kept.volumes[0].sum() == dropped.volumes[0].sum() + 8


# --- alignment ---------------------------------------------------------------------------

def write_rotated_blob(folder: Path, subject: str, blob_to_file: np.ndarray) -> None:
    spacing = np.full(3, FIELD_OF_VIEW_MM / 72)
    np.save(folder / f"{subject}.npy",
            sample_blob(np.linalg.inv(blob_to_file), (96, 96, 96), spacing))
    (folder / f"{subject}.json").write_text(json.dumps({"spacing_mm": spacing.tolist()}))


def test_principal_alignment_undoes_a_rotation(tmp_path: Path) -> None:
    rotations = {"upright": np.eye(3),
                 "tilted": Rotation.from_euler("zyx", [35, -20, 50], degrees=True).as_matrix(),
                 "turned": Rotation.from_euler("xz", [-70, 120], degrees=True).as_matrix()}
    for subject, rotation in rotations.items():
        write_rotated_blob(tmp_path, subject, rigid(rotation, [160.0, 150.0, 140.0]))
    result = run_import(tmp_path, tmp_path / "cache", align="principal")

    records = {r["subject_id"]: np.array(r["to_canonical"]) for r in
               result.dataset.manifest["files"]}
    upright = records["upright"][:3, :3]
    assert angle_deg(upright, np.eye(3)) < 10  # the blob's own axes follow the convention
    for subject, rotation in rotations.items():
        assert angle_deg(records[subject][:3, :3] @ rotation, upright) < 3
        volume = result.dataset.volumes[result.dataset.subject_ids.index(subject)]
        file_to_blob = np.linalg.inv(rigid(rotation, [160.0, 150.0, 140.0]))
        assert dice(volume, expected_blob(records[subject], file_to_blob)) >= 0.9


LANDMARKS = {"nasion": [0.0, 86.0, 20.0], "porion_left": [-58.0, -5.0, 0.0],
             "porion_right": [58.0, -5.0, 0.0], "orbitale_left": [-30.0, 72.0, 0.0],
             "orbitale_right": [30.0, 72.0, 0.0]}


def test_landmark_alignment_builds_the_frankfort_frame(tmp_path: Path) -> None:
    """A blob in LPS NRRD, posed by a known rigid motion; landmarks given in LPS."""
    rotation = Rotation.from_euler("zyx", [25, 15, -30], degrees=True).as_matrix()
    blob_to_ras = rigid(rotation, [12.0, -30.0, 40.0])
    spacing = FIELD_OF_VIEW_MM / 64
    origin_lps = np.array([150.0, 150.0, -110.0])  # voxel 0 in LPS
    index = np.stack(np.meshgrid(*[np.arange(n) for n in (120, 120, 110)], indexing="ij"), -1)
    ras = (origin_lps + index * [-spacing, -spacing, spacing]) * [-1, -1, 1]
    volume = blob((ras - blob_to_ras[:3, 3]) @ rotation)
    nrrd.write(str(tmp_path / "posed.nrrd"), volume.astype(np.uint8),
               {"space": "LPS", "space directions": np.diag([-spacing, -spacing, spacing]),
                "space origin": origin_lps})
    lps = {k: ((rotation @ v + blob_to_ras[:3, 3]) * [-1, -1, 1]).tolist()
           for k, v in LANDMARKS.items()}
    table = {"posed": lps, "someone-else": {"nasion": [0, 0, 0]}}
    (tmp_path / "landmarks.json").write_text(json.dumps(table))
    result = run_import(tmp_path, tmp_path / "cache", "nrrd", align="landmarks",
                        landmarks_file=tmp_path / "landmarks.json")

    points = {k: v[0] for k, v in result.dataset.landmarks.items()}
    assert sorted(points) == sorted(LANDMARKS)
    assert points["nasion"][0] == pytest.approx(0.0, abs=1e-6)
    for key in ("porion_right", "orbitale_left"):
        assert points[key][2] == pytest.approx(points["porion_left"][2], abs=1e-6)
    assert points["porion_right"][1] == pytest.approx(points["porion_left"][1], abs=1e-6)
    assert points["porion_right"][0] > points["porion_left"][0]
    assert points["nasion"][1] > points["porion_left"][1]
    offset = points["nasion"] - np.array(LANDMARKS["nasion"])
    for key, value in LANDMARKS.items():  # a pure translation of the blob's own frame
        np.testing.assert_allclose(points[key], np.array(value) + offset, atol=1e-6)
    expected = expected_blob(rigid(np.eye(3), offset), np.eye(4))
    assert dice(result.dataset.volumes[0], expected) >= 0.9


def test_missing_landmarks_are_nan_and_needed_for_alignment(skulls: SkullDataset,
                                                            tmp_path: Path) -> None:
    for subject, volume in zip(["a", "b"], skulls.volumes):
        write_scan(tmp_path / "scans", subject, volume, "npy")
    table = {"a": {"nasion": [1.0, 2.0, 3.0], "menton": None}}
    (tmp_path / "landmarks.json").write_text(json.dumps(table))
    result = run_import(tmp_path / "scans", tmp_path / "cache",
                        landmarks_file=tmp_path / "landmarks.json")
    assert list(result.dataset.landmarks) == ["nasion"]
    assert np.isfinite(result.dataset.landmarks["nasion"][0]).all()
    assert np.isnan(result.dataset.landmarks["nasion"][1]).all()

    with pytest.raises(BenchError, match=r"a\.npy: align='landmarks' needs porion_left"):
        run_import(tmp_path / "scans", tmp_path / "cache", name="aligned", align="landmarks",
                   landmarks_file=tmp_path / "landmarks.json")


# --- labels ------------------------------------------------------------------------------

def test_labels_give_sorted_classes_and_a_stratified_split(tmp_path: Path) -> None:
    volume = make_dataset(1, 32, seed=1).volumes[0]
    ids = [f"s{i:02d}" for i in range(12)]
    for subject in ids:
        write_scan(tmp_path / "scans", subject, volume, "npy", spacing=FIELD_OF_VIEW_MM / 32)
    rows = [f"{s},{'normal' if i % 3 else 'craniosynostosis'}" for i, s in enumerate(ids[:-1])]
    (tmp_path / "labels.csv").write_text("subject_id,label\n" + "\n".join(rows) + "\n")
    data = run_import(tmp_path / "scans", tmp_path / "cache", resolution=32, split_seed=4,
                      labels_file=tmp_path / "labels.csv").dataset

    assert data.class_names == ("craniosynostosis", "normal")
    assert list(data.labels) == [0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1, -1]
    assert list(data.split) == list(assign_split(ids, data.labels, seed=4))


def test_bad_side_files_are_named(skulls: SkullDataset, tmp_path: Path) -> None:
    write_scan(tmp_path / "scans", "a", skulls.volumes[0], "npy")
    (tmp_path / "labels.csv").write_text("id,class\na,x\n")
    with pytest.raises(BenchError, match=r"labels\.csv.*subject_id,label"):
        run_import(tmp_path / "scans", tmp_path / "cache", labels_file=tmp_path / "labels.csv")
    (tmp_path / "marks.json").write_text(json.dumps({"a": {"glabella": [0, 0, 0]}}))
    with pytest.raises(BenchError, match=r"marks\.json.*unknown landmark 'glabella'"):
        run_import(tmp_path / "scans", tmp_path / "cache", landmarks_file=tmp_path / "marks.json")


# --- bad files ---------------------------------------------------------------------------

def write_bad(folder: Path, case: str, skull: np.ndarray) -> tuple[str, str]:
    """Write one bad file; return its name and a pattern its reason must match."""
    folder.mkdir(parents=True, exist_ok=True)
    if case == "corrupt":
        (folder / "corrupt.npy").write_bytes(b"\x93NUMPY garbage that is not an array")
        (folder / "corrupt.json").write_text(json.dumps({"spacing_mm": [5, 5, 5]}))
        return "corrupt.npy", "cannot read"
    if case == "not-3d":
        np.save(folder / "flat.npy", skull[:, :, 20])
        (folder / "flat.json").write_text(json.dumps({"spacing_mm": [5, 5, 5]}))
        return "flat.npy", "2-D"
    if case == "no-spacing":
        np.save(folder / "nospacing.npy", skull)
        return "nospacing.npy", "no voxel spacing"
    if case == "zero-spacing":
        write_scan(folder, "zero", skull, "npy")
        (folder / "zero.json").write_text(json.dumps({"spacing_mm": [5, 0, -5]}))
        return "zero.npy", "not positive"
    if case == "empty":
        np.save(folder / "air.npy", np.full((20, 20, 20), -1000.0))
        (folder / "air.json").write_text(json.dumps({"spacing_mm": [5, 5, 5]}))
        return "air.npy", "no voxel reaches the bone threshold of 300 HU"
    if case == "too-large":
        write_scan(folder, "giant", skull, "npy", spacing=10.0)
        return "giant.npy", f"more than the {FIELD_OF_VIEW_MM:g} mm field of view"
    raise AssertionError(case)


BAD_CASES = ["corrupt", "not-3d", "no-spacing", "zero-spacing", "empty", "too-large"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_a_bad_file_fails_the_import_and_writes_nothing(case: str, skulls: SkullDataset,
                                                        tmp_path: Path) -> None:
    write_scan(tmp_path / "scans", "good", skulls.volumes[0], "npy")
    name, reason = write_bad(tmp_path / "scans", case, skulls.volumes[0])
    with pytest.raises(BenchError, match=rf"{name}: .*{reason}") as error:
        run_import(tmp_path / "scans", tmp_path / "cache")
    assert "1 of 2 files" in str(error.value) and "on_error='skip'" in str(error.value)
    assert not (tmp_path / "cache").exists()


def test_every_bad_file_is_listed_and_skip_imports_the_rest(skulls: SkullDataset,
                                                            tmp_path: Path) -> None:
    write_scan(tmp_path / "scans", "good", skulls.volumes[0], "npy")
    bad = dict(write_bad(tmp_path / "scans", case, skulls.volumes[0]) for case in BAD_CASES)
    with pytest.raises(BenchError) as error:
        run_import(tmp_path / "scans", tmp_path / "cache")
    for name, reason in bad.items():
        assert any(line.startswith(f"  {name}: ") and reason in line
                   for line in str(error.value).splitlines()), name

    result = run_import(tmp_path / "scans", tmp_path / "cache", on_error="skip")
    assert result.dataset.subject_ids == ["good"]
    assert sorted(name for name, _ in result.skipped) == sorted(bad)
    saved = SkullDataset.load(result.folder).manifest["skipped"]
    assert [s["file"] for s in saved] == [name for name, _ in result.skipped]
    assert all(name in result.summary() for name in bad)


def test_nifti_empty_after_threshold_and_duplicate_ids(skulls: SkullDataset,
                                                       tmp_path: Path) -> None:
    write_scan(tmp_path / "scans", "a", skulls.volumes[0], "nifti-hu")
    nibabel.save(nibabel.load(tmp_path / "scans" / "a.nii.gz"), tmp_path / "scans" / "a.nii")
    write_scan(tmp_path / "scans", "b", skulls.volumes[1], "nifti-hu")
    with pytest.raises(BenchError) as error:
        run_import(tmp_path / "scans", tmp_path / "cache", "nifti")
    message = str(error.value)
    assert "a.nii: duplicate subject id 'a'" in message
    assert "a.nii.gz: duplicate subject id 'a'" in message
    assert "b.nii.gz" not in message

    with pytest.raises(BenchError, match=r"b\.nii\.gz: no voxel reaches the bone threshold of "
                                         r"1500 HU \(values -1000 to 1000\)"):
        run_import(tmp_path / "scans", tmp_path / "cache", "nifti", threshold_hu=1500.0)


def test_all_bad_is_an_error_even_when_skipping(skulls: SkullDataset, tmp_path: Path) -> None:
    write_bad(tmp_path / "scans", "no-spacing", skulls.volumes[0])
    with pytest.raises(BenchError, match=r"1 of 1 files.*\n  nospacing\.npy") as error:
        run_import(tmp_path / "scans", tmp_path / "cache", on_error="skip")
    assert "on_error='skip'" not in str(error.value)
    assert not (tmp_path / "cache").exists()


def test_a_folder_without_files_of_the_format(tmp_path: Path) -> None:
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "notes.txt").write_text("no scans here")
    with pytest.raises(BenchError, match=r"scans: no nrrd files \(\.nrrd, \.nhdr\)"):
        run_import(tmp_path / "scans", tmp_path / "cache", "nrrd")
    with pytest.raises(BenchError, match="no such file or folder"):
        run_import(tmp_path / "missing", tmp_path / "cache", "nrrd")


@pytest.mark.parametrize("kwargs, parameter", [
    ({"resolution": 8}, "resolution"), ({"resolution": 32.0}, "resolution"),
    ({"resolution": 512}, "resolution"), ({"file_format": "dicom"}, "file_format"),
    ({"min_component_fraction": 1.0}, "min_component_fraction"),
    ({"min_component_fraction": -0.1}, "min_component_fraction"),
    ({"on_error": "ignore"}, "on_error"), ({"align": "pca"}, "align"),
    ({"align": "landmarks"}, "landmarks_file"), ({"threshold_hu": float("nan")}, "threshold_hu"),
    ({"name": "../escape"}, "dataset name"), ({"name": "synthskull"}, "reserved"),
])
def test_arguments_are_checked(kwargs: dict, parameter: str, tmp_path: Path) -> None:
    arguments = {"file_format": "npy", "resolution": 32, "name": "ok", "cache_root": tmp_path,
                 **kwargs}
    with pytest.raises(BenchError, match=parameter):
        import_folder(tmp_path, **arguments)


# --- writes ------------------------------------------------------------------------------

def test_existing_dataset_needs_overwrite(skulls: SkullDataset, tmp_path: Path) -> None:
    write_scan(tmp_path / "scans", "first", skulls.volumes[0], "npy")
    run_import(tmp_path / "scans", tmp_path / "cache")
    write_scan(tmp_path / "scans", "second", skulls.volumes[1], "npy")
    with pytest.raises(BenchError, match="already exists.*overwrite"):
        run_import(tmp_path / "scans", tmp_path / "cache")

    result = run_import(tmp_path / "scans", tmp_path / "cache", overwrite=True)
    assert SkullDataset.load(result.folder).subject_ids == ["first", "second"]
    assert sorted(p.name for p in result.folder.parent.iterdir()) == ["imported"]


def interrupt_during_npz(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the next dataset save write half an npz and then be interrupted."""
    def savez(handle: object, **arrays: object) -> None:
        handle.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt

    monkeypatch.setattr(dataset_module.np, "savez_compressed", savez)


def test_interrupted_import_leaves_no_dataset(skulls: SkullDataset, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    write_scan(tmp_path / "scans", "a", skulls.volumes[0], "npy")
    interrupt_during_npz(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_import(tmp_path / "scans", tmp_path / "cache")

    folder = dataset_folder("imported", tmp_path / "cache")
    assert not folder.exists()
    assert list(folder.parent.iterdir()) == []  # no half-written staging folder either
    with pytest.raises(BenchError):
        SkullDataset.load(folder)


def test_interrupted_overwrite_keeps_the_old_dataset(skulls: SkullDataset, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    write_scan(tmp_path / "scans", "old", skulls.volumes[0], "npy")
    old = run_import(tmp_path / "scans", tmp_path / "cache").dataset
    write_scan(tmp_path / "scans", "new", skulls.volumes[1], "npy")

    def fail_manifest(path: object, obj: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(dataset_module, "write_json_atomic", fail_manifest)
    with pytest.raises(OSError, match="disk full"):
        run_import(tmp_path / "scans", tmp_path / "cache", overwrite=True)
    monkeypatch.undo()
    interrupt_during_npz(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_import(tmp_path / "scans", tmp_path / "cache", overwrite=True)

    folder = dataset_folder("imported", tmp_path / "cache")
    kept = SkullDataset.load(folder)
    assert kept.subject_ids == ["old"] and np.array_equal(kept.volumes, old.volumes)
    assert [p.name for p in folder.parent.iterdir()] == ["imported"]


# --- command line ------------------------------------------------------------------------

def test_cli_imports_and_reports_errors(skulls: SkullDataset, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("SKULLBENCH_CACHE", str(tmp_path / "cache"))
    write_scan(tmp_path / "scans", "a", skulls.volumes[0], "nrrd")
    command = ["data", "import", str(tmp_path / "scans"), "--format", "nrrd",
               "--resolution", "32", "--name", "real"]
    assert main(command) == 0
    assert "imported 1 subjects" in capsys.readouterr().out
    assert SkullDataset.load(tmp_path / "cache" / "datasets" / "real").resolution == 32

    assert main(command) == 2
    error = capsys.readouterr().err
    assert error.startswith("bench: error: dataset 'real' already exists")
    assert "Traceback" not in error
    (tmp_path / "scans" / "b.nrrd").write_bytes(b"NRRD0004\nnot a header\n")
    assert main([*command, "--overwrite"]) == 2
    error = capsys.readouterr().err
    assert "b.nrrd: cannot read it as NRRD" in error and "Traceback" not in error
    assert main([*command, "--overwrite", "--on-error", "skip"]) == 0
    assert "skipped 1 files" in capsys.readouterr().out
