"""The book fails loudly: a failing cell, a broken link or a warning stops the build."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from microscopy_notebook import book

CONFIG = (book.BOOK / "_config.yml").read_text()
NOTEBOOK_HEADER = """---
jupytext:
  text_representation:
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""


def _build(tmp_path: Path, pages: dict[str, str]) -> subprocess.CompletedProcess:
    src = tmp_path / "book"
    src.mkdir()
    (src / "_config.yml").write_text(CONFIG)
    toc = ["format: jb-book", "root: intro"]
    chapters = [name for name in pages if name != "intro"]
    if chapters:
        toc.append("chapters:")
        toc += [f"  - file: {name}" for name in chapters]
    (src / "_toc.yml").write_text("\n".join(toc) + "\n")
    for name, text in pages.items():
        (src / f"{name}.md").write_text(text)
    return subprocess.run(book.build_command(src), capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_good_book_builds(tmp_path: Path) -> None:
    proc = _build(
        tmp_path,
        {"intro": NOTEBOOK_HEADER + "# Fine\n\n```{code-cell} ipython3\nprint(6 * 7)\n```\n"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    html = (tmp_path / "book" / "_build" / "html" / "intro.html").read_text()
    assert "42" in html


@pytest.mark.slow
def test_a_failing_cell_fails_the_build(tmp_path: Path) -> None:
    proc = _build(
        tmp_path, {"intro": NOTEBOOK_HEADER + "# Broken\n\n```{code-cell} ipython3\n1 / 0\n```\n"}
    )
    assert proc.returncode != 0
    assert "ZeroDivisionError" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    proc = _build(
        tmp_path,
        {
            "intro": "# Links\n\nSee [the missing page](missing.md) and "
            "[a missing heading](#nowhere).\n"
        },
    )
    assert proc.returncode != 0
    assert "missing" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_pages_outside_the_toc_are_not_built(tmp_path: Path) -> None:
    src = tmp_path / "book"
    proc = _build(tmp_path, {"intro": "# Home\n", "listed": "# Listed\n"})
    assert proc.returncode == 0, proc.stdout[-3000:]
    (src / "stray.md").write_text("# A draft nobody linked\n")
    shutil.rmtree(src / "_build")
    proc = subprocess.run(book.build_command(src), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (src / "_build" / "html" / "listed.html").exists()
    assert not (src / "_build" / "html" / "stray.html").exists()


TERMINAL_PAGE = """# Commands

```{terminal}
GREETING="printed at build time"
echo "$GREETING"
```

```{terminal}
echo "the same session: $GREETING" >&2
%s
```
"""


@pytest.mark.slow
def test_terminal_blocks_run_once_in_order_with_their_output_under_them(tmp_path: Path) -> None:
    proc = _build(tmp_path, {"intro": TERMINAL_PAGE % "echo done > ran-once.txt"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    page = (tmp_path / "book" / "_build" / "html" / "intro.html").read_text()
    outputs = [o.split("</pre>")[0] for o in page.split("terminal-output")[1:]]
    assert len(outputs) == 2
    assert "printed at build time" in outputs[0]
    assert "the same session: printed at build time" in outputs[1]  # stderr, and shell state


@pytest.mark.slow
def test_a_failing_terminal_command_fails_the_build(tmp_path: Path) -> None:
    proc = _build(tmp_path, {"intro": TERMINAL_PAGE % "ls no-such-file"})
    assert proc.returncode != 0
    assert "a command failed" in proc.stdout + proc.stderr
    assert "no-such-file" in proc.stdout + proc.stderr


FAILS_ON_PURPOSE = """# An error, quoted

```{terminal}
:exit: 2
ls no-such-file
```

```{terminal}
echo "the next block runs as usual"
```
"""


@pytest.mark.slow
def test_a_command_meant_to_fail_shows_its_error_and_must_fail(tmp_path: Path) -> None:
    """`:exit: N`: the page shows the error the command printed, and the build goes on; a
    command that does not fail with that status fails the build."""
    (tmp_path / "fails").mkdir()
    proc = _build(tmp_path / "fails", {"intro": FAILS_ON_PURPOSE})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    page = (tmp_path / "fails" / "book" / "_build" / "html" / "intro.html").read_text()
    outputs = [o.split("</pre>")[0] for o in page.split("terminal-output")[1:]]
    assert "No such file or directory" in outputs[0]
    assert "the next block runs as usual" in outputs[1]

    (tmp_path / "succeeds").mkdir()
    proc = _build(
        tmp_path / "succeeds", {"intro": FAILS_ON_PURPOSE.replace("ls no-such-file", "true")}
    )
    assert proc.returncode != 0
    assert "the page expects exit status 2" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_terminal_commands_run_again_only_when_they_or_their_files_change(tmp_path: Path) -> None:
    """As the notebooks' cache does: a rebuild with nothing changed runs no command; a changed
    file that the page copies runs them again, and a clean build always does."""
    runs = tmp_path / "runs.txt"
    (tmp_path / "book" / "files").mkdir(parents=True)
    (tmp_path / "book" / "files" / "data.txt").write_text("first\n")
    page = f"# Commands\n\n```{{terminal}}\n:copy: files\ncat data.txt\necho x >> {runs}\n```\n"
    src = tmp_path / "book"

    (src / "_config.yml").write_text(CONFIG)
    (src / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    (src / "intro.md").write_text(page)

    def build() -> str:
        proc = subprocess.run(book.build_command(src), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return (src / "_build" / "html" / "intro.html").read_text()

    assert "first" in build() and runs.read_text().count("x") == 1
    build()
    assert runs.read_text().count("x") == 1  # nothing changed: not run again
    (src / "files" / "data.txt").write_text("second\n")
    assert "second" in build() and runs.read_text().count("x") == 2
