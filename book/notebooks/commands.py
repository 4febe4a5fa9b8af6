"""``run``: a command of a tutorial, run from the repository root as your terminal runs it.

The thumbnail tutorial runs its Snakemake command with ``run("snakemake ...")``. What it prints
shows in the notebook as it comes. It differs from typing the command in a terminal at the
repository root in two ways only: the repository's folder is written ``.`` in what the command
prints (Snakemake names its log by its full path), and a command that fails stops the notebook,
with its exit status, where a ``!`` line would let the next cell run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # this file is book/notebooks/commands.py


def run(command: str) -> None:
    """Run ``command`` in a shell at the repository root; raise if it fails."""
    # The programs of the notebook's own environment first, as in the image's terminal.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    with subprocess.Popen(
        command,
        shell=True,
        cwd=ROOT,
        env=dict(os.environ, PATH=path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        for line in process.stdout:
            print(line.replace(f"{ROOT}{os.sep}", "").replace(str(ROOT), "."), end="")
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command)
