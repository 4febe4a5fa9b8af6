"""Shared fixtures: the real storage emulator and the sample files."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from microscopy_notebook.cloud import samples
from microscopy_notebook.cloud.emulator import Emulator

# Files of long, independent tests that share no costly module fixture: under `--dist=loadfile`
# their tests go one by one to whichever worker is free, so that no worker is left alone with a
# file of minutes. Every other file's tests stay together on one worker and share its fixtures
# (a browser, a JupyterLab).
SPREAD = {
    "test_batch_runs.py",
    "test_bench.py",
    "test_browser.py",
    "test_build.py",
    "test_commands.py",
    "test_faults.py",
    "test_leaves_alone.py",
    "test_messages.py",
    "test_misuse.py",
    "test_robustness.py",
    "test_roles.py",
    "test_runs.py",
    "test_storage_faults.py",
}


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`--dist=loadfile`, less the files in `SPREAD`."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class Scheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return nodeid if path.rsplit("/", 1)[-1] in SPREAD else path

    return Scheduling(config, log)


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    """One fake-gcs-server with its http/https front for the session; stopped at the end."""
    with Emulator() as emu:
        yield emu


@pytest.fixture
def storage_env(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process (and its children) pointed at the emulator; faults cleared before and after."""
    emulator.faults.clear()
    for key, value in emulator.env.items():
        monkeypatch.setenv(key, value)
    yield dict(os.environ)
    emulator.faults.clear()


@pytest.fixture
def gcs(storage_env: dict[str, str]):
    """A google-cloud-storage client talking to the emulator."""
    from google.cloud import storage

    return storage.Client()


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The real sample files, by object name under MockDataFiles/."""
    return samples.files()


@pytest.fixture(scope="session")
def batch_python() -> str:
    """The python that runs Snakemake with the Google Batch executor plugin: this one, since the
    image's list (the plugin and google-cloud-storage 2.x with it) is what nox installs here;
    MNB_BATCH_PYTHON names another."""
    python = os.environ.get("MNB_BATCH_PYTHON") or sys.executable
    if not Path(python).exists():
        pytest.fail(f"MNB_BATCH_PYTHON={python}: no such file")
    return python


@pytest.fixture(scope="session")
def task_python() -> str:
    """The python the Batch stand-in runs tasks with as the image's user: a venv of the image's
    lines for what a task runs (`job_env.TASK_PACKAGES`), outside the checkout, from a Python uid
    1000 can run (`nox -s tests` makes it and sets MNB_BATCH_TASK_PYTHON)."""
    python = os.environ.get("MNB_BATCH_TASK_PYTHON", "")
    if not python or not Path(python).exists():
        pytest.fail("no venv for Batch tasks: `nox -s tests` makes one, MNB_BATCH_TASK_PYTHON")
    return python
