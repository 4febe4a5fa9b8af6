"""Helpers for running Snakemake through the Google Batch stand-in (batch_standin.py), shared by
the thumbnail job's Batch tests (test_googlebatch.py) and the rehearsal of the first job's Batch
command (tests/book/test_commands.py): the same stand-in set-up, the same checks of what a run
submitted and installed."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

STANDIN = Path(__file__).with_name("batch_standin.py")
SUBMITTER = "job-submitter"  # who the emulator's front records the submitting process as
# What a runnable must never do on a Batch VM: fetch an installer or install packages.
INSTALLS = re.compile(
    r"\b(wget|curl|miniconda|conda install|mamba install|apt-get|apt install|"
    r"yum|dnf|install-snek)\b",
    re.I,
)


@dataclass
class BatchRun:
    run: subprocess.CompletedProcess
    out: Path  # the stand-in's folder: jobs/*.json, installs.log, one folder per VM
    checkout: Path  # the folder Snakemake ran in
    bucket: str

    def jobs(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted((self.out / "jobs").glob("*.json"))]

    def installs(self) -> str:
        return (self.out / "installs.log").read_text()


def standin_folder() -> Path:
    """A fresh folder for the stand-in's records and VMs."""
    out = Path(tempfile.mkdtemp(prefix="batch-standin-"))
    out.chmod(0o755)  # the image's user reaches its VM folders inside
    return out


def standin_env(env: dict, out: Path, task_python: str, standin: dict | None = None) -> dict:
    """``env`` for a Snakemake run through the stand-in, which keeps its records in ``out`` and
    runs the tasks with ``task_python``."""
    env = {
        **env,
        "MNB_BATCH_STANDIN": str(out),
        "MNB_BATCH_TASK_PYTHON": task_python,
        **(standin or {}),
    }
    # The emulator checks no credentials: it tells the submitter's calls from the tasks' by this
    # prefix (the stand-in gives the tasks theirs).
    host = env["STORAGE_EMULATOR_HOST"].split("/as/")[0]
    env["STORAGE_EMULATOR_HOST"] = f"{host}/as/{SUBMITTER}"
    return env


def without_credentials(env: dict, folder: Path) -> dict:
    """Storage in the emulator, no Google credentials: the Batch and Logging clients are the
    stand-in's, and nothing else may need a sign-in."""
    return {
        **env,
        "GOOGLE_APPLICATION_CREDENTIALS": str(folder / "no-credentials.json"),
        "NO_GCE_CHECK": "True",
    }
