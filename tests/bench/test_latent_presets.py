"""The learned-latent presets, latent (CPU) and paper-latent (GPU), at a tiny size on CPU
through the same code path: autoencoder representation, latent U-Net, FD-ae."""

import json

import pandas as pd
import pytest
import torch

from bench.config import load_config
from bench.run import run_benchmark
from bench.store import RunFolder
from methods.backbones import BackboneConfig
from methods.base import METHODS, FitConfig
from methods.registry import create_method
from bench.core.training import TrainConfig

TINY = ["dataset.n=60", "dataset.resolution=16", "seeds=1", "references=[oracle-rep, gaussian]",
        "sampling.steps=[2]", "sampling.n_samples=8", "metrics.points=64",
        "metrics.exclude=[pointflow-emd]", "metrics.params.ms-ssim-diversity.pairs=2",
        "downstream.enabled=false", "train.steps=4", "train.batch_size=4",
        "train.evaluate_at=[2]", "train.checkpoint_every=2", "jobs=1", "threads=1",
        "representation.params.steps=3", "representation.params.batch_size=4",
        "representation.params.threads=1", "metrics.encoder_params.steps=3",
        "metrics.encoder_params.threads=1"]
SMALL_UNET = ["backbone.unet_channels=[16, 16]", "backbone.unet_attention=[false, false]",
              "backbone.unet_head_channels=16", "backbone.unet_norm_groups=16"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SKULLBENCH_CACHE", str(tmp_path / "cache"))


@pytest.mark.slow
@pytest.mark.parametrize("preset, extra", [
    ("latent", ["representation.params.channels=[4, 8]"]),
    ("paper-latent", ["device=cpu", "representation.params.channels=[8, 8]",
                      "representation.params.norm_groups=8",
                      "metrics.encoder_params.channels=[8, 8]",
                      "metrics.encoder_params.norm_groups=8"])])
def test_preset_runs_end_to_end_at_a_tiny_size(tmp_path, preset, extra):
    config = load_config(preset, TINY + SMALL_UNET + extra + ["methods=[otfm]"])
    outcomes = run_benchmark(config, tmp_path / "run", quiet=True)
    assert {o.status for o in outcomes} == {"done"}, [o.reason for o in outcomes]
    run = RunFolder(tmp_path / "run")
    rows = pd.concat(pd.read_csv(path) for path in run.path.glob("cells/*/results.csv"))
    otfm = rows[rows["method"] == "otfm"]
    assert {"FD-ae", "PRDC-recall-ae", "MMD-CD"} <= set(otfm["metric"])
    facts = json.loads((run.path / "reference.json").read_text())
    assert facts["representation"] == "ae" and facts["representation_fit"]["steps"] == 3
    assert 0.0 <= facts["reconstruction_dice_min"] <= facts["reconstruction_dice_mean"] <= 1.0
    assert "fd_ae_real" in facts


@pytest.mark.parametrize("name", [name for name in METHODS.names() if METHODS.get(name).trains])
def test_every_deep_method_trains_and_samples_on_a_spatial_latent(name):
    latents = torch.randn(12, 4, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    backbone = BackboneConfig(unet_channels=(16, 16), unet_attention=(False, False),
                              unet_head_channels=16, unet_norm_groups=16)
    config = FitConfig(backbone=backbone, train=TrainConfig(steps=2, batch_size=4))
    method = create_method(name)
    report = method.fit(latents, None, config, seed=0)
    assert report.steps >= 2 and report.parameter_count > 10_000
    samples, nfe = method.sample(3, 2, seed=0)
    assert tuple(samples.shape) == (3, 4, 4, 4, 4) and nfe >= 1
    assert torch.isfinite(samples).all()
