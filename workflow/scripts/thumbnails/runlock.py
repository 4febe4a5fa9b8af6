"""No lock left by a dead run of the thumbnail job ever blocks the next one.

Snakemake locks the files of a run in its working folder (``.snakemake/locks``), and a killed
Snakemake never removes those locks: the next run refuses with "Directory cannot be locked" until
someone runs ``--unlock``, which a cron line never does. So the job's main process holds a shared
advisory lock (``flock``) on ``<work>/run.lock`` for as long as it lives, which the kernel drops
the moment the process dies, however it dies, and it notes which files it works on in
``<work>/alive/<pid>.json``. A run starting in the same folder then knows which runs are alive (the
holders of that lock, from ``/proc/locks``) and what they work on: the job's Snakemake locks no
live run's files are in are a dead run's, and are removed; a live run working on the same files
stops this one with a message naming it (runs on other files, e.g. another output or work prefix,
go on side by side, as Snakemake allows). Standard library only: the Snakefile imports this while
it is read.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

_HELD: list[int] = []  # open descriptors of the locks this process holds, until it exits


class Busy(RuntimeError):
    """A live run of the job in this working folder works on the same files."""


def join(work: Path) -> None:
    """Count this process as a live run of the job in the working folder ``work`` (until it
    exits): a shared lock on ``<work>/run.lock``. Taken before planning, so that a run still
    planning is never taken for a dead one."""
    work.mkdir(parents=True, exist_ok=True)
    fd = os.open(work / "run.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    fcntl.flock(fd, fcntl.LOCK_SH)
    _HELD.append(fd)


def _holders(path: Path) -> set[int]:
    """The processes holding an flock on ``path`` (waiters, marked ``->``, excluded)."""
    inode = path.stat().st_ino
    pids = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        held = len(fields) > 5 and "->" not in fields and fields[1] == "FLOCK"
        if held and int(fields[5].rsplit(":", 1)[1]) == inode:
            pids.add(int(fields[4]))
    return pids


def hold(work: Path, snakemake_dir: Path, mine: str, ids: Iterable[str]) -> list[Path]:
    """Note that this run (`join`-ed before) works on the files named by ``ids`` (its plan's and
    batches' ids), and remove the Snakemake locks in ``snakemake_dir`` that belong to the job
    (every path in them contains ``mine``, the job's work folder) but to no live run of it:
    another workflow's locks in the same folder are left alone. `Busy` when a live run's locks
    name one of ``ids``. Returns the lock files removed."""
    ids = set(ids)
    alive_dir = work / "alive"
    alive_dir.mkdir(parents=True, exist_ok=True)
    mark = alive_dir / f"{os.getpid()}.json"
    part = mark.with_suffix(".part")
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    part.write_text(json.dumps({"started": started, "ids": sorted(ids)}))
    part.replace(mark)
    live = _holders(work / "run.lock") - {os.getpid()}
    theirs: dict[str, str] = {}  # id -> the live run working on it
    for note in alive_dir.glob("*.json"):
        pid = int(note.stem)
        if pid == os.getpid():
            continue
        if pid not in live:
            note.unlink(missing_ok=True)  # a dead run's note
            continue
        try:
            seen = json.loads(note.read_text())
        except (OSError, ValueError):
            continue
        for i in seen.get("ids", []):
            theirs[i] = f"process {pid}, started {seen.get('started', '?')}"
    removed = []
    locks = snakemake_dir / "locks"
    for lock in sorted(locks.glob("*.lock")) if locks.is_dir() else []:
        try:
            paths = [line.strip() for line in lock.read_text().splitlines() if line.strip()]
        except OSError:
            continue
        if not paths or not all(mine in p for p in paths):
            continue  # another workflow's
        owners = {theirs[i] for i in theirs if any(i in p for p in paths)}
        if owners and any(i in p for p in paths for i in ids):
            raise Busy(
                f"Another run of the thumbnail job in this folder is working on the same files "
                f"({', '.join(sorted(owners))}). Wait for it to end; runs on other files, or "
                f"from another folder, may overlap, and each file is previewed and reported once."
            )
        # A live run notes its files before Snakemake locks them: a lock no note names is a
        # dead run's.
        if not owners:
            lock.unlink(missing_ok=True)
            removed.append(lock)
    return removed
