"""Helpers for the thumbnail job's tests (the test_*.py files beside this one): run Snakemake as
users do, snapshot objects, and check that no source object is ever changed by a run."""

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
) -> subprocess.CompletedProcess:
    """Snakemake on the thumbnail job, as users run it (``env``: default, this process's)."""
    run = subprocess.run(
        command(*args, python=python),
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


REPORT_FILES = re.compile(r"^(report\.json|report\.csv|report/batches/[0-9a-f]{16}\.json)$")


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
