"""How the book is built: one place, used by nox and by the tests that prove the build is strict."""

from __future__ import annotations

import sys
from pathlib import Path

from microscopy_notebook.paths import ROOT

BOOK = ROOT / "book"
HTML = BOOK / "_build" / "html"

STRICT_FLAGS = (
    "--warningiserror",  # a warning is an error: a broken reference never ships
    "--nitpick",  # every cross-reference must resolve
    "--keep-going",  # report all warnings of a build at once, then fail
)


def build_command(book: Path = BOOK, *extra: str) -> list[str]:
    """``jupyter-book build`` of ``book`` with the strict flags, by this interpreter's install
    (through `microscopy_notebook.book.build`, which spares it a second of start-up)."""
    return [sys.executable, "-m", "microscopy_notebook.book.build", *build_args(book, *extra)]


def build_args(book: Path = BOOK, *extra: str) -> list[str]:
    """jupyter-book's arguments for a strict build of ``book``."""
    return ["build", str(book), *STRICT_FLAGS, *extra]
