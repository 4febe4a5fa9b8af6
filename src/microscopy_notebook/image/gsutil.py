"""The image's gsutil: the PyPI release pinned with hashes in image/gsutil.txt.

Google stops shipping gsutil with the Google Cloud CLI after March 2027, so the image installs
this lock into a venv of its own (image/Dockerfile) behind image/gsutil.py, and ``nox -s tests``
and ``nox -s docs`` run the same lock the same way, so every gsutil command of the book is run by
the release readers get. Move to another release on purpose::

    python -m microscopy_notebook.image lock-gsutil 5.38
"""

from __future__ import annotations

import re
import subprocess

from microscopy_notebook.paths import IMAGE

LOCK = IMAGE / "gsutil.txt"
WRAPPER = IMAGE / "gsutil.py"
HEADER = """\
# gsutil for the image, from PyPI: every package pinned, with the hashes pip checks
# (--require-hashes), for Python 3.11 (the tests) to 3.13 (the image). gsutil pins google-auth and
# httplib2 releases that the conda environment cannot share, hence a list and a venv of its own.
# Made by `python -m microscopy_notebook.image lock-gsutil {version}`; do not edit by hand.
"""
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.M)


def pins(text: str | None = None) -> dict[str, str]:
    """Every pinned package of the lock, by its lower-case name."""
    text = LOCK.read_text() if text is None else text
    return {name.lower(): version for name, version in PIN.findall(text)}


def version() -> str:
    """The gsutil release the image has."""
    return pins()["gsutil"]


def lock(release: str) -> str:
    """The lock file's text for gsutil ``release``, resolved from PyPI by uv."""
    resolved = subprocess.run(
        [
            "uv",
            "pip",
            "compile",
            "-",
            "--universal",
            "--python-version",
            "3.11",
            "--generate-hashes",
            "--no-header",
            "--quiet",
        ],
        input=f"gsutil=={release}\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return HEADER.format(version=release) + resolved


def problems(version_output: str, release: str) -> list[str]:
    """What is wrong with the image's gsutil, from its ``gsutil version -l``."""
    found = []
    if f"gsutil version: {release}\n" not in version_output + "\n":
        found.append(f"gsutil is not the pinned {release}")
    if "using cloud sdk: False" not in version_output:
        found.append("gsutil is the Google Cloud CLI's, not the pinned one")
    if "compiled crcmod: True" not in version_output:
        found.append("gsutil's crcmod has no C extension: composite objects will not download")
    return found
