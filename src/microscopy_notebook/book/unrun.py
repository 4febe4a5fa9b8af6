"""``{unrun-commands}``: every command of the guide that its build shows but does not run.

A Sphinx extension (``book/_config.yml``). The commands a build cannot run are the code blocks
of the chapters marked with one of the classes of `REASONS` (a live Google account, Google
Batch, a container engine, a reader's own session). This directive lists them, page by page, read
from the pages themselves when the guide is built, so the list cannot leave one out. How each
kind is checked instead is said on the page that shows the list; tests/book/test_commands.py
does the checking.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from markdown_it import MarkdownIt
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

# The marking classes, and why a block with it is not run when the guide is built.
REASONS = {
    "needs-google-login": "needs a Google account",
    "needs-google-batch": "starts machines on Google Batch",
    "needs-container-engine": "needs Docker or Podman",
    "needs-your-session": "a placeholder for your own package",
}


@dataclass(frozen=True)
class Unrun:
    page: Path
    line: int
    reason: str
    code: str


def _options(content: str) -> tuple[dict[str, str], str]:
    options, lines = {}, content.splitlines()
    while lines and (match := re.match(r"^:(\w[\w-]*):\s*(.*)$", lines[0])):
        options[match.group(1)] = match.group(2)
        lines.pop(0)
    return options, "\n".join(lines).strip()


def found(pages: list[Path]) -> list[Unrun]:
    """The marked code blocks of ``pages``, in page order."""
    unrun = []
    for page in pages:
        for token in MarkdownIt("commonmark").parse(page.read_text()):
            if token.type != "fence" or not token.info.startswith("{code-block}"):
                continue
            options, code = _options(token.content)
            marks = [c for c in options.get("class", "").split() if c in REASONS]
            if marks:
                unrun.append(Unrun(page, token.map[0] + 1, REASONS[marks[0]], code))
    return unrun


def chapters(book: Path) -> list[Path]:
    return [book / "intro.md", *sorted((book / "chapters").glob("*.md"))]


class UnrunCommands(SphinxDirective):
    """A list of the pages with commands the build does not run, each command with why."""

    def run(self):
        book = Path(self.env.srcdir)
        here = Path(self.env.doc2path(self.env.docname)).parent
        lines = []
        for page in chapters(book):
            self.env.note_dependency(str(page))  # the list is rebuilt when a page changes
            blocks = found([page])
            if not blocks:
                continue
            link = Path(_relative(page, here)).as_posix()
            lines.append(f"- [](<{link}>):")
            for block in blocks:
                first = block.code.splitlines()[0].rstrip(" \\")
                more = " ..." if len(block.code.splitlines()) > 1 else ""
                lines.append(f"  - `{first}{more}` ({block.reason})")
        return self.parse_text_to_nodes("\n".join(lines))


def _relative(page: Path, folder: Path) -> str:
    return os.path.relpath(page, folder)


def setup(app: Sphinx) -> dict:
    app.add_directive("unrun-commands", UnrunCommands)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
