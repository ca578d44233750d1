"""Tests of the voxel and pca representations, their registry and the Dice floor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.core.errors import BenchError
from bench.conformance import parametrize_with_checks
from bench.representations import (REPRESENTATIONS, PCARepresentation, Representation,
                                   VoxelRepresentation, get_representation, reconstruction_dice)

R = 16


def ellipsoids(n: int, seed: int, resolution: int = R) -> np.ndarray:
    """Random axis-aligned ellipsoids, bool (n, R, R, R), with jittered centres and radii."""
    rng = np.random.default_rng(seed)
    axis = np.arange(resolution) + 0.5
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)
    centres = resolution / 2 + rng.normal(0.0, resolution / 16, size=(n, 3))
    radii = rng.uniform(resolution / 5, resolution / 3, size=(n, 3))
    return np.stack([(((grid - c) / r) ** 2).sum(-1) < 1.0 for c, r in zip(centres, radii)])


def low_rank_volumes(n: int, seed: int) -> np.ndarray:
    """Unions of three disjoint boxes: the centred data have rank at most 3."""
    patterns = np.zeros((3, R, R, R), dtype=bool)
    patterns[0, 2:6, 2:6, 2:6] = True
    patterns[1, 8:14, 3:7, 5:9] = True
    patterns[2, 4:9, 10:15, 9:15] = True
    chosen = np.random.default_rng(seed).random((n, 3)) < 0.5
    return np.einsum("nk,kxyz->nxyz", chosen.astype(int), patterns.astype(int)).astype(bool)


@pytest.fixture(scope="module")
def train() -> np.ndarray:
    return ellipsoids(40, seed=1)


@pytest.fixture(scope="module")
def pca(train: np.ndarray) -> PCARepresentation:
    return PCARepresentation(n_components=12).fit(train)


# ------------------------------------------------------------------------- voxel

def test_voxel_round_trip_is_exact_with_values_minus_one_and_one(train: np.ndarray) -> None:
    rep = VoxelRepresentation().fit(train)
    encoded = rep.encode(train)
    assert encoded.dtype == torch.float32
    assert tuple(encoded.shape) == (len(train), 1, R, R, R) == (len(train),) + rep.encoded_shape
    assert set(torch.unique(encoded).tolist()) == {-1.0, 1.0}
    assert torch.equal(encoded[:, 0] > 0, torch.from_numpy(train))
    decoded = rep.decode(encoded)
    assert decoded.dtype == bool
    np.testing.assert_array_equal(decoded, train)


def test_voxel_accepts_uint8_and_tensors_and_refuses_other_grids(train: np.ndarray) -> None:
    rep = VoxelRepresentation().fit(torch.from_numpy(train.astype(np.uint8)))
    np.testing.assert_array_equal(rep.decode(rep.encode(train.astype(np.uint8))), train)
    with pytest.raises(BenchError, match="resolution 8"):
        rep.encode(np.zeros((2, 8, 8, 8), dtype=bool))
    with pytest.raises(BenchError, match="binary occupancy"):
        rep.encode(train.astype(np.float32))


# --------------------------------------------------------------------------- pca

def test_pca_round_trip_exact_when_k_reaches_the_rank_of_the_training_data() -> None:
    full = ellipsoids(10, seed=2)
    rep = PCARepresentation(n_components=9).fit(full)
    np.testing.assert_array_equal(rep.decode(rep.encode(full)), full)

    low = low_rank_volumes(10, seed=3)
    rep = PCARepresentation(n_components=9).fit(low)
    latents = rep.encode(low)
    np.testing.assert_array_equal(rep.decode(latents), low)
    assert torch.count_nonzero(rep.explained_variance_) == 3
    assert torch.all(latents[:, 3:] == 0)
    assert torch.all(rep.components_[3:] == 0)


def test_pca_latents_are_whitened_on_the_training_set(pca: PCARepresentation,
                                                      train: np.ndarray) -> None:
    latents = pca.encode(train).double()
    assert tuple(latents.shape) == (len(train), 12) == (len(train),) + pca.encoded_shape
    torch.testing.assert_close(latents.mean(0), torch.zeros(12, dtype=torch.float64),
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(latents.var(0), torch.ones(12, dtype=torch.float64),
                               atol=1e-4, rtol=0)


def test_pca_matches_an_svd_of_the_centred_data(pca: PCARepresentation,
                                                train: np.ndarray) -> None:
    flat = torch.from_numpy(train.reshape(len(train), -1)).double()
    centred = flat - flat.mean(0)
    _, singular, right = torch.linalg.svd(centred, full_matrices=False)
    expected_variance = singular[:12] ** 2 / (len(train) - 1)
    torch.testing.assert_close(pca.explained_variance_, expected_variance, rtol=1e-9, atol=0)
    torch.testing.assert_close(pca.explained_variance_ratio_,
                               singular[:12] ** 2 / (singular ** 2).sum(), rtol=1e-9, atol=0)
    cosines = (right[:12] @ pca.components_.double().T).diagonal().abs()
    torch.testing.assert_close(cosines, torch.ones(12, dtype=torch.float64), atol=1e-5, rtol=0)


def test_pca_components_are_orthonormal_with_a_positive_peak(pca: PCARepresentation) -> None:
    components = pca.components_.double()
    torch.testing.assert_close(components @ components.T, torch.eye(12, dtype=torch.float64),
                               atol=1e-5, rtol=0)
    peaks = components.gather(1, components.abs().argmax(1, keepdim=True))
    assert torch.all(peaks > 0)


def test_pca_fit_sees_only_the_volumes_it_is_given() -> None:
    volumes = ellipsoids(30, seed=4)
    train, test = volumes[:20], volumes[20:]
    rep = PCARepresentation(n_components=5).fit(train)
    expected_mean = torch.from_numpy(train.reshape(20, -1).mean(0)).float()
    assert torch.equal(rep.mean_, expected_mean)
    assert not torch.equal(rep.mean_, torch.from_numpy(volumes.reshape(30, -1).mean(0)).float())
    assert rep.n_samples_ == 20
    rep.encode(test)
    assert torch.equal(rep.mean_, expected_mean)


def test_pca_fits_are_deterministic(train: np.ndarray) -> None:
    first = PCARepresentation(n_components=12).fit(train)
    second = PCARepresentation(n_components=12).fit(torch.from_numpy(train))
    assert torch.equal(first.components_, second.components_)
    assert torch.equal(first.encode(train), second.encode(train))


def test_pca_refuses_more_components_than_training_volumes_allow() -> None:
    with pytest.raises(BenchError, match="n_components=10 needs at least 11 training volumes, "
                                         "got 10; set n_components to at most 9"):
        PCARepresentation(n_components=10).fit(ellipsoids(10, seed=5))
    with pytest.raises(BenchError, match="positive integer"):
        PCARepresentation(n_components=0).fit(ellipsoids(10, seed=5))


def test_pca_decode_checks_the_latent_shape_and_values(pca: PCARepresentation) -> None:
    with pytest.raises(BenchError, match=r"shape \(N, 12\)"):
        pca.decode(torch.zeros(3, 11))
    latents = torch.zeros(3, 12)
    latents[1, 4] = float("nan")
    with pytest.raises(BenchError, match="non-finite"):
        pca.decode(latents)


def test_pca_decode_of_zero_latents_is_the_thresholded_mean(pca: PCARepresentation) -> None:
    decoded = pca.decode(torch.zeros(2, 12, dtype=torch.float64))
    expected = (pca.mean_ > 0.5).numpy().reshape(R, R, R)
    np.testing.assert_array_equal(decoded, np.stack([expected, expected]))


# -------------------------------------------------------------- contract, save, load

# Small enough to fit in a second: pca of 6 components, an autoencoder of 12 steps.
SMALL = {"pca": {"n_components": 6},
         "ae": {"channels": [4, 8], "latent_channels": 2, "steps": 12, "batch_size": 4,
                "threads": 1}}


@parametrize_with_checks([get_representation(name, **SMALL.get(name, {}))
                          for name in REPRESENTATIONS.names()])
def test_the_representation_contract(item, check) -> None:
    check(item)


@pytest.mark.parametrize("name", REPRESENTATIONS.names())
def test_encode_decode_and_shape_before_fit_raise(name: str) -> None:
    rep = get_representation(name)
    with pytest.raises(BenchError, match="not fitted"):
        rep.encode(ellipsoids(2, seed=6))
    with pytest.raises(BenchError, match="not fitted"):
        rep.decode(torch.zeros(2, 1, R, R, R))
    with pytest.raises(BenchError, match="not fitted"):
        rep.encoded_shape


@pytest.mark.parametrize("name", REPRESENTATIONS.names())
def test_save_load_round_trip_gives_identical_encodings(name: str, train: np.ndarray,
                                                        tmp_path) -> None:
    params = {"n_components": 7} if name == "pca" else SMALL.get(name, {})
    rep = get_representation(name, **params).fit(train)
    path = tmp_path / f"{name}.pt"
    rep.save(path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    payload = torch.load(path, weights_only=True)
    assert payload["representation"] == name and payload["params"] == rep.get_params()
    for loaded in (Representation.load(path), type(rep).load(path)):
        assert type(loaded) is type(rep) and loaded.get_params() == rep.get_params()
        assert torch.equal(loaded.encode(train), rep.encode(train))
        np.testing.assert_array_equal(loaded.decode(rep.encode(train)),
                                      rep.decode(rep.encode(train)))


def test_load_refuses_another_representation_or_a_broken_file(train: np.ndarray,
                                                              tmp_path) -> None:
    path = tmp_path / "voxel.pt"
    VoxelRepresentation().fit(train).save(path)
    with pytest.raises(BenchError, match="holds representation 'voxel', not 'pca'"):
        PCARepresentation.load(path)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a torch file")
    with pytest.raises(BenchError, match="cannot read a saved representation"):
        Representation.load(broken)


def test_get_representation_names_the_closest_match_and_allowed_params() -> None:
    with pytest.raises(BenchError, match="unknown representation 'pcaa'; registered: ae, "
                                         "pca, voxel; did you mean 'pca'"):
        get_representation("pcaa")
    with pytest.raises(BenchError, match="did you mean 'voxel'"):
        get_representation("voxels")
    with pytest.raises(BenchError, match="'pca' has no parameter 'k'; allowed: n_components"):
        get_representation("pca", k=3)
    rep = get_representation("pca", n_components=5)
    assert isinstance(rep, PCARepresentation) and rep.n_components == 5
    assert repr(rep) == "PCARepresentation(n_components=5)"


# ----------------------------------------------------------------- reconstruction

class _ShiftOneVoxel(Representation):
    """A stand-in whose decode adds the voxel (0, 0, 0) and removes (R-1, R-1, R-1)."""

    name = "shift-one-voxel"

    def fit(self, volumes):
        self.resolution_ = volumes.shape[1]
        return self

    @property
    def encoded_shape(self):
        return (self.resolution_,) * 3

    def encode(self, volumes):
        return torch.as_tensor(np.asarray(volumes, dtype=np.float32))

    def decode(self, encoded):
        volumes = encoded.numpy() > 0.5
        volumes[:, 0, 0, 0] = True
        volumes[:, -1, -1, -1] = False
        return volumes

    def _get_state(self):
        return {}

    def _set_state(self, state):
        pass


def test_reconstruction_dice_matches_a_hand_computed_value() -> None:
    volumes = np.zeros((4, 4, 4, 4), dtype=bool)
    volumes[0, 2:4, 2:4, 2:4] = True        # 8 voxels including the removed corner
    volumes[1, 1:3, 1:3, 1:2] = True        # 4 voxels, neither corner
    volumes[2, 0, 0, 0] = True              # exactly the added voxel
    rep = _ShiftOneVoxel().fit(volumes)     # volume 3 stays empty
    # 0: |A|=8, |B|=8 (one added, one removed), |A∩B|=7 -> 14/16
    # 1: |A|=4, |B|=5, |A∩B|=4 -> 8/9;  2: identical -> 1;  3: |A|=0, |B|=1 -> 0
    expected = np.array([14 / 16, 8 / 9, 1.0, 0.0])
    np.testing.assert_allclose(reconstruction_dice(rep, volumes), expected, rtol=1e-6)


def test_reconstruction_dice_is_one_for_the_voxel_representation(train: np.ndarray) -> None:
    scores = reconstruction_dice(VoxelRepresentation().fit(train), train)
    assert scores.shape == (len(train),) and scores.dtype == np.float64
    np.testing.assert_array_equal(scores, np.ones(len(train)))


@pytest.mark.slow
def test_pca_reconstruction_floor_on_synthetic_skulls() -> None:
    from bench.data.synthskull import make_dataset

    dataset = make_dataset(n=120, resolution=32)
    rep = PCARepresentation(n_components=32).fit(dataset.subset("train").volumes)
    scores = reconstruction_dice(rep, dataset.subset("test").volumes)
    # Measured: mean test Dice 0.908 (95 train, 12 test subjects, seed 0).
    assert scores.mean() > 0.89
