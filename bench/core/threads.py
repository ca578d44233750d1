"""The thread budget: a fixed number of threads for a block of work.

Results depend on how many threads matrix products, convolutions and
reductions use (floating-point sums in another order), so everything that
must give the same numbers on every machine runs with a configured thread
count rather than the machine's core count.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from threadpoolctl import threadpool_limits


@contextlib.contextmanager
def thread_budget(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` torch, BLAS and OpenMP threads, restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(previous)
