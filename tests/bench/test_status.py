"""`bench status`: every state of a cell, read from the run folder's files alone."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from bench.cli import main
from bench.core.claims import new_holder, try_claim
from bench.core.io import write_json_atomic
from bench.status import format_status, run_status
from bench.store import RunFolder

CELLS = ["otfm-s0-aaaa", "otfm-s1-bbbb", "otfm-s2-cccc", "otfm-s3-dddd", "otfm-s4-eeee",
         "otfm-s5-ffff", "otfm-s6-gggg"]


def _dead_pid():
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)


@pytest.fixture
def run(tmp_path):
    """A run folder whose seven cells are in seven situations (see the test)."""
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    write_json_atomic(folder.path / "plan.json", {"cells": CELLS, "references": [], "curve": []})
    cells = [folder.path / "cells" / name for name in CELLS]
    for path in cells:
        path.mkdir(parents=True)
    now, host = time.time(), socket.gethostname()
    (cells[1] / "results.csv").write_text("run\n")
    write_json_atomic(cells[1] / "timings.json", {"fit": 60.0, "sample": 5.0})
    write_json_atomic(cells[2] / "failed.json", {"reason": "NonFiniteError: loss is NaN"})
    local = {"launcher": "submitit-local", "host": host, "submitted": now - 30}
    write_json_atomic(cells[3] / "job.json", {**local, "job_id": str(os.getpid())})
    write_json_atomic(cells[4] / "job.json", {**local, "job_id": str(os.getpid())})
    assert try_claim(cells[4] / "claim.json", new_holder(str(os.getpid()))) is None
    write_json_atomic(cells[5] / "job.json", {**local, "job_id": str(os.getpid())})
    write_json_atomic(cells[5] / "requeued.json", {"count": 2, "job_id": "1", "last": now})
    dead = str(_dead_pid())
    write_json_atomic(cells[6] / "job.json", {**local, "job_id": dead})
    logs = folder.path / "launch" / "jobs"
    logs.mkdir(parents=True)
    (logs / f"{dead}_0_log.err").write_text("Traceback\nMemoryError: out of memory\n")
    return folder.path


def test_each_state_of_a_cell(run):
    found = {status.folder: status for status in run_status(run)}
    states = {name: found[name].state for name in CELLS}
    assert states == {"otfm-s0-aaaa": "pending", "otfm-s1-bbbb": "done",
                      "otfm-s2-cccc": "failed", "otfm-s3-dddd": "queued",
                      "otfm-s4-eeee": "running", "otfm-s5-ffff": "requeued",
                      "otfm-s6-gggg": "failed"}
    assert found["otfm-s1-bbbb"].elapsed_s == 65.0
    assert found["otfm-s2-cccc"].detail == "NonFiniteError: loss is NaN"
    assert found["otfm-s3-dddd"].job_id == str(os.getpid())
    assert found["otfm-s3-dddd"].elapsed_s >= 30  # waiting since the submission
    assert f"{socket.gethostname()} pid {os.getpid()}" in found["otfm-s4-eeee"].detail
    assert found["otfm-s5-ffff"].detail == "requeued 2x"
    assert "ended without results" in found["otfm-s6-gggg"].detail
    assert "MemoryError: out of memory" in found["otfm-s6-gggg"].detail


def test_a_claim_left_by_a_dead_process_is_not_running(run):
    folder = run / "cells" / "otfm-s0-aaaa"
    holder = new_holder("local-1")
    (folder / "claim.json").write_text(json.dumps({**holder.__dict__, "pid": _dead_pid()}))
    assert run_status(run)[0].state == "pending"


def test_the_table_and_the_command(run, capsys):
    text = format_status(run_status(run))
    assert text.splitlines()[0].split() == ["cell", "state", "job", "elapsed", "detail"]
    assert "0:01:05" in text  # the done cell's 65 s
    assert text.splitlines()[-1] == "1 pending, 1 queued, 1 running, 1 requeued, 1 done, 2 failed"
    assert main(["status", str(run)]) == 0
    assert capsys.readouterr().out.strip() == text


def test_status_of_a_folder_without_a_plan_is_an_error(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    assert "plan.json: missing" in capsys.readouterr().err
