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
nox.options.sessions = ["lint", "tests", "site"]
# Environments as users have them: a pip or mamba install compiles bytecode, uv does not by
# default, and these machines set PYTHONDONTWRITEBYTECODE, so without it every process would
# compile every import from source (Snakemake's start-up alone: 1.6 s instead of 0.7 s).
os.environ.setdefault("UV_COMPILE_BYTECODE", "1")


def _install(session: nox.Session, *groups: str) -> None:
    for group in groups:
        session.install(*nox.project.dependency_groups(PYPROJECT, group))
    # The project's own tooling (src/microscopy_notebook) and the job's library
    # (workflow/scripts/thumbnails), editable: an import, never a path edit.
    session.install("--no-deps", "-e", str(ROOT))


def build_book(session: nox.Session, *args: str) -> None:
    """Build the book with the storage emulator up and the samples seeded; every notebook runs."""
    _use_images_gsutil(session)
    _ensure_chromium(session)  # the build's screenshots of JupyterLab; the browser tests too
    session.run("python", "-m", "microscopy_notebook.book", *args)
    session.log(f"the site is at {BOOK_HTML / 'index.html'}")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the site into book/_build/html, executing every notebook."""
    _install(session, "book")
    build_book(session, *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Lint in seconds: ruff over the tree, snakemake --lint over the workflow, hadolint."""
    _install(session, "lint")
    session.run("ruff", "check", "--output-format", "concise", *session.posargs, str(ROOT))
    session.run("python", "-m", "microscopy_notebook.lint")  # snakemake --lint and hadolint


# `nox -s tests`: everything but the book, so one test costs seconds, not a site build.
# `nox -s site`: the book built as `nox -s docs` builds it, then the tests that read it or build
# books of their own (chapters' commands, the browser, JupyterLab, downloads, links, publishing).
SITE_TESTS = ["tests/book"]
TESTS = ["tests/workflow", "tests/cloud", "tests/image", "tests/bench", "tests/repo"]


def _pytest(session: nox.Session, default_paths: list[str]) -> None:
    """pytest on the session's folders, or on the files and node ids after ``--``."""
    named = [a for a in session.posargs if (ROOT / a.split("::", 1)[0]).exists()]
    session.run(
        "pytest",
        "--numprocesses=3",  # most tests wait on servers, retries and browsers, not CPU
        "--dist=loadfile",  # a file's tests share its fixtures (a browser, a JupyterLab)
        "--durations=12",  # the slowest tests, where the suite's 8-minute budget goes
        *session.posargs,
        *([] if named else default_paths),
        env={
            "MNB_BATCH_PYTHON": _batch_python(session),
            "MNB_BATCH_TASK_PYTHON": _task_python(session),
        },
    )


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Test the workflow, cloud, image spec, benchmarks and repository: no book, no browser."""
    _install(session, "test")
    _use_images_gsutil(session)  # the workflow and image tests run the image's gsutil
    session.log("no book build: the site's tests run in `nox -s site`")
    _pytest(session, TESTS)


@nox.session(python=PYTHON)
def site(session: nox.Session) -> None:
    """Build the book, then run the site, browser, JupyterLab, download, link and publish tests."""
    _install(session, "test")
    build_book(session)  # the site tests read what the docs session would publish
    _pytest(session, SITE_TESTS)


CHROMIUM = Path("/usr/bin/chromium")


def _ensure_chromium(session: nox.Session) -> None:
    """Debian's chromium, installed when missing: Playwright may not download a browser here."""
    if CHROMIUM.exists():
        return
    import shutil

    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        session.error(
            f"the browser tests need Debian's chromium at {CHROMIUM}: install it "
            "(sudo apt-get install chromium fonts-liberation), then run this again"
        )
    apt = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run("apt-get", "update", "-q", external=True, env=apt)
    session.run(
        "apt-get",
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "chromium",
        "fonts-liberation",
        "fonts-dejavu-core",
        "fonts-noto-color-emoji",
        external=True,
        env=apt,
    )


@nox.session(python=PYTHON, default=False)
def publish(session: nox.Session) -> None:
    """Build the site afresh and upload it to gs://BUCKET[/prefix]."""
    if not session.posargs:
        session.error("name the bucket: nox -s publish -- gs://BUCKET[/prefix] [--dry-run]")
    _install(session, "book")
    # From scratch, notebooks too: no stale page, no output of an older run.
    session.run("jupyter-book", "clean", "--all", str(ROOT / "book"))
    build_book(session)
    session.run("python", "-m", "microscopy_notebook.book.publish", *session.posargs)


@nox.session(python=PYTHON, default=False)
def linkcheck(session: nox.Session) -> None:
    """Check every link to another site (needs the internet): Sphinx's linkcheck builder."""
    _install(session, "book")
    report = ROOT / "book" / "_build" / "linkcheck"
    try:  # notebooks run as in every build, hence the emulator
        build_book(session, "--builder", "linkcheck", *session.posargs)
    finally:  # jupyter-book writes the report into the site's folder: not a page to publish
        report.mkdir(parents=True, exist_ok=True)
        for name in ("output.txt", "output.json"):
            if (BOOK_HTML / name).exists():
                (BOOK_HTML / name).replace(report / name)
        session.log(f"report: {report / 'output.txt'}")


@nox.session(python=PYTHON, default=False)
def image(session: nox.Session) -> None:
    """Build image/ with docker or podman, then check imports, CLIs and notebooks inside it."""
    _install(session, "book")  # the emulator and the samples it is seeded with
    image_cli = ("python", "-m", "microscopy_notebook.image")
    # Never report a build that did not happen: with no engine this says why and fails.
    engine = session.run(*image_cli, "engine", "--path", silent=True).strip().splitlines()[-1]
    tags = session.run(*image_cli, "tags", silent=True).split()
    session.run(
        *image_cli,
        "build",
        "--engine",
        engine,
        *(f"--tag={tag}" for tag in tags),
        "--",
        *session.posargs,
    )
    session.run(
        "python",
        "-m",
        "microscopy_notebook.cloud.emulator",
        "--seed",
        "--",
        *image_cli,
        "notebooks",
        "--engine",
        engine,
        "--image",
        tags[-1],
    )
    session.log(f"built and checked: {', '.join(tags)}")


def _use_images_gsutil(session: nox.Session) -> None:
    """`gsutil` as the image has it, first on PATH: image/gsutil.txt in a venv, behind gsutil.py.

    The book's commands and the tests then run the release readers get, not whatever gsutil this
    machine has (Google's CLI package stops carrying one after March 2027).
    """
    venv = ROOT / ".nox" / "gsutil"
    lock = ROOT / "image" / "gsutil.txt"
    stamp = venv / "installed-from.txt"  # the lock it was made from: a new lock, a new venv
    if not stamp.exists() or stamp.read_text() != lock.read_text():
        session.run(
            "uv", "venv", "--quiet", "--clear", "--python", PYTHON, str(venv), external=True
        )
        session.run(
            "uv",
            "pip",
            "install",
            "--quiet",
            "--python",
            str(venv / "bin" / "python"),
            "--require-hashes",
            "--requirement",
            str(lock),
            external=True,
        )
        stamp.write_text(lock.read_text())
    shim = venv / "shim"
    shim.mkdir(exist_ok=True)
    (shim / "gsutil").write_text(
        f'#!/bin/sh\nexec "{venv}/bin/python" "{ROOT}/image/gsutil.py" "$@"\n'
    )
    (shim / "gsutil").chmod(0o755)
    path = session.env.get("PATH") or os.environ["PATH"]
    if not path.startswith(f"{shim}{os.pathsep}"):
        session.env["PATH"] = f"{shim}{os.pathsep}{path}"


def _batch_python(session: nox.Session) -> str:
    """A venv of its own for the Google Batch executor plugin (it needs google-cloud-storage<3)."""
    venv = ROOT / ".nox" / "batch-plugin"
    python = venv / "bin" / "python"
    if not python.exists():
        session.run("uv", "venv", "--quiet", "--python", PYTHON, str(venv), external=True)
    session.run(
        "uv",
        "pip",
        "install",
        "--quiet",
        "--python",
        str(python),
        *nox.project.dependency_groups(PYPROJECT, "batch"),
        external=True,
    )
    return str(python)


def _task_python(session: nox.Session) -> str:
    """The venv the tests' Google Batch stand-in runs tasks with, as the image's user (uid 1000).

    That user must be able to run its interpreter: a Python under /root (pyenv, uv's own) will not
    do, so the venv is made from the first candidate every user can reach; and it lives in the
    system's temporary folder, not in the checkout, which may sit in a folder only root may enter
    (a clone into `mktemp -d`, as CI makes).
    """
    import hashlib
    import shutil
    import stat
    import tempfile

    def reachable(path: Path) -> bool:
        return all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents])

    checkout = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]  # one venv per checkout
    venv = Path(tempfile.gettempdir()) / f"microscopy-notebook-batch-task-{checkout}"
    python = venv / "bin" / "python"
    if not python.exists():
        found = (shutil.which(name) for name in ("python3.11", "python3"))
        candidates = [Path(p).resolve() for p in (*found, "/usr/bin/python3") if p]
        base = next((c for c in candidates if c.exists() and reachable(c)), None)
        if base is None:
            session.error(
                f"no Python that every user can run among {candidates}: the Batch "
                "stand-in runs tasks as uid 1000"
            )
        session.run("uv", "venv", "--quiet", "--python", str(base), str(venv), external=True)
    session.run(
        "uv",
        "pip",
        "install",
        "--quiet",
        "--python",
        str(python),
        *nox.project.dependency_groups(PYPROJECT, "batch-task"),
        external=True,
    )
    if not reachable(python.parent):
        session.error(
            f"{venv} is not reachable by every user: the Batch stand-in runs tasks as uid 1000"
        )
    return str(python)


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Time the thumbnail job against the original guide's job shape: -- --files N, --scale N."""
    _install(session, "test")
    _use_images_gsutil(session)  # the book build it times runs gsutil commands
    session.run("python", "-m", "microscopy_notebook.bench", *session.posargs)


if os.environ.get("CI"):
    nox.options.error_on_missing_interpreters = True  # CI must not silently skip a session
