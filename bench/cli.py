"""The ``bench`` command line.

    bench data preview [--dataset synthskull] [--n 16] [--out DIR]
    bench data import PATH --format nrrd|nifti|stl|ply|obj|npy --resolution R --name NAME
    bench list
    bench run [--methods otfm,ddpm] [--seeds 5] [--config PRESET_OR_FILE] [--steps 1,2,5]
              [--dataset NAME] [--out runs/NAME] [--device cpu|cuda] [--shard i/n]
              [--jobs N] [--set key.path=value] [--quiet]
              [--launcher local|submitit-local|slurm] [--partition P] [--gpus-per-cell G]
              [--cpus-per-cell C] [--mem-gb M] [--time HH:MM:SS] [--array-parallelism A]
              [--account A] [--nodes-per-cell N] [--resubmit-failed RUN]
    bench status RUN_DIR
    bench report RUN_DIR [--format md,csv,tex,html] [--out DIR]
    bench sample CHECKPOINT -n N --steps S --out DIR --format nifti|nrrd|stl [--seed 0]
    bench check [--update-baseline]
    bench audit [--config ci|quick|FILE] [--seeds 3] [--out DIR]
    bench --plugin MODULE ...   (repeatable: import MODULE first, registering what it defines)

User mistakes raise :class:`bench.core.errors.BenchError`; ``main`` prints its
message without a traceback and returns exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import sys
import textwrap
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

import downstream  # noqa: F401  (registers the built-in tasks)
import methods  # noqa: F401  (registers the built-in methods)
import metrics  # noqa: F401  (registers the built-in metrics)
from bench.audit import run_audit
from bench.check import run_gate
from bench.config import PRESETS, RunConfig, load_config
from bench.core.errors import BenchError
from bench.core.registry import load_plugin
from bench.core.values import TAGS
from bench.data.cache import cache_root
from bench.data.dataset import MANIFEST_FILE
from bench.data.importing import import_folder
from bench.data.preview import write_previews
from bench.data.sources import SYNTHSKULL, load_dataset
from bench.launch import submit_run
from bench.report import summary_table, write_report
from bench.representations import REPRESENTATIONS
from bench.run import parse_shard, run_benchmark
from bench.sample import sample_to_files
from bench.status import format_status, run_status
from bench.store import CONFIG_FILE, RunFolder
from downstream.base import TASKS, Task
from methods.base import METHODS, Method
from metrics.base import METRICS, Metric


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one sub-parser per command."""
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import MODULE before running the command, so that the methods, "
                             "metrics, representations and tasks it registers are available "
                             "(repeatable)")
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="generate, import and look at skull datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    _add_preview(data_commands)
    _add_import(data_commands)
    _add_list(commands)
    _add_run(commands)
    _add_status(commands)
    _add_report(commands)
    _add_sample(commands)
    _add_check(commands)
    _add_audit(commands)
    return parser


def _add_preview(commands: argparse._SubParsersAction) -> None:
    preview = commands.add_parser("preview", help="render skulls of a dataset to PNG files")
    preview.add_argument("--dataset", default="synthskull",
                         help="'synthskull' or the name of an imported dataset")
    preview.add_argument("--n", type=int, default=16, help="subjects in the grid image")
    preview.add_argument("--resolution", type=int, default=96,
                         help="grid size R for synthskull (16 to 256)")
    preview.add_argument("--seed", type=int, default=0, help="synthskull seed")
    preview.add_argument("--out", type=Path, default=Path("previews"), help="output folder")
    preview.set_defaults(handler=_run_preview)


def _run_preview(args: argparse.Namespace) -> None:
    # Load more subjects than are shown, so that the rare classes reach the grid.
    dataset = load_dataset(args.dataset, resolution=args.resolution, n=max(4 * args.n, 32),
                           seed=args.seed)
    for path in write_previews(dataset, args.out, n=args.n):
        print(path)


def _add_import(commands: argparse._SubParsersAction) -> None:
    importer = commands.add_parser("import", help="import a folder of real skull scans")
    importer.add_argument("path", type=Path, help="folder of scans (or one file)")
    importer.add_argument("--format", required=True, dest="file_format",
                          choices=["nrrd", "nifti", "stl", "ply", "obj", "npy"])
    importer.add_argument("--resolution", type=int, required=True, help="grid size R")
    importer.add_argument("--name", required=True, help="name of the cached dataset")
    importer.add_argument("--on-error", choices=["fail", "skip"], default="fail",
                          help="fail: write nothing if any file is bad; skip: import the rest")
    importer.add_argument("--threshold-hu", type=float, default=300.0,
                          help="bone threshold for CT intensities in Hounsfield units")
    importer.add_argument("--min-component-fraction", type=float, default=0.01,
                          help="drop connected components smaller than this share of bone")
    importer.add_argument("--align", choices=["none", "principal", "landmarks"],
                          default="none", help="canonical alignment")
    importer.add_argument("--landmarks", type=Path, default=None,
                          help="JSON file: subject id -> {landmark name: [x, y, z] mm}")
    importer.add_argument("--labels", type=Path, default=None,
                          help="CSV file with columns subject_id,label")
    importer.add_argument("--split-seed", type=int, default=0)
    importer.add_argument("--overwrite", action="store_true",
                          help="replace an existing dataset of the same name")
    importer.set_defaults(handler=_run_import)


def _run_import(args: argparse.Namespace) -> None:
    result = import_folder(
        args.path, file_format=args.file_format, resolution=args.resolution, name=args.name,
        on_error=args.on_error, threshold_hu=args.threshold_hu,
        min_component_fraction=args.min_component_fraction, align=args.align,
        landmarks_file=args.landmarks, labels_file=args.labels, split_seed=args.split_seed,
        overwrite=args.overwrite)
    print(result.summary())


def _add_list(commands: argparse._SubParsersAction) -> None:
    listing = commands.add_parser(
        "list", help="list methods, representations, datasets, metrics and presets")
    listing.set_defaults(handler=_run_list)


def _run_list(args: argparse.Namespace) -> None:
    print("methods:")
    for name in METHODS.names():
        method_cls = METHODS.get(name)
        _print_entry(name, method_cls.description or _first_line(method_cls.__doc__),
                     _dataclass_params(method_cls))
    print("representations:")
    for name in REPRESENTATIONS.names():
        representation_cls = REPRESENTATIONS.get(name)
        signature = inspect.signature(representation_cls.__init__).parameters
        params = [(key, signature[key].default, _type_name(signature[key].annotation))
                  for key in representation_cls.param_names()]
        _print_entry(name, _first_line(representation_cls.__doc__), params)
    print("datasets:")
    for name, summary in _datasets():
        _print_entry(name, summary, [])
    print(f"metrics (group: the values each returns; tags: {', '.join(TAGS)}):")
    for name in METRICS.names():
        metric_cls = METRICS.get(name)
        values = ", ".join(spec.name + (f" [{'/'.join(sorted(spec.tags))}]" if spec.tags else "")
                           for spec in metric_cls.outputs)
        _print_entry(name, f"{metric_cls.group}: {values}", _dataclass_params(metric_cls))
    print("tasks (downstream):")
    for name in TASKS.names():
        task_cls = TASKS.get(name)
        _print_entry(name, task_cls.description or _first_line(task_cls.__doc__),
                     _dataclass_params(task_cls))
    print("presets (bench run --config NAME):")
    for name in PRESETS:
        _print_entry(name, _preset_summary(name), [])


def _dataclass_params(cls: type[Method] | type[Metric] | type[Task]
                      ) -> list[tuple[str, object, object]]:
    """``(name, default, type)`` of each field of a registered class's ``Params``."""
    return [(f.name, _field_default(f), _field_type(f)) for f in dataclasses.fields(cls.Params)]


def _preset_summary(name: str) -> str:
    """The first comment line of a shipped preset file."""
    text = files("bench.presets").joinpath(f"{name}.yaml").read_text()
    return text.splitlines()[0].lstrip("# ").strip()


LIST_WIDTH = 100
LIST_INDENT = 17


def _print_entry(name: str, summary: str,
                 params: Sequence[tuple[str, object, object]]) -> None:
    """One listed item: its name and summary, then ``name=default: type`` pairs, wrapped to
    :data:`LIST_WIDTH` columns."""
    indent = " " * LIST_INDENT
    summary_lines = textwrap.wrap(summary, width=LIST_WIDTH - LIST_INDENT,
                                  break_on_hyphens=False) or [""]
    if len(name) > LIST_INDENT - 3:
        print(f"  {name}")
        summary_lines[0] = indent + summary_lines[0]
    else:
        summary_lines[0] = f"  {name:<{LIST_INDENT - 3}} {summary_lines[0]}"
    print("\n".join(summary_lines[:1] + [indent + line for line in summary_lines[1:]]))
    if params:
        text = ", ".join(f"{key}={default}: {kind}" for key, default, kind in params)
        print(textwrap.fill(text, width=LIST_WIDTH, initial_indent=indent,
                            subsequent_indent=indent, break_on_hyphens=False))


def _field_default(item: dataclasses.Field) -> object:
    if item.default is not dataclasses.MISSING:
        return item.default
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return "(required)"


def _field_type(item: dataclasses.Field) -> str:
    """The field's type, with its allowed values where the field declares them."""
    choices = item.metadata.get("choices")
    return _type_name(item.type) + (f" ({'|'.join(map(str, choices))})" if choices else "")


def _type_name(annotation: object) -> str:
    # Annotations are strings under ``from __future__ import annotations``.
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__",
                                                                  str(annotation))


def _first_line(doc: str | None) -> str:
    return doc.strip().splitlines()[0] if doc and doc.strip() else "(no description)"


def _datasets() -> list[tuple[str, str]]:
    """``synthskull`` and the imported datasets in the cache, with a summary each."""
    found = [(SYNTHSKULL, "procedural skulls from the embedded generator (any resolution, n)")]
    folder = cache_root() / "datasets"
    for path in sorted(folder.iterdir() if folder.is_dir() else []):
        manifest_path = path / MANIFEST_FILE
        if path.name.startswith(SYNTHSKULL) or not manifest_path.is_file():
            continue
        try:
            manifest = json.loads(manifest_path.read_text())
            summary = (f"imported: {manifest['n_subjects']} subjects at "
                       f"{manifest['resolution']}^3 voxels")
        except (OSError, ValueError, KeyError):
            summary = f"imported, but {manifest_path} is unreadable; import it again"
        found.append((path.name, summary))
    return found


def _add_run(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="run the benchmark grid (methods x seeds)")
    run.add_argument("--methods", default=None,
                     help="comma-separated method names (default: the preset's)")
    run.add_argument("--seeds", type=int, default=None, help="seeds per method")
    run.add_argument("--config", default=None,
                     help="preset (ci, quick, paper64) or YAML file; default quick")
    run.add_argument("--steps", default=None, help="comma-separated sampling step budgets")
    run.add_argument("--dataset", default=None, help="synthskull or an imported dataset")
    run.add_argument("--out", type=Path, default=None, help="run directory (default runs/PRESET)")
    run.add_argument("--device", default=None, help="cpu or cuda")
    run.add_argument("--shard", default=None, help="run share i of n of the cells, e.g. 2/4")
    run.add_argument("--jobs", type=int, default=None,
                     help="cells at once, each in its own one-thread process (CPU only)")
    run.add_argument("--set", action="append", default=[], dest="overrides",
                     metavar="KEY=VALUE", help="override a config value, e.g. train.steps=500")
    run.add_argument("--quiet", action="store_true", help="log lines instead of progress bars")
    run.add_argument("--no-report", action="store_true", help="skip `bench report` at the end")
    _add_launcher_options(run)
    run.set_defaults(handler=_run_run)


# --option -> key of the config's launcher block; given with --launcher local, an error.
LAUNCHER_OPTIONS = {"partition": str, "account": str, "gpus_per_cell": int,
                    "nodes_per_cell": int, "cpus_per_cell": int, "mem_gb": int, "time": str,
                    "array_parallelism": int}


def _add_launcher_options(run: argparse.ArgumentParser) -> None:
    launch = run.add_argument_group(
        "launchers", "where the cells run: local (this process, the default), slurm (one "
                     "SLURM job per pending cell, as one job array; returns at once) or "
                     "submitit-local (the same jobs as processes on this machine); config "
                     "block `launcher:`")
    launch.add_argument("--launcher", default=None, help="local, submitit-local or slurm")
    for key, kind in LAUNCHER_OPTIONS.items():
        launch.add_argument(f"--{key.replace('_', '-')}", type=kind, default=None, dest=key,
                            help=f"launcher.{key}")
    launch.add_argument("--resubmit-failed", type=Path, default=None, metavar="RUN",
                        help="submit the failed cells of RUN again, with its configuration")


def _run_config(args: argparse.Namespace, source: str | None = None) -> RunConfig:
    overrides = list(args.overrides) + _launcher_overrides(args)
    for key, value in (("methods", args.methods), ("seeds", args.seeds),
                       ("sampling.steps", args.steps), ("dataset.name", args.dataset),
                       ("device", args.device), ("jobs", args.jobs)):
        if value is not None:
            text = f"[{value}]" if key in ("methods", "sampling.steps") else str(value)
            overrides.append(f"{key}={text}")
    config = load_config(source or args.config, overrides)
    if config.launcher.name == "local":
        given = [key for key in LAUNCHER_OPTIONS if getattr(args, key) is not None]
        if given or args.resubmit_failed:
            names = ", ".join(f"--{key.replace('_', '-')}" for key in given) or \
                "--resubmit-failed"
            raise BenchError(f"{names}: options of --launcher slurm or submitit-local, "
                             f"given with --launcher local; add --launcher slurm, or drop them")
    return config


def _launcher_overrides(args: argparse.Namespace) -> list[str]:
    """``launcher.*`` overrides of the options given; a launcher other than local runs
    every cell as its own job, so the preset's ``jobs`` becomes 1 unless --jobs is given."""
    # JSON quoting keeps a string a string: YAML would read 08:00:00 as a number.
    overrides = [f"launcher.{key}={json.dumps(getattr(args, key))}" for key in LAUNCHER_OPTIONS
                 if getattr(args, key) is not None]
    if args.launcher is not None:
        overrides.append(f"launcher.name={args.launcher}")
        if args.launcher != "local" and args.jobs is None:
            overrides.append("jobs=1")
    return overrides


def _run_run(args: argparse.Namespace) -> None:
    if args.resubmit_failed is not None:
        _resubmit(args)
        return
    config = _run_config(args)
    out = args.out or Path("runs") / Path(args.config or "quick").stem
    if config.launcher.name != "local":
        _submit(config, out, args, failed_only=False)
        return
    outcomes = run_benchmark(config, out, parse_shard(args.shard), quiet=args.quiet)
    for outcome in outcomes:
        print(f"{outcome.cell.label:24s} {outcome.status:7s} {outcome.reason}".rstrip())
    if not args.no_report and args.shard is None:
        for path in write_report(out):
            if path.suffix == ".md" or path.name == "index.html":
                print(path)
        print(summary_table(out))
    failed = [o.cell.label for o in outcomes if o.status == "failed"]
    if failed:
        raise BenchError(f"{len(failed)} cell(s) failed ({', '.join(failed)}); the reasons are "
                         f"above and in each one's failed.json under {out}/cells/")


def _resubmit(args: argparse.Namespace) -> None:
    """``--resubmit-failed RUN``: the failed cells of RUN, with RUN's own configuration."""
    clashing = [name for name in ("config", "out", "shard") if getattr(args, name) is not None]
    if clashing:
        raise BenchError(f"--resubmit-failed RUN takes the configuration and folder of RUN; "
                         f"drop --{', --'.join(clashing)}")
    written = args.resubmit_failed / CONFIG_FILE
    if not written.is_file():
        raise BenchError(f"--resubmit-failed {args.resubmit_failed}: no {CONFIG_FILE} there; "
                         f"name the folder of a `bench run`")
    config = _run_config(args, source=str(written))
    if config.launcher.name == "local":
        raise BenchError("--resubmit-failed: the run was not submitted; add --launcher slurm "
                         "(or submitit-local), or rerun it with `bench run --out RUN`")
    _submit(config, args.resubmit_failed, args, failed_only=True)


def _submit(config: RunConfig, out: Path, args: argparse.Namespace, failed_only: bool) -> None:
    if args.shard is not None:
        raise BenchError(f"--shard {args.shard}: with --launcher {config.launcher.name} every "
                         f"cell is its own job already; drop --shard")
    submission = submit_run(config, out, tuple(args.plugin), failed_only=failed_only)
    for name, job_id in submission.jobs.items():
        print(f"{name:36s} submitted  job {job_id}")
    states = sorted(set(submission.skipped.values()))
    for state in states:
        count = sum(value == state for value in submission.skipped.values())
        print(f"not submitted: {count} {state}")
    print(f"{len(submission.jobs)} job(s) submitted ({config.launcher.name}); follow them with "
          f"`bench status {out}`, then `bench report {out}`")


def _add_status(commands: argparse._SubParsersAction) -> None:
    status = commands.add_parser("status", help="the state of every cell of a run")
    status.add_argument("run_dir", type=Path)
    status.set_defaults(handler=_run_status)


def _run_status(args: argparse.Namespace) -> None:
    print(format_status(run_status(args.run_dir)))


def _add_report(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser("report", help="build leaderboards from a run's results")
    report.add_argument("run_dir", type=Path)
    report.add_argument("--format", default="md,csv,tex,html", help="comma-separated formats")
    report.add_argument("--out", type=Path, default=None, help="default RUN_DIR/report")
    report.add_argument("--steps", type=int, default=None,
                        help="step budget of the tables (default: the largest)")
    report.set_defaults(handler=_run_report)


def _run_report(args: argparse.Namespace) -> None:
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    for path in write_report(args.run_dir, args.out, formats, args.steps):
        print(path)
    unfinished = RunFolder(args.run_dir).unfinished()
    if unfinished:
        print(f"not in the report, unfinished: {', '.join(unfinished)}", file=sys.stderr)


def _add_sample(commands: argparse._SubParsersAction) -> None:
    sample = commands.add_parser(
        "sample", help="draw skulls from a fitted method as NIfTI, NRRD or STL files (mm)")
    sample.add_argument("checkpoint", type=Path,
                        help="a cell's method.pt (RUN/cells/METHOD-sSEED-HASH/method.pt) or folder")
    sample.add_argument("-n", type=int, required=True, help="number of skulls")
    sample.add_argument("--steps", type=int, required=True, help="sampling step budget")
    sample.add_argument("--out", type=Path, required=True, help="output folder")
    sample.add_argument("--format", required=True, dest="file_format",
                        choices=["nifti", "nrrd", "stl"])
    sample.add_argument("--seed", type=int, default=0, help="sampling seed")
    sample.add_argument("--device", default="cpu", help="cpu or cuda")
    sample.add_argument("--overwrite", action="store_true",
                        help="replace sample files already in --out")
    sample.set_defaults(handler=_run_sample)


def _run_sample(args: argparse.Namespace) -> None:
    written = sample_to_files(args.checkpoint, args.n, args.steps, args.out, args.file_format,
                              seed=args.seed, device=args.device, overwrite=args.overwrite)
    print(f"wrote {len(written) - 1} {args.file_format} file(s) and {written[-1]}")


def _add_check(commands: argparse._SubParsersAction) -> None:
    check = commands.add_parser("check", help="CI gate: run the ci preset, compare with baseline")
    check.add_argument("--baseline", type=Path, default=Path("leaderboards/ci-baseline.json"))
    check.add_argument("--out", type=Path, default=Path("runs/ci-check"))
    check.add_argument("--update-baseline", action="store_true",
                       help="write the baseline from this run instead of comparing")
    check.add_argument("--set", action="append", default=[], dest="overrides",
                       metavar="KEY=VALUE", help="override a ci preset value")
    check.set_defaults(handler=_run_check)


def _run_check(args: argparse.Namespace) -> None:
    for line in run_gate(args.baseline, args.out, args.overrides, args.update_baseline):
        print(line)


def _add_audit(commands: argparse._SubParsersAction) -> None:
    audit = commands.add_parser(
        "audit", help="score every metric on the oracle under corruptions of known severity")
    audit.add_argument("--config", default="ci",
                       help="preset (ci, quick, paper64) or YAML file; default ci")
    audit.add_argument("--seeds", type=int, default=3, help="seeds per corruption and severity")
    audit.add_argument("--out", type=Path, default=None, help="default runs/audit-PRESET")
    audit.add_argument("--jobs", type=int, default=None, help="sets scored at once")
    audit.add_argument("--set", action="append", default=[], dest="overrides",
                       metavar="KEY=VALUE", help="override a config value")
    audit.add_argument("--quiet", action="store_true", help="no line per scored set")
    audit.set_defaults(handler=_run_audit)


def _run_audit(args: argparse.Namespace) -> None:
    overrides = list(args.overrides) + ([f"jobs={args.jobs}"] if args.jobs else [])
    config = load_config(args.config, overrides)
    out = args.out or Path("runs") / f"audit-{Path(args.config).stem}"
    rows = run_audit(config, out, args.seeds, quiet=args.quiet)
    print(f"scored {rows.groupby(['corruption', 'severity', 'seed']).ngroups} sets; "
          f"{out / 'sensitivity.md'}, {out / 'index.html'}")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        for module in args.plugin:
            load_plugin(module)
        args.handler(args)
    except BenchError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
