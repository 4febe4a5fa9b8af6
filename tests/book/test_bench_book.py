"""`nox -s bench --book-only` keeps working: it builds a copy of a book cold, again with no
change, and after one notebook's edit (no timing is asserted, only the report). The book timed
here is a two-page one of the guide's configuration; the bench times the guide's own by default.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.book.test_build import CONFIG, NOTEBOOK_HEADER

BENCH = (sys.executable, "-m", "microscopy_notebook.bench")


@pytest.mark.slow
def test_the_book_timing_builds_a_copy_three_times(tmp_path: Path) -> None:
    source = tmp_path / "book"
    (source / "notebooks").mkdir(parents=True)
    (source / "_config.yml").write_text(CONFIG)
    (source / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: notebooks/one\n"
    )
    (source / "intro.md").write_text("# A small book\n\nIts one [notebook](notebooks/one.md).\n")
    marker = tmp_path / "runs.txt"  # each execution of the notebook adds a line
    (source / "notebooks" / "one.md").write_text(
        f"{NOTEBOOK_HEADER}# One notebook\n\n```{{code-cell}} ipython3\n"
        f"with open({str(marker)!r}, 'a') as f:\n    print('ran', file=f)\n```\n"
    )
    proc = subprocess.run(
        [*BENCH, "--book-only", "--book", str(source), "--book-edit", "notebooks/one.md"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    times = json.loads(proc.stdout.strip().splitlines()[-1])["book"]
    assert set(times) == {"cold_s", "no_change_s", "one_notebook_edited_s"}
    assert all(t > 0 for t in times.values())
    # cold: run; no change: cached; one cell more: run again
    assert marker.read_text().splitlines() == ["ran", "ran"]
