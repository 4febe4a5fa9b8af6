"""Shared fixtures: the real storage emulator and the sample files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from microscopy_notebook.cloud import samples
from microscopy_notebook.cloud.emulator import Emulator
from microscopy_notebook.paths import ROOT


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


def _venv_python(variable: str, folder: str | None, what: str) -> str:
    python = os.environ.get(variable) or (
        str(ROOT / ".nox" / folder / "bin" / "python") if folder else ""
    )
    if not Path(python).exists():
        pytest.fail(f"no venv {what}: `nox -s tests` makes it and sets {variable}")
    return python


@pytest.fixture(scope="session")
def batch_python() -> str:
    """The python of the venv with the Google Batch executor plugin (google-cloud-storage<3)."""
    return _venv_python("MNB_BATCH_PYTHON", "batch-plugin", "with the Google Batch plugin")


@pytest.fixture(scope="session")
def task_python() -> str:
    """The python the Batch stand-in runs tasks with as the image's user (the `batch-task` venv)."""
    return _venv_python("MNB_BATCH_TASK_PYTHON", None, "for Batch tasks")  # outside the checkout
