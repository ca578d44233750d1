"""Claims: one worker per cell, across processes, machines and shared filesystems.

A claim is a small JSON file created with ``O_CREAT | O_EXCL``, which NFS (v3
and later) and Lustre create atomically: of two claimants, exactly one creates
it. It records who holds it (job id, host, pid, start time); its modification
time is the heartbeat, refreshed by a thread of the holder while it works. A
claim is *stale* when its heartbeat is older than ``timeout_s`` (the holder's
machine died, or its job was killed), or at once when its host is this host
and its pid is no longer alive. A stale claim is taken over: renamed away
under a unique name (a rename is atomic, so two takers cannot both win), checked
to be the stale one, then claimed afresh.

Claims held by the same job id are the same claim: the ranks of one
multi-process job, and a job that SLURM requeued after a preemption (it keeps
its job id), take the cell over at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

# The default age after which an unrefreshed claim is stale; holders refresh it four
# times as often.
CLAIM_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Holder:
    """Who holds (or wants) a claim."""

    job_id: str
    host: str
    pid: int
    started: float  # seconds since the epoch
    token: str  # unique per claim: tells a taken-over claim from the one judged stale


@dataclass(frozen=True)
class ClaimState:
    """A claim file as read: its holder and the age of its heartbeat in seconds."""

    holder: Holder
    heartbeat_age_s: float

    def stale(self, timeout_s: float) -> bool:
        """True when the holder is gone: silent for ``timeout_s``, or dead on this host."""
        if self.heartbeat_age_s > timeout_s:
            return True
        return self.holder.host == socket.gethostname() and not pid_alive(self.holder.pid)


def new_holder(job_id: str) -> Holder:
    """This process as a holder, under ``job_id``."""
    return Holder(job_id=job_id, host=socket.gethostname(), pid=os.getpid(),
                  started=time.time(), token=uuid.uuid4().hex)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:  # no /proc (not Linux): kill(pid, 0) has answered
        return True


def read_claim(path: Path) -> ClaimState | None:
    """The claim at ``path``, or None when there is none (or it vanished while read).

    A claim that is unreadable (half-written by a claimant that died between
    create and write) counts as stale by its age, under an unknown holder.
    """
    try:
        age = time.time() - path.stat().st_mtime
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        holder = Holder(**json.loads(text))
    except (ValueError, TypeError):
        holder = Holder(job_id="?", host="?", pid=0, started=0.0, token="")
    return ClaimState(holder, age)


def try_claim(path: Path, holder: Holder, timeout_s: float = CLAIM_TIMEOUT_S
              ) -> ClaimState | None:
    """Claim ``path`` for ``holder``; returns None on success, else the live claim in the way.

    A claim of the same job id is taken over at once; a stale one after it is
    renamed away. Never blocks.
    """
    for _ in range(3):  # a claim may vanish or be taken over between the steps below
        if _create(path, holder):
            return None
        found = read_claim(path)
        if found is None:
            continue
        if found.holder.job_id != holder.job_id and not found.stale(timeout_s):
            return found
        if _take_over(path, found, holder):
            return None
    return read_claim(path) or ClaimState(holder, 0.0)


def _create(path: Path, holder: Holder) -> bool:
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w") as handle:
        json.dump(asdict(holder), handle)
    return True


def _take_over(path: Path, judged: ClaimState, holder: Holder) -> bool:
    """Rename the claim judged stale away, check it was that one, and claim afresh."""
    aside = path.with_name(f".{path.name}.{holder.token}.stale")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return _create(path, holder)
    taken = read_claim(aside)
    if taken is not None and taken.holder.token != judged.holder.token:
        # Another taker's fresh claim was renamed: give it back (link fails if a third
        # claimant got in since; then that one holds the cell).
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
        aside.unlink(missing_ok=True)
        return False
    aside.unlink(missing_ok=True)
    return _create(path, holder)


def release(path: Path, holder: Holder) -> None:
    """Remove the claim if ``holder`` still holds it."""
    found = read_claim(path)
    if found is not None and found.holder.token == holder.token:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def holding(path: Path, holder: Holder, timeout_s: float = CLAIM_TIMEOUT_S
            ) -> Iterator[ClaimState | None]:
    """Claim ``path`` for the block, with a heartbeat every quarter of ``timeout_s``.

    Yields None when the claim is held (then released after the block), or the
    live claim of another holder, in which case the caller must not do the work.
    """
    blocking = try_claim(path, holder, timeout_s)
    if blocking is not None:
        yield blocking
        return
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(path, stop, timeout_s / 4), daemon=True)
    beat.start()
    try:
        yield None
    finally:
        stop.set()
        beat.join()
        release(path, holder)


def _heartbeat(path: Path, stop: threading.Event, every_s: float) -> None:
    while not stop.wait(every_s):
        with contextlib.suppress(FileNotFoundError):
            os.utime(path)
