"""Thread budgets and parallel cells in forked worker processes."""

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from bench.core.errors import BenchError
from bench.workers import run_in_workers, thread_budget


def test_thread_budget_sets_and_restores_torch_threads():
    before = torch.get_num_threads()
    with thread_budget(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_workers_inherit_the_task_and_run_with_one_thread():
    offset = 1000  # a closure over a local: no pickle could carry this lambda
    results = list(run_in_workers(lambda item: (item + offset, torch.get_num_threads(),
                                                os.getpid()), range(6), jobs=2))
    assert sorted(r[0] for r in results) == [1000 + i for i in range(6)]
    assert {r[1] for r in results} == {1}
    assert os.getpid() not in {r[2] for r in results}


def test_closing_the_results_early_stops_the_workers():
    def task(item):
        if item > 0:
            time.sleep(120)
        return os.getpid(), item

    results = run_in_workers(task, range(4), jobs=2)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="consumer failed"):
        with contextlib.closing(results):
            next(results)
            raise RuntimeError("consumer failed")  # e.g. a broken pipe while printing
    assert time.monotonic() - start < 30  # not the 120 s of the sleeping items


def test_the_distance_engine_of_a_cell_uses_its_thread_budget(monkeypatch):
    import metrics.inputs as inputs

    seen = []

    def spy(*args, workers=None, **kwargs):
        seen.append(workers)
        raise RuntimeError("stop after the distance engine")

    monkeypatch.setattr(inputs, "compute_distance_matrices", spy)
    volumes = np.zeros((2, 16, 16, 16), dtype=bool)
    volumes[:, 4:12, 4:12, 4:12] = True
    reference = inputs.ReferenceSet(volumes, volumes, 16.0, points_per_shape=8, threads=1)
    with pytest.raises(RuntimeError, match="stop after"):
        inputs.GeneratedSet(reference, volumes, seed=0).chamfer
    assert seen == [1]  # one worker, not every core: no EMD pool inside a cell's process


def test_a_worker_that_dies_is_a_clear_error():
    with pytest.raises(BenchError, match="worker process died.*rerun the same command"):
        list(run_in_workers(lambda item: os._exit(3), [0], jobs=2))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_their_parent(tmp_path):
    pids = tmp_path / "pids"
    script = textwrap.dedent(f"""
        import os, time
        from bench.workers import run_in_workers

        def task(item):
            with open({str(pids)!r}, "a") as handle:
                handle.write(f"{{os.getpid()}}\\n")
            time.sleep(120)

        list(run_in_workers(task, range(2), jobs=2))
    """)
    parent = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    while not (pids.is_file() and len(pids.read_text().split()) == 2):
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.05)
    workers = [int(pid) for pid in pids.read_text().split()]
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived its killed parent"
        time.sleep(0.05)


def test_ctrl_c_stops_the_workers_and_the_queued_items(tmp_path):
    pids, started = tmp_path / "pids", tmp_path / "started"
    script = textwrap.dedent(f"""
        import os, time
        from bench.workers import run_in_workers

        def task(item):
            with open({str(pids)!r}, "a") as handle:
                handle.write(f"{{os.getpid()}}\\n")
            with open({str(started)!r}, "a") as handle:
                handle.write(f"{{item}}\\n")
            time.sleep(120)

        list(run_in_workers(task, range(6), jobs=2))
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (started.is_file() and len(started.read_text().split()) == 2):
        assert time.monotonic() < deadline and parent.poll() is None, parent.stderr.read()
        time.sleep(0.05)
    parent.send_signal(signal.SIGINT)
    assert parent.wait(timeout=20) != 0
    assert "KeyboardInterrupt" in parent.stderr.read().decode()
    assert not any(_alive(int(pid)) for pid in pids.read_text().split())
    assert len(started.read_text().split()) == 2  # no queued item started after Ctrl-C


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
