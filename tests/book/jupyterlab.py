"""The reader's JupyterLab, for the tests: `microscopy_notebook.book.lab`, and what only tests need.

- `clone`, `seeded_emulator`: a reader's clone of the checkout; the example buckets, freshly seeded.
- `Files`: a snapshot of a folder, to tell what running a notebook wrote.
- `outputs`: what the open notebook shows (its cells, errors and images), for the checks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page

from microscopy_notebook.book.lab import (  # noqa: F401 - the tests' names for them
    _ERRORS_JS,
    NOTEBOOK_VIEWER,
    PANEL,
    REPO_NAME,
    Lab,
    git,
    launch,
    open_path,
    origin,
    run_all,
    screenshot,
)
from microscopy_notebook.cloud import samples
from microscopy_notebook.cloud.emulator import Emulator
from tests.book.page_outputs import PIXEL_SPREAD_JS

_git = git


def clone(parent: Path, branch: str) -> Path:
    """``parent/microscopy-notebook``: a clone of the checkout as it is, on ``branch``."""
    bare = origin(parent / "origin", branch)
    path = parent / REPO_NAME
    _git("clone", "--quiet", "--branch", branch, bare.as_uri(), str(path))
    return path


@contextlib.contextmanager
def seeded_emulator() -> Iterator[Emulator]:
    """A storage emulator of its own, seeded: the example buckets as a reader first finds them."""
    with Emulator() as emu, pytest.MonkeyPatch.context() as patch:
        for key, value in emu.env.items():
            patch.setenv(key, value)  # samples.seed's client, in this process, talks to it
        samples.seed()
        yield emu


# --- what a notebook wrote -----------------------------------------------------------------------
@dataclass(frozen=True)
class Files:
    """Every file under ``root`` with its size and modification time."""

    root: Path
    stat: dict[str, tuple[int, int]]

    @classmethod
    def of(cls, root: Path) -> Files:
        stat = {}
        for path in root.rglob("*"):
            if path.is_file() or path.is_symlink():
                info = path.lstat()
                stat[path.relative_to(root).as_posix()] = (info.st_size, info.st_mtime_ns)
        return cls(root, stat)

    def changed_since(self, before: Files) -> list[str]:
        """Files added, changed or removed since ``before``, as "+ name", "~ name", "- name"."""
        added = [f"+ {n}" for n in self.stat.keys() - before.stat.keys()]
        removed = [f"- {n}" for n in before.stat.keys() - self.stat.keys()]
        changed = [
            f"~ {n}"
            for n in self.stat.keys() & before.stat.keys()
            if self.stat[n] != before.stat[n]
        ]
        return sorted(added + removed + changed, key=lambda s: s[2:])


def outputs(page: Page) -> dict:
    """What the open notebook shows: its cells, its kernel, its error outputs, its images."""
    return page.evaluate(
        """async () => {
            const p = document.querySelector(".jp-NotebookPanel:not(.lm-mod-hidden)");
            ${ERRORS}
            const images = [...p.querySelectorAll(".jp-OutputArea-output img")];
            await Promise.all(images.map((img) => img.decode().catch(() => null)));
            return {
                cells: p.querySelectorAll(".jp-Notebook .jp-Cell").length,
                code: p.querySelectorAll(".jp-Notebook .jp-CodeCell").length,
                kernel: p.querySelector(".jp-KernelName, .jp-Toolbar-kernelName")?.textContent,
                errors: errors(),
                // A link with no text: MyST's [](target) is filled in by Sphinx, not JupyterLab.
                emptyLinks: [...p.querySelectorAll(".jp-MarkdownOutput a")]
                    .filter((a) => !a.textContent.trim()).map((a) => a.getAttribute("href")),
                images: images.map((img) => {
                    const spread = (${SPREAD})(img);  // how far from one flat colour
                    const box = img.getBoundingClientRect();
                    return {natural: img.naturalWidth, width: box.width, height: box.height,
                            spread: spread};
                }),
            };
        }""".replace("${ERRORS}", _ERRORS_JS).replace("${SPREAD}", PIXEL_SPREAD_JS)
    )
