"""Helpers for the thumbnail job's tests (the test_*.py files beside this one): run Snakemake as
users do, snapshot objects, check that no source object is ever changed by a run and that the
report says each file once, in agreement with its summary."""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

from microscopy_notebook.paths import ROOT

WORKFLOW = ROOT / "workflow"
SNAKEFILE = WORKFLOW / "Snakefile"
LOCAL = WORKFLOW / "profiles" / "local"
GOOGLEBATCH = WORKFLOW / "profiles" / "googlebatch"
SUMMARY = "thumbnail job:"


def command(*args: str, python: str = sys.executable, snakefile: Path = SNAKEFILE) -> list[str]:
    return [python, "-m", "snakemake", "-s", str(snakefile), *args]


def snakemake(
    cwd: Path,
    *args: str,
    env: dict | None = None,
    python: str = sys.executable,
    timeout: float = 600,
    snakefile: Path = SNAKEFILE,
) -> subprocess.CompletedProcess:
    """Snakemake on the thumbnail job, as users run it (``env``: default, this process's)."""
    run = subprocess.run(
        command(*args, python=python, snakefile=snakefile),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    print(run.stdout, run.stderr, sep="\n")  # shown by pytest when a test fails
    return run


def summary(stderr: str) -> str:
    """The job's closing line ("thumbnail job: all N done" or "... done with N failures")."""
    lines = [line for line in stderr.splitlines() if line.startswith(SUMMARY)]
    return lines[-1] if lines else ""


def new_bucket(gcs, stem: str = "job") -> str:
    name = f"{stem}-{uuid.uuid4().hex[:12]}"
    gcs.create_bucket(name)
    return name


def objects(gcs, bucket: str, prefix: str = "") -> dict[str, tuple[int, str, str]]:
    """Every object under a prefix: (generation, md5, crc32c). A rewrite, even of the same bytes,
    changes the generation; a changed byte changes both checksums."""
    return {
        b.name: (b.generation, b.md5_hash, b.crc32c) for b in gcs.list_blobs(bucket, prefix=prefix)
    }


@contextmanager
def sources_unchanged(gcs, bucket: str, prefix: str) -> Iterator[dict]:
    """Around a job run: every input object has the same generation and checksums afterwards, and
    no object was added under the input or removed from it."""
    before = objects(gcs, bucket, prefix)
    assert before, f"nothing under gs://{bucket}/{prefix}: the test seeded the wrong place"
    yield before
    assert objects(gcs, bucket, prefix) == before


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def png_size(data: bytes) -> tuple[int, int]:
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    img.load()  # decodes every row: a cut-off PNG fails here
    return img.size


# The report; and the piece of an append to it that a run killed in its report step leaves (the
# next run's report step removes it).
REPORT_FILES = re.compile(
    r"^(report\.json|report\.csv|report/batches/[0-9a-f]{16}\.json|report/parts/[0-9a-f]{32})$"
)


def check_previews(gcs, bucket: str, prefix: str) -> dict[str, bytes]:
    """Every object under the output prefix: previews are whole 500x500 PNGs whose bytes match
    the md5 the storage recorded; besides them only the report (its summary, its CSV, the
    batches' records). Returns preview name -> bytes."""
    found: dict[str, bytes] = {}
    for blob in gcs.list_blobs(bucket, prefix=prefix):
        rel = blob.name[len(prefix) :]
        if REPORT_FILES.match(rel):
            continue
        assert rel.endswith(".png"), f"a stray object in the output: {blob.name}"
        data = blob.download_as_bytes()
        assert len(data) == blob.size and md5_b64(data) == blob.md5_hash, blob.name
        assert png_size(data) == (500, 500), blob.name
        found[rel] = data
    return found


def report_of(gcs, bucket: str, prefix: str) -> tuple[dict, dict[str, dict]]:
    """The summary (report.json) and the row that counts for each file: report.csv's last row of
    it (a file previewed again gets a later row), its values typed back as the job wrote them."""
    summary = json.loads(gcs.bucket(bucket).blob(f"{prefix}report.json").download_as_bytes())
    text = gcs.bucket(bucket).blob(f"{prefix}report.csv").download_as_text()
    rows: dict[str, dict] = {}
    for r in csv.DictReader(io.StringIO(text)):
        rows[r["name"]] = {
            **r,
            "ok": r["ok"] == "True",
            "signals": int(r["signals"]),
            "error": r["error"] or None,
        }
    return summary, rows


class Background:
    """A command (by default Snakemake with ``args``) started in its own process group, output to
    files (a pipe nobody reads would stall it); `kill_group` kills all it started."""

    def __init__(self, cwd: Path, *args: str, env: dict, argv: list[str] | None = None) -> None:
        cwd.mkdir(parents=True, exist_ok=True)
        self.out, self.err = cwd / "background.out", cwd / "background.err"
        self.started = time.monotonic()
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                argv or command(*args),
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    def output(self) -> str:
        text = self.out.read_text() + self.err.read_text()
        print(text)  # shown by pytest when a test fails
        return text

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def wait_all(jobs: dict[str, Background], timeout: float = 300) -> dict[str, float]:
    """Wait for every job; returns when each one ended (time.monotonic())."""
    ended: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(ended) < len(jobs) and time.monotonic() < deadline:
            for name, job in jobs.items():
                if name not in ended and job.proc.poll() is not None:
                    ended[name] = time.monotonic()
            time.sleep(0.05)
    finally:
        for job in jobs.values():
            job.kill_group()  # nothing is left running, whatever happened
    assert len(ended) == len(jobs), f"still running after {timeout} s: {set(jobs) - set(ended)}"
    return ended


def write_4d_emd(path: Path, data) -> None:
    """A 4D-STEM scan (ny, nx, q, q) as NCEM EMD, written with rosettasciio, with calibrated
    real-space (nm) and diffraction (1/nm) axes."""
    from rsciio.emd import file_writer

    ny, nx, qy, qx = data.shape
    axes = [
        dict(name="y", size=ny, scale=0.5, offset=0.0, units="nm", navigate=True),
        dict(name="x", size=nx, scale=0.5, offset=0.0, units="nm", navigate=True),
        dict(name="ky", size=qy, scale=0.05, offset=0.0, units="1/nm", navigate=False),
        dict(name="kx", size=qx, scale=0.05, offset=0.0, units="1/nm", navigate=False),
    ]
    file_writer(
        str(path),
        {
            "data": data,
            "axes": axes,
            "original_metadata": {},
            "metadata": {"General": {"title": "4D-STEM scan"}, "Signal": {}},
        },
    )


def seed_copies(gcs, bucket: str, copies: int) -> list[str]:
    """The samples ``copies`` times under raw/c<i>/; returns the previewable names (relative)."""
    from microscopy_notebook.cloud import samples

    for i in range(copies):
        samples.seed(bucket, f"raw/c{i}/", gcs)
    good = [s.name for s in samples.SAMPLES if not s.name.endswith(".emi")]
    return sorted(f"c{i}/{name}" for i in range(copies) for name in good)


def wait_until(check, job: Background, what: str, timeout: float = 300) -> None:
    """Wait for ``check()`` to hold while ``job`` runs (a state, never a duration: the timeout
    only ends a test that would otherwise hang)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert job.proc.poll() is None, f"the run ended before {what}:\n{job.output()}"
        assert time.monotonic() < deadline, f"no {what} in {timeout} s"
        time.sleep(0.05)


def alive_in_group(pgid: int, timeout: float = 10) -> list[int]:
    """Processes of a process group that are still running (not zombies) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append(int(stat.parent.name))
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def exact_report(summary: dict, csv_text: str, once: bool = True) -> dict[str, dict]:
    """The report's rows by file, after checking that ``report.csv`` and its summary
    ``report.json`` agree: the summary counts the CSV's rows and each file's last row (files, ok,
    failed, kept), and (``once``) no file has more than one row. Returns each file's last row."""
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    names = [r["name"] for r in rows]
    if once:
        duplicated = sorted({n for n in names if names.count(n) > 1})
        assert not duplicated, f"{len(rows)} rows for {len(set(names))} files: {duplicated[:5]}"
    last = {r["name"]: r for r in rows}
    failed = sum(1 for r in last.values() if r["ok"] != "True")
    assert summary["summary"] == {"files": len(last), "ok": len(last) - failed, "failed": failed}
    assert summary["csv_rows"] == len(rows)
    assert summary["kept"] == sorted(n for n, r in last.items() if "was kept" in r["shown"])
    return last


def bucket_report(gcs, bucket: str, prefix: str, once: bool = True) -> tuple[dict, dict]:
    """`exact_report` of a report in a bucket: (summary, each file's last row)."""
    summary = json.loads(gcs.bucket(bucket).blob(f"{prefix}report.json").download_as_bytes())
    text = gcs.bucket(bucket).blob(f"{prefix}report.csv").download_as_text()
    return summary, exact_report(summary, text, once)


def folder_report(folder: Path, once: bool = True) -> tuple[dict, dict]:
    """`exact_report` of a report in a local folder: (summary, each file's last row)."""
    summary = json.loads((folder / "report.json").read_text())
    return summary, exact_report(summary, (folder / "report.csv").read_text(), once)


class MemoryLimit:
    """A child memory cgroup of this process's own (cgroup v1's memory controller, or v2), with
    a hard limit and no swap: a process moved into it that allocates more than ``limit`` bytes
    is ended by the kernel's OOM killer, as in a Batch task's container. `available` says
    whether this machine lets the tests make one."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.path: Path | None = None

    @staticmethod
    def _parent() -> tuple[Path, int] | None:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, where = line.split(":", 2)
            if "memory" in controllers.split(","):
                return Path("/sys/fs/cgroup/memory") / where.lstrip("/"), 1
            if controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
                return Path("/sys/fs/cgroup") / where.lstrip("/"), 2
        return None

    @classmethod
    def available(cls) -> bool:
        found = cls._parent()
        return found is not None and os.access(found[0], os.W_OK)

    def __enter__(self) -> MemoryLimit:
        parent, version = self._parent()
        self.version = version
        self.path = parent / f"mnb-test-{uuid.uuid4().hex[:8]}"
        self.path.mkdir()
        if version == 1:
            (self.path / "memory.limit_in_bytes").write_text(str(self.limit))
        else:
            (self.path / "memory.max").write_text(str(self.limit))
            with contextlib.suppress(OSError):
                (self.path / "memory.swap.max").write_text("0")
        return self

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def oom_kills(self) -> int:
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        for line in (self.path / name).read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def __exit__(self, *exc: object) -> None:
        deadline = time.monotonic() + 30
        while (self.path / "cgroup.procs").read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.path.rmdir()


def processes_running(fragment: str) -> list[int]:
    """The processes whose command line holds ``fragment``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if fragment in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                found.append(int(cmdline.parent.name))
    return found
