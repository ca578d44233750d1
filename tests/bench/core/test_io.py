"""Atomic writes: all or nothing, with ordinary file permissions."""

import os
import stat

import pytest

from bench.core.io import atomic_path, write_json_atomic


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "result.json"
    write_json_atomic(target, {"old": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text().strip().startswith("{")
    assert "old" in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_written_file_gets_umask_permissions_not_0600(tmp_path):
    old_mask = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "a.json", [1, 2])
    finally:
        os.umask(old_mask)
    mode = stat.S_IMODE((tmp_path / "a.json").stat().st_mode)
    assert mode == 0o644
