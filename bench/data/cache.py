"""Where generated and imported datasets are cached.

The root is ``$SKULLBENCH_CACHE`` if set, else ``~/.cache/skull-bench``. Each
dataset is a folder ``<root>/datasets/<name>/`` as written by
:meth:`bench.data.dataset.SkullDataset.save`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from bench.core.errors import BenchError

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def cache_root() -> Path:
    """The cache folder (not created here)."""
    return Path(os.environ.get("SKULLBENCH_CACHE", Path.home() / ".cache" / "skull-bench"))


def dataset_folder(name: str, root: Path | None = None) -> Path:
    """Folder of the cached dataset ``name``; the name must be a plain file name."""
    if not _NAME_PATTERN.match(name):
        raise BenchError(f"dataset name {name!r} is not allowed: use letters, digits, '.', '_' "
                         f"and '-', starting with a letter or digit")
    return (root or cache_root()) / "datasets" / name
