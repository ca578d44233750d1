"""Claim files: one holder per cell, stale claims taken over, same job id shared."""

import os
import subprocess
import sys
import threading
import time

from bench.core.claims import holding, new_holder, read_claim, try_claim


def test_of_two_claimants_one_holds_and_the_other_is_told_who(tmp_path):
    path = tmp_path / "claim.json"
    first, second = new_holder("job-1"), new_holder("job-2")
    with holding(path, first) as blocked:
        assert blocked is None
        assert read_claim(path).holder == first
        with holding(path, second) as other:
            assert other is not None and other.holder.job_id == "job-1"
        assert read_claim(path).holder == first  # the loser left the claim alone
    assert not path.exists()  # released after the block


def test_claimants_racing_in_threads_get_exactly_one_winner(tmp_path):
    path = tmp_path / "claim.json"
    holders = [new_holder(f"job-{i}") for i in range(8)]
    results = [None] * len(holders)
    start = threading.Barrier(len(holders))

    def claim(index):
        start.wait()
        results[index] = try_claim(path, holders[index])

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(holders))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [i for i, result in enumerate(results) if result is None]
    assert len(winners) == 1
    assert read_claim(path).holder == holders[winners[0]]


def test_a_claim_of_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path):
    path = tmp_path / "claim.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    gone = new_holder("job-dead")
    gone = type(gone)(**{**gone.__dict__, "pid": int(dead.stdout)})
    assert try_claim(path, gone) is None
    mine = new_holder("job-new")
    assert try_claim(path, mine) is None
    assert read_claim(path).holder == mine


def test_a_claim_with_an_old_heartbeat_is_stale_and_a_fresh_one_is_not(tmp_path):
    path = tmp_path / "claim.json"
    elsewhere = new_holder("job-remote")
    elsewhere = type(elsewhere)(**{**elsewhere.__dict__, "host": "another-node"})
    assert try_claim(path, elsewhere) is None
    assert try_claim(path, new_holder("job-2"), timeout_s=60) is not None
    old = time.time() - 120
    os.utime(path, (old, old))
    mine = new_holder("job-2")
    assert try_claim(path, mine, timeout_s=60) is None
    assert read_claim(path).holder == mine


def test_the_same_job_id_shares_the_claim_and_the_heartbeat_refreshes_it(tmp_path):
    path = tmp_path / "claim.json"
    rank0, rank1 = new_holder("job-7"), new_holder("job-7")
    with holding(path, rank0, timeout_s=0.2) as blocked:
        assert blocked is None
        old = time.time() - 100
        os.utime(path, (old, old))
        deadline = time.monotonic() + 5
        while read_claim(path).heartbeat_age_s > 50:
            assert time.monotonic() < deadline, "the heartbeat never refreshed the claim"
            time.sleep(0.02)
        assert try_claim(path, rank1, timeout_s=600) is None  # a requeue or another rank


def test_an_unreadable_claim_counts_by_its_age(tmp_path):
    path = tmp_path / "claim.json"
    path.write_text("{half")
    assert try_claim(path, new_holder("job-1"), timeout_s=60) is not None
    old = time.time() - 120
    os.utime(path, (old, old))
    assert try_claim(path, new_holder("job-1"), timeout_s=60) is None
