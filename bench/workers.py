"""The thread budget of a cell, and cells of one run in parallel worker processes.

A cell's numbers depend on how many threads its matrix products and
reductions use (floating-point sums in another order), so a run fixes the
number (``threads`` of the run configuration) instead of taking the machine's
core count: the same configuration gives the same numbers whatever the core
count (on the same CPU kind and library versions), and whether cells run one
at a time or ``jobs`` at once.

Parallel cells run in processes forked from the one that prepared the run, so
they share its dataset, representation and reference set without copying or
pickling them (and see methods registered by ``--plugin``). GNU OpenMP, which
torch's CPU build uses, cannot start threads in a forked child of a process
that has used them (the child hangs), so forked cells run with one thread.
On Linux a worker dies with its parent (``PR_SET_PDEATHSIG``): a run killed
mid-way leaves no orphan still training a cell that the rerun resumes.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Generator, Iterable, TypeVar

import torch
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from bench.core.errors import BenchError
from bench.core.threads import thread_budget

__all__ = ["run_in_workers", "thread_budget"]

T = TypeVar("T")
R = TypeVar("R")

_PR_SET_PDEATHSIG = 1
_worker_task: Callable | None = None
_parent_pid = 0


def run_in_workers(task: Callable[[T], R], items: Iterable[T],
                   jobs: int) -> Generator[R, None, None]:
    """``task(item)`` for every item in ``jobs`` forked one-thread processes, yielded as
    each finishes (not in order).

    ``task`` is not pickled: the workers inherit it, and everything it refers
    to, from this process. A worker that dies (killed, out of memory) ends the
    run with a :class:`BenchError`; what finished before is kept.
    """
    global _worker_task, _parent_pid
    _worker_task, _parent_pid = task, os.getpid()
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"),
                               initializer=_start_worker)
    try:
        for future in as_completed([pool.submit(_run_task, item) for item in items]):
            yield future.result()
    except BrokenProcessPool as error:
        _stop(pool)
        raise BenchError(f"a worker process died (killed, or out of memory) with jobs={jobs}; "
                         f"rerun the same command to continue where it stopped (finished "
                         f"cells are kept), with fewer jobs if memory ran out") from error
    except BaseException:
        _stop(pool)  # Ctrl-C, or an error here: no worker may go on to the queued items
        raise
    else:
        pool.shutdown()
    finally:
        _worker_task = None


def _stop(pool: ProcessPoolExecutor) -> None:
    """Kill the pool's workers at once; ``shutdown`` alone lets them finish the items
    already handed to them. Python 3.11 has no public way to reach the processes."""
    for process in list(pool._processes.values()):
        process.kill()
    pool.shutdown(wait=True, cancel_futures=True)


def _start_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _die_with_parent()
    torch.set_num_threads(1)
    threadpool_limits(limits=1)
    # tqdm's lock holds a semaphore shared across fork; a worker killed while holding
    # it would hang the parent's progress bar. Workers draw no bars: a private lock.
    tqdm.set_lock(threading.RLock())


def _run_task(item):
    if _worker_task is None:
        raise BenchError("a worker process runs a task outside run_in_workers")
    return _worker_task(item)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies; elsewhere do nothing."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != _parent_pid:  # the parent died before the request was made
        os._exit(1)
