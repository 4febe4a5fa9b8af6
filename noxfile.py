"""The one entry point: the README and CI call nothing but ``nox -s <session>``."""

from __future__ import annotations

import os
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHON = "3.11"
BOOK_HTML = ROOT / "book" / "_build" / "html"

nox.needs_version = ">=2025.2.9"  # dependency_groups() and include-group support
nox.options.default_venv_backend = "uv|virtualenv"  # uv when installed: installs in seconds
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]


def _install(session: nox.Session, *groups: str) -> None:
    for group in groups:
        session.install(*nox.project.dependency_groups(PYPROJECT, group))
    session.env["PYTHONPATH"] = str(ROOT / "src")  # the mnb helpers, without packaging them


def build_book(session: nox.Session, *args: str) -> None:
    """Build the book with the storage emulator up and the samples seeded; every notebook runs."""
    session.run(
        "python", "-m", "mnb.emulator", "--seed", "--",
        "jupyter-book", "build", str(ROOT / "book"),
        "--warningiserror",  # a warning is an error: a broken reference never ships
        "--nitpick",  # every cross-reference must resolve
        "--keep-going",  # report all warnings of a build at once, then fail
        *args,
    )
    session.log(f"the site is at {BOOK_HTML / 'index.html'}")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the site into book/_build/html, executing every notebook."""
    _install(session, "book")
    build_book(session, *session.posargs)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the whole test suite: book, workflow, image spec and the built site."""
    _install(session, "test")
    session.run("pytest", *session.posargs, env={"MNB_BATCH_PYTHON": _batch_python(session)})


def _batch_python(session: nox.Session) -> str:
    """A venv of its own for the Google Batch executor plugin (it needs google-cloud-storage<3)."""
    venv = ROOT / ".nox" / "batch-plugin"
    python = venv / "bin" / "python"
    if not python.exists():
        session.run("python", "-m", "venv", str(venv), external=True)
    session.run(str(python), "-m", "pip", "install", "--quiet",
                *nox.project.dependency_groups(PYPROJECT, "batch"), external=True)
    return str(python)


if os.environ.get("CI"):
    nox.options.error_on_missing_interpreters = True  # CI must not silently skip a session
