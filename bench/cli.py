"""The ``bench`` command line.

    bench data preview [--dataset synthskull] [--n 16] [--out DIR]
    bench data import PATH --format nrrd|nifti|stl|ply|obj|npy --resolution R --name NAME

User mistakes raise :class:`bench.errors.BenchError`; ``main`` prints its
message without a traceback and returns exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.errors import BenchError


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one sub-parser per command."""
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="generate, import and look at skull datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    _add_preview(data_commands)
    _add_import(data_commands)
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
    from bench.data.preview import write_previews
    from bench.data.sources import load_dataset

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
    from bench.data.importing import import_folder

    result = import_folder(
        args.path, file_format=args.file_format, resolution=args.resolution, name=args.name,
        on_error=args.on_error, threshold_hu=args.threshold_hu,
        min_component_fraction=args.min_component_fraction, align=args.align,
        landmarks_file=args.landmarks, labels_file=args.labels, split_seed=args.split_seed,
        overwrite=args.overwrite)
    print(result.summary())


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except BenchError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
