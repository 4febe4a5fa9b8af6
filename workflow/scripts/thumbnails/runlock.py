"""One run of the thumbnail job at a time in a working folder, and no lock left by a dead one.

Snakemake locks its working folder with files (``.snakemake/locks``) that a killed Snakemake
never removes; the next run then refuses with "Directory cannot be locked" until someone runs
``--unlock``, which a cron line never does. The job's main process therefore holds an advisory
lock (``flock``) on ``<work>/run.lock`` for as long as it lives: the kernel drops it the moment
the process dies, however it dies. A run that gets it knows that no run of the job is alive in
this folder, so the job's Snakemake locks there are a dead run's, and removes them; a run that
does not get it stops with a message naming the live run, before it touches anything.
Standard library only: the Snakefile imports this while it is read.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

_HELD: list[int] = []  # open descriptors of the locks this process holds, until it exits


class Busy(RuntimeError):
    """Another run of the job is alive in this working folder."""


def hold(work: Path, snakemake_dir: Path, mine: str) -> list[Path]:
    """Take the run lock of the working folder (kept until this process exits) and remove the
    Snakemake locks a dead run left there; returns the lock files removed. Only lock files all
    of whose paths contain ``mine`` (the job's work folder) are the job's: another workflow's in
    the same folder are left alone. `Busy` if a live run holds the lock."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / "run.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise Busy(
            f"Another run of the thumbnail job is still running in this folder ({holder}); "
            f"two runs in one working folder would share Snakemake's state there. Wait for it "
            f"to end, or start this one from another folder: runs from different folders may "
            f"overlap, and each file is still previewed and reported once."
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"process {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
    _HELD.append(fd)
    removed = []
    locks = snakemake_dir / "locks"
    for lock in sorted(locks.glob("*.lock")) if locks.is_dir() else []:
        try:
            paths = [line.strip() for line in lock.read_text().splitlines() if line.strip()]
        except OSError:
            continue
        if paths and all(mine in p for p in paths):
            lock.unlink(missing_ok=True)
            removed.append(lock)
    return removed
