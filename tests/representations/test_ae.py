"""The ``ae`` representation: shapes, normalisation, determinism, resume, errors, cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench.core import training
from bench.core.errors import BenchError, NonFiniteError
from bench.data.dataset import SkullDataset
from bench.representations import AutoencoderRepresentation, get_representation
from bench.representations import cache as rep_cache
from bench.representations.ae import BATCH
from bench.representations.cache import cached_representation, representation_folder

R = 16
TINY = {"channels": [4, 8], "latent_channels": 2, "steps": 12, "batch_size": 4,
        "warmup_steps": 2, "checkpoint_every": 0, "threads": 1}


@pytest.fixture(scope="module")
def volumes():
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(R) + 0.5] * 3, indexing="ij"), axis=-1)
    centres = R / 2 + rng.normal(0.0, 1.0, size=(24, 3))
    radii = rng.uniform(3.0, 6.0, size=(24, 3))
    return np.stack([(((grid - c) / r) ** 2).sum(-1) < 1.0 for c, r in zip(centres, radii)])


@pytest.fixture(scope="module")
def fitted(volumes):
    return get_representation("ae", **TINY).fit(volumes)


def test_latents_are_spatial_and_decode_to_bool_volumes_of_the_grid(fitted, volumes):
    encoded = fitted.encode(volumes[:5])
    assert fitted.encoded_shape == (2, 4, 4, 4)  # two lean levels: R / 4
    assert encoded.dtype == torch.float32 and tuple(encoded.shape) == (5, 2, 4, 4, 4)
    decoded = fitted.decode(encoded)
    assert decoded.dtype == bool and decoded.shape == (5, R, R, R)


def test_monai_kl_downsamples_by_two_per_level_but_the_first(volumes):
    params = {**TINY, "architecture": "monai-kl", "channels": [8, 8], "norm_groups": 8,
              "steps": 2}
    rep = get_representation("ae", **params).fit(volumes)
    assert rep.encoded_shape == (2, 8, 8, 8)
    assert rep.decode(rep.encode(volumes[:3])).shape == (3, R, R, R)
    # The activation entering the one downsampling, the encoder output and the mean.
    assert rep.features(volumes[:3]).shape == (3, 8 + 2 + 2)


def test_latents_have_zero_mean_and_unit_spread_per_channel_on_training(fitted, volumes):
    encoded = fitted.encode(volumes).double()
    np.testing.assert_allclose(encoded.mean(dim=(0, 2, 3, 4)), 0.0, atol=1e-5)
    np.testing.assert_allclose(encoded.std(dim=(0, 2, 3, 4)), 1.0, atol=1e-5)
    assert fitted.scale_.shape == fitted.shift_.shape == (2,)


def test_a_sample_is_coded_the_same_whatever_its_batch(fitted, volumes):
    alone = fitted.encode(volumes[BATCH + 1:BATCH + 2])
    assert torch.equal(fitted.encode(volumes)[BATCH + 1:BATCH + 2], alone)
    latents = fitted.encode(volumes)
    np.testing.assert_array_equal(fitted.decode(latents)[3:4], fitted.decode(latents[3:4]))


def test_fits_are_deterministic_per_seed(fitted, volumes):
    again = get_representation("ae", **TINY).fit(volumes)
    assert torch.equal(again.encode(volumes), fitted.encode(volumes))
    other = get_representation("ae", **{**TINY, "seed": 1}).fit(volumes)
    assert not torch.equal(other.encode(volumes), fitted.encode(volumes))


def test_training_reconstructs_better_than_the_template_alone(volumes):
    rep = get_representation("ae", **{**TINY, "steps": 150}).fit(volumes)
    template = (rep.network_.template[0, 0] > 0).numpy()
    decoded = rep.decode(rep.encode(volumes))

    def dice(a, b):
        return 2 * (a & b).sum() / (a.sum() + b.sum())

    learned = np.mean([dice(d, v) for d, v in zip(decoded, volumes)])
    baseline = np.mean([dice(template, v) for v in volumes])
    assert learned > baseline + 0.05 and learned > 0.8, (learned, baseline)


def test_pooled_features_concatenate_every_level_and_the_latent(fitted, volumes):
    features = fitted.features(volumes[:3])
    assert features.dtype == np.float64 and features.shape == (3, 4 + 8 + 2)
    assert np.isfinite(features).all() and features.std(axis=0).max() > 0


def test_an_interrupted_fit_resumes_to_the_same_weights(volumes, tmp_path, monkeypatch):
    params = {**TINY, "checkpoint_every": 4}
    whole = get_representation("ae", **params).fit(volumes)
    original = training._Loop.save

    def save_then_die(loop):
        original(loop)
        if loop.step == 8:
            raise KeyboardInterrupt

    monkeypatch.setattr(training._Loop, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        get_representation("ae", **params).fit(volumes, checkpoint_dir=tmp_path)
    monkeypatch.setattr(training._Loop, "save", original)
    resumed = get_representation("ae", **params).fit(volumes, checkpoint_dir=tmp_path)
    assert resumed.fit_report_["resumed_from"] == 8
    assert torch.equal(resumed.encode(volumes), whole.encode(volumes))


def test_a_non_finite_loss_stops_the_fit_naming_the_step(volumes):
    with pytest.raises(NonFiniteError, match="representation ae.*step 0"):
        get_representation("ae", **{**TINY, "kl_weight": float("inf")}).fit(volumes)


@pytest.mark.parametrize("params, message", [
    ({"architecture": "vqvae"}, "architecture 'vqvae' is unknown"),
    ({"channels": [4, 8, 8, 8, 8]}, "divides the grid by 32"),
    ({"architecture": "monai-kl", "channels": [6, 8]}, "multiple of norm_groups=8"),
    ({"steps": 0}, "steps must be a positive integer"),
])
def test_bad_parameters_are_refused_by_name(volumes, params, message):
    with pytest.raises(BenchError, match=message):
        get_representation("ae", **{**TINY, **params}).fit(volumes)


def test_save_and_load_keep_the_network_and_the_normalisation(fitted, volumes, tmp_path):
    fitted.save(tmp_path / "ae.pt")
    loaded = AutoencoderRepresentation.load(tmp_path / "ae.pt")
    assert torch.equal(loaded.encode(volumes), fitted.encode(volumes))
    np.testing.assert_array_equal(loaded.decode(fitted.encode(volumes)),
                                  fitted.decode(fitted.encode(volumes)))


# --------------------------------------------------------------------------- cache

def dataset_of(volumes) -> SkullDataset:
    n = len(volumes)
    split = np.array(["train"] * (n - 4) + ["test"] * 4)
    return SkullDataset(name="ellipsoids", volumes=volumes,
                        subject_ids=[f"s{i}" for i in range(n)], split=split,
                        manifest={"data_sha256": "abc"})


def test_the_cache_fits_once_and_reports_the_reconstruction(volumes, tmp_path, monkeypatch):
    data = dataset_of(volumes)
    first = cached_representation("ae", TINY, data, root=tmp_path)
    assert first.path == representation_folder("ae", first.key, tmp_path) / "representation.pt"
    report = json.loads((first.path.parent / "fit.json").read_text())
    assert report["steps"] == 12 and report["wall_time_s"] > 0
    assert 0.0 <= report["reconstruction_dice_min"] <= report["reconstruction_dice_mean"] <= 1.0

    def no_fit(*args, **kwargs):
        raise AssertionError("a cached representation was fitted again")

    monkeypatch.setattr(AutoencoderRepresentation, "fit", no_fit)
    again = cached_representation("ae", TINY, data, root=tmp_path)
    assert again.key == first.key and again.report == report
    assert torch.equal(again.representation.encode(volumes),
                       first.representation.encode(volumes))


def test_the_cache_key_changes_with_parameters_data_and_code(monkeypatch):
    key = rep_cache.cache_key("ae", TINY, "abc")
    assert rep_cache.cache_key("ae", {**TINY, "steps": 13}, "abc") != key
    assert rep_cache.cache_key("ae", TINY, "abd") != key
    monkeypatch.setattr(rep_cache, "source_fingerprint", lambda root, packages: "edited")
    assert rep_cache.cache_key("ae", TINY, "abc") != key
