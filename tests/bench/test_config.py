"""Run configuration: presets, overrides and errors that name the key."""

import pytest

from bench.config import PRESETS, RunConfig, load_config, to_dict
from bench.core.errors import BenchError


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_loads_into_typed_config(preset):
    config = load_config(preset)
    assert isinstance(config, RunConfig)
    assert config.train.steps > 0 and all(s > 0 for s in config.sampling.steps)
    assert isinstance(config.sampling.steps, tuple)


def test_default_is_the_quick_preset():
    assert load_config() == load_config("quick")


def test_overrides_are_typed_and_nested():
    config = load_config("quick", ["train.steps=500", "sampling.steps=[1, 5]",
                                   "train.learning_rate=2e-4"])
    assert config.train.steps == 500
    assert config.sampling.steps == (1, 5)
    assert config.train.learning_rate == pytest.approx(2e-4)


def test_yaml_file_round_trips_through_to_dict(tmp_path):
    import yaml

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(to_dict(load_config("ci"))))
    assert load_config(str(path)) == load_config("ci")


@pytest.mark.parametrize("override, message", [
    ("train.stepz=5", "unknown key 'train.stepz'; did you mean 'train.steps'"),
    ("train.steps=many", "config train.steps: expected int"),
    ("dataset=3", "config dataset: expected a mapping"),
    ("train.steps", "expected KEY.PATH=VALUE"),
    ("jobs=0", "config jobs: must be an integer of at least 1"),
    ("sampling.steps=[0, 5]", "config sampling.steps: must be an integer of at least 1, got 0"),
    ("sampling.steps=[5, 5]", "repeats a budget"),
    ("sampling.n_samples=1", "config sampling.n_samples: must be an integer of at least 2"),
    ("metrics.reference_split=tset", "reference_split: 'tset' is not a split"),
    ("metrics.feature_components=0", "config metrics.feature_components"),
    ("downstream.n_test=0", "config downstream.n_test"),
    ("seeds=0", "config seeds: must be an integer of at least 1"),
    ("device=gpu", "config device: 'gpu' is not a device"),
    ("threads=2", "jobs=2 runs cells in forked processes.*set threads=1"),
    ("device=cuda", "jobs=2 is for CPU runs.*--shard"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(BenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config("quick", [override])  # the quick preset runs two jobs


def test_unknown_preset_suggests_the_closest(tmp_path):
    with pytest.raises(BenchError, match="did you mean preset 'quick'"):
        load_config("quik")


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train: {steps: [1,\n")
    with pytest.raises(BenchError, match="bad.yaml: not valid YAML"):
        load_config(str(path))
