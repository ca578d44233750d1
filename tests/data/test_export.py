"""Writing skulls as NIfTI, NRRD and STL in mm (bench.data.export) and `bench sample`."""

import json

import nibabel
import nrrd
import numpy as np
import pytest
import trimesh

from bench.cli import main
from bench.config import load_config
from bench.data.dataset import SkullDataset
from bench.data.export import write_volume
from bench.data.grid import index_to_mm, voxel_size_mm
from bench.data.importing import import_folder
from bench.data.synthskull import make_dataset
from bench.core.errors import BenchError
from bench.run import run_benchmark

R = 32


@pytest.fixture(scope="module")
def skull() -> np.ndarray:
    dataset: SkullDataset = make_dataset(1, R, seed=3)
    return dataset.volumes[0].astype(bool)


def bone_centres_mm(volume: np.ndarray) -> np.ndarray:
    return index_to_mm(np.argwhere(volume), len(volume))


def test_nifti_maps_every_voxel_to_its_grid_position(skull, tmp_path):
    path = write_volume(skull, tmp_path / "skull.nii.gz", "nifti")
    image = nibabel.load(path)
    data = np.asarray(image.dataobj).astype(bool)
    assert np.array_equal(data, skull)
    assert nibabel.aff2axcodes(image.affine) == ("R", "A", "S")
    assert image.header.get_xyzt_units()[0] == "mm"
    ijk = np.argwhere(data)
    world = nibabel.affines.apply_affine(image.affine, ijk)
    np.testing.assert_allclose(world, bone_centres_mm(skull), atol=1e-6)


def test_nrrd_header_places_voxels_in_ras_millimetres(skull, tmp_path):
    path = write_volume(skull, tmp_path / "skull.nrrd", "nrrd")
    data, header = nrrd.read(str(path))
    assert np.array_equal(data.astype(bool), skull)
    assert header["space"] == "right-anterior-superior"
    directions = np.asarray(header["space directions"], dtype=float)
    np.testing.assert_allclose(directions, np.eye(3) * voxel_size_mm(R))
    ijk = np.argwhere(data)
    world = ijk @ directions + np.asarray(header["space origin"], dtype=float)
    np.testing.assert_allclose(world, bone_centres_mm(skull), atol=1e-6)


def test_stl_is_a_closed_surface_around_the_bone_in_millimetres(skull, tmp_path):
    path = write_volume(skull, tmp_path / "skull.stl", "stl")
    mesh = trimesh.load(path)
    assert mesh.is_watertight
    voxel = voxel_size_mm(R)
    bone_volume = skull.sum() * voxel**3
    # Marching cubes cuts the corners of the voxels, so the enclosed volume is
    # somewhat smaller than the voxel count; it is positive when faces point out.
    assert 0.6 * bone_volume < mesh.volume < 1.05 * bone_volume
    centres = bone_centres_mm(skull)
    np.testing.assert_allclose(mesh.bounds[0], centres.min(axis=0) - voxel / 2, atol=voxel / 2)
    np.testing.assert_allclose(mesh.bounds[1], centres.max(axis=0) + voxel / 2, atol=voxel / 2)


@pytest.mark.parametrize("file_format", ["nifti", "nrrd", "stl"])
def test_exported_skulls_import_back(file_format, skull, tmp_path, monkeypatch):
    monkeypatch.setenv("SKULLBENCH_CACHE", str(tmp_path / "cache"))
    suffix = {"nifti": ".nii.gz", "nrrd": ".nrrd", "stl": ".stl"}[file_format]
    write_volume(skull, tmp_path / "scans" / f"s0{suffix}", file_format)
    result = import_folder(tmp_path / "scans", file_format=file_format, resolution=R, name="back")
    imported = result.dataset.volumes[0].astype(bool)
    # The importer re-centres on the bounding box: compare after matching the boxes.
    offset = np.argwhere(imported).min(axis=0) - np.argwhere(skull).min(axis=0)
    moved = np.roll(skull, tuple(offset), axis=(0, 1, 2))
    dice = 2 * np.sum(imported & moved) / (imported.sum() + moved.sum())
    assert dice > (0.99 if file_format != "stl" else 0.9)


def test_bad_volumes_are_refused(tmp_path):
    with pytest.raises(BenchError, match="cubic"):
        write_volume(np.zeros((4, 4, 5), bool), tmp_path / "a.nrrd", "nrrd")
    with pytest.raises(BenchError, match="no bone"):
        write_volume(np.zeros((4, 4, 4), bool), tmp_path / "a.stl", "stl")
    with pytest.raises(BenchError, match="nifti, nrrd, stl"):
        write_volume(np.zeros((4, 4, 4), bool), tmp_path / "a.vtk", "vtk")
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def fitted_cell(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SKULLBENCH_CACHE", str(folder / "cache"))
        config = load_config("ci", ["dataset.n=60", f"dataset.resolution={R}",
                                    "methods=[gaussian]", "references=[]", "seeds=1",
                                    "sampling.steps=[1]",
                                    "sampling.n_samples=6", "metrics.points=128",
                                    "metrics.exclude=[pointflow-emd]",
                                    "metrics.params.ms-ssim-diversity.pairs=2",
                                    "downstream.enabled=false"])
        run_benchmark(config, folder / "run", quiet=True)
    return next((folder / "run" / "cells").glob("gaussian-s0-*"))


def test_bench_sample_writes_files_that_open_as_skulls(fitted_cell, tmp_path, capsys):
    out = tmp_path / "samples"
    status = main(["sample", str(fitted_cell / "method.pt"), "-n", "2", "--steps", "1",
                   "--out", str(out), "--format", "nrrd", "--seed", "4"])
    assert status == 0
    record = json.loads((out / "samples.json").read_text())
    assert record["method"] == "gaussian" and record["seed"] == 4 and record["nfe"] == 0
    assert sorted(p.name for p in out.glob("*.nrrd")) == record["files"] == [
        "sample-0000.nrrd", "sample-0001.nrrd"]
    data, header = nrrd.read(str(out / "sample-0000.nrrd"))
    assert data.shape == (R, R, R) and data.any()
    assert header["space"] == "right-anterior-superior"
    # Same seed, same skulls; existing files are kept unless --overwrite.
    first = (out / "sample-0000.nrrd").read_bytes()
    assert main(["sample", str(fitted_cell), "-n", "2", "--steps", "1", "--out", str(out),
                 "--format", "nrrd", "--seed", "4"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["sample", str(fitted_cell), "-n", "2", "--steps", "1", "--out", str(out),
                 "--format", "nrrd", "--seed", "4", "--overwrite"]) == 0
    assert (out / "sample-0000.nrrd").read_bytes() == first


def test_bench_sample_names_what_is_missing(fitted_cell, tmp_path, capsys):
    assert main(["sample", str(tmp_path), "-n", "1", "--steps", "1", "--out",
                 str(tmp_path / "o"), "--format", "stl"]) == 2
    assert "method.pt" in capsys.readouterr().err
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "method.pt").write_bytes((fitted_cell / "method.pt").read_bytes())
    assert main(["sample", str(stray), "-n", "1", "--steps", "1", "--out",
                 str(tmp_path / "o"), "--format", "stl"]) == 2
    assert "cell.json" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
