"""Fixtures shared by every test folder.

It sits at the repository root, not in tests/: a conftest.py in tests/ would put that
folder on sys.path, where tests/bench, tests/methods, ... would shadow the packages of the
same names as namespace packages under an editable install.
"""

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread for the test, restored after it.

    Tiny networks gain nothing from threads, benchmarks need the same count
    every run, and on a busy machine spinning OpenMP workers made small
    steps many times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
