"""The method registry: checks on registration, lookup errors, plugins, entry points, bench list."""

import json
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from importlib.resources import files
from types import SimpleNamespace

import pytest

import methods  # noqa: F401  (registers the built-in methods)
from bench.cli import main
from bench.config import PRESETS
from bench.core.errors import BenchError
import bench.core.registry as core_registry
from bench.core.registry import load_plugin
from methods import registry
from methods.base import METHODS
from methods.base import FitReport, Method, Params, SampleResult


@pytest.fixture(autouse=True)
def isolated_registry(isolated_methods):
    """Each test starts from the built-in registry and imports toy_plugin afresh."""
    with isolated_methods() as methods_now:
        yield methods_now


@dataclass(frozen=True)
class NoParams(Params):
    pass


class Constant(Method):
    """Samples zeros (a minimal method for registry tests)."""

    description = "zeros"
    Params = NoParams

    def _fit(self, train, val, config, seed, device):
        return FitReport(method=self.name, seed=seed)

    def _sample(self, n, steps, seed, device):
        import torch

        return SampleResult(torch.zeros(n, *self.data_shape_), nfe=0)

    def _state(self):
        return {}

    def _restore(self, state, device):
        pass


def fresh_subclass(name="Fresh"):
    """A new Method class each call, so that registering it twice means two classes."""
    return type(name, (Constant,), {})


# ---------------------------------------------------------------- registration

def test_registering_a_method_sets_its_name():
    cls = registry.register_method("constant")(fresh_subclass())
    assert registry.get_method("constant") is cls and cls.name == "constant"


@pytest.mark.parametrize("thing", [object, dict, lambda: None, 3])
def test_registering_a_non_method_is_refused(thing):
    with pytest.raises(BenchError, match="not a subclass of methods.base.Method"):
        registry.register_method("not-a-method")(thing)
    assert "not-a-method" not in METHODS.classes


def test_registering_an_incomplete_method_is_refused():
    class Incomplete(Method):
        def _fit(self, train, val, config, seed, device):
            return FitReport(method=self.name, seed=seed)

    with pytest.raises(BenchError, match="does not implement _restore, _sample, _state"):
        registry.register_method("incomplete")(Incomplete)


@dataclass
class MutableParams:  # (a subclass of the frozen Params cannot be mutable)
    size: int = 1


@pytest.mark.parametrize("params", [type("P", (), {}), MutableParams, "not a class"])
def test_params_must_be_a_frozen_dataclass(params):
    cls = type("BadParams", (Constant,), {"Params": params})
    with pytest.raises(BenchError, match="Params must be a frozen dataclass"):
        registry.register_method("bad-params")(cls)


def test_one_class_has_one_name():
    cls = registry.register_method("first-name")(fresh_subclass())
    with pytest.raises(BenchError, match="already registered as 'first-name'"):
        registry.register_method("second-name")(cls)
    assert cls.name == "first-name" and "second-name" not in METHODS.classes


def test_duplicate_names_are_refused():
    ddpm = METHODS.classes["ddpm"]
    with pytest.raises(BenchError, match="'ddpm' is already registered by methods.diffusion.DDPM"):
        registry.register_method("ddpm")(fresh_subclass())
    assert METHODS.classes["ddpm"] is ddpm and ddpm.name == "ddpm"


def test_registering_the_same_class_again_is_harmless():
    cls = fresh_subclass()
    registry.register_method("twice")(cls)
    assert registry.register_method("twice")(cls) is cls


@pytest.mark.parametrize("bad", ["", "a,b", "with space", "-leading", None])
def test_names_usable_on_the_command_line_only(bad):
    with pytest.raises(BenchError, match="method name"):
        registry.register_method(bad)


# ---------------------------------------------------------------- lookup errors

def test_unknown_name_lists_the_valid_names_and_the_closest():
    with pytest.raises(BenchError) as error:
        registry.get_method("ddmp")
    message = str(error.value)
    assert "unknown method 'ddmp'" in message
    for name in ("ddpm", "gaussian", "train-copy", "otfm", "cfm", "rf2", "sbcfm"):
        assert name in message
    assert "did you mean 'ddpm'?" in message
    assert "--plugin" in message


def test_unknown_hyperparameter_names_it_and_the_allowed_ones():
    with pytest.raises(BenchError) as error:
        registry.create_method("ddpm", shedule="cosine")
    message = str(error.value)
    assert "'shedule'" in message
    assert "allowed: clip_sample, sampler, schedule" in message
    assert "did you mean 'schedule'?" in message


def test_bad_hyperparameter_value_names_the_allowed_values():
    with pytest.raises(BenchError, match="sampler must be one of ddim, ancestral; got 'euler'"):
        registry.create_method("ddpm", sampler="euler")


def test_create_method_passes_hyperparameters():
    method = registry.create_method("ddpm", schedule="cosine", sampler="ancestral")
    assert (method.params.schedule, method.params.sampler) == ("cosine", "ancestral")
    assert not method.fitted_


# ---------------------------------------------------------------- plugins

def test_a_plugin_module_registers_its_methods():
    assert "toy-diagonal" not in METHODS.classes
    load_plugin("toy_plugin")
    cls = registry.get_method("toy-diagonal")
    assert cls.__module__ == "toy_plugin" and cls.name == "toy-diagonal"


def test_a_missing_plugin_is_a_clear_error():
    with pytest.raises(BenchError, match="--plugin no_such_plugin_module: cannot import it"):
        load_plugin("no_such_plugin_module")


def test_bench_list_with_a_plugin_shows_it(capsys):
    assert main(["--plugin", "toy_plugin", "list"]) == 0
    out = capsys.readouterr().out
    assert "toy-diagonal" in out
    assert "toy: independent Gaussian per feature (the README's example)" in out
    assert "scale=1.0: float" in out


def test_bench_with_a_missing_plugin_fails_without_traceback(capsys):
    assert main(["--plugin", "no_such_plugin_module", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error: --plugin no_such_plugin_module") and "Traceback" not in err


# ---------------------------------------------------------------- entry points

def fake_entry_points(*entries):
    def entry_points(group):
        return list(entries) if group == METHODS.entry_point_group else []

    return entry_points


def test_an_entry_point_registers_under_its_name(monkeypatch):
    cls = fresh_subclass("ThirdParty")
    entry = SimpleNamespace(name="third-party", value="pkg.module:ThirdParty", load=lambda: cls)
    monkeypatch.setattr(core_registry, "entry_points", fake_entry_points(entry))
    assert registry.get_method("third-party") is cls  # found on first lookup
    assert cls.name == "third-party"


def test_an_entry_point_to_a_decorated_class(monkeypatch):
    entry = EntryPoint(name="toy-diagonal", value="toy_plugin:DiagonalGaussian",
                       group=METHODS.entry_point_group)
    monkeypatch.setattr(core_registry, "entry_points", fake_entry_points(entry))
    assert registry.get_method("toy-diagonal").__module__ == "toy_plugin"


def test_an_entry_point_method_is_listed(monkeypatch, capsys):
    cls = fresh_subclass("Listed")
    entry = SimpleNamespace(name="listed-ep", value="pkg:Listed", load=lambda: cls)
    monkeypatch.setattr(core_registry, "entry_points", fake_entry_points(entry))
    assert main(["list"]) == 0
    assert "listed-ep" in capsys.readouterr().out


def test_an_entry_point_to_a_non_method_is_refused(monkeypatch):
    entry = SimpleNamespace(name="bad-ep", value="pkg:thing", load=lambda: dict)
    monkeypatch.setattr(core_registry, "entry_points", fake_entry_points(entry))
    with pytest.raises(BenchError, match="not a subclass"):
        METHODS.load_entry_points()


def test_an_entry_point_that_cannot_load_is_a_clear_error(monkeypatch):
    entry = EntryPoint(name="broken-ep", value="no_such_package.module:Thing",
                       group=METHODS.entry_point_group)
    monkeypatch.setattr(core_registry, "entry_points", fake_entry_points(entry))
    with pytest.raises(BenchError, match="entry point 'broken-ep'.*cannot be loaded"):
        registry.get_method("broken-ep")


def test_an_entry_point_name_must_match_the_decorator(monkeypatch):
    entry = EntryPoint(name="other-name", value="toy_plugin:DiagonalGaussian",
                       group=METHODS.entry_point_group)
    monkeypatch.setattr(core_registry, "entry_points", fake_entry_points(entry))
    with pytest.raises(BenchError, match="registered as 'toy-diagonal'"):
        METHODS.load_entry_points()


# ---------------------------------------------------------------- bench list

def test_bench_list_shows_methods_representations_and_datasets(monkeypatch, tmp_path, capsys):
    datasets = tmp_path / "datasets"
    (datasets / "ct-scans").mkdir(parents=True)
    (datasets / "ct-scans" / "manifest.json").write_text(
        json.dumps({"n_subjects": 12, "resolution": 64}))
    (datasets / "synthskull-v1-r32-n8-s0").mkdir()  # a cached synthskull configuration
    (datasets / "synthskull-v1-r32-n8-s0" / "manifest.json").write_text("{}")
    (datasets / "unfinished").mkdir()  # no manifest: an interrupted import
    monkeypatch.setenv("SKULLBENCH_CACHE", str(tmp_path))
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    sections = out.split("representations:")
    listed_methods, rest = sections[0], sections[1]
    for name, cls in METHODS.classes.items():
        assert f"  {name} " in listed_methods and cls.description in listed_methods
    assert "schedule=linear: str (linear|cosine)" in listed_methods
    assert "sampler=ddim: str (ddim|ancestral)" in listed_methods
    assert "solver=euler: str (euler|midpoint|heun2|heun3|rk4|dopri5)" in listed_methods
    assert "ridge=1e-06: float" in listed_methods
    assert "pca" in rest and "n_components=64: int" in rest and "voxel" in rest
    listed_datasets = rest.split("datasets:")[1]
    assert "synthskull" in listed_datasets
    assert "ct-scans" in listed_datasets and "12 subjects at 64^3" in listed_datasets
    assert "synthskull-v1" not in listed_datasets and "unfinished" not in listed_datasets


def test_bench_list_lines_fit_a_terminal(capsys):
    main(["list"])
    assert max(len(line) for line in capsys.readouterr().out.splitlines()) <= 100


def test_bench_list_shows_metric_groups_and_presets(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    metrics_part = out.split("metrics")[1].split("presets")[0]
    assert "distribution" in metrics_part and "MMD-CD" in metrics_part
    assert "1-NNA-CD" in metrics_part and "failure-rate" in metrics_part
    presets_part = out.split("presets (bench run --config NAME):")[1]
    listed = [line.split()[0] for line in presets_part.strip().splitlines()
              if not line.startswith(" " * 5)]
    shipped = sorted(path.name.removesuffix(".yaml")
                     for path in files("bench.presets").iterdir() if path.name.endswith(".yaml"))
    assert listed == list(PRESETS)
    assert sorted(listed) == shipped
