"""`nox -s bench --book-only` keeps working: it builds a copy of the book cold, again with no
change, and after one notebook's edit (no timing is asserted, only the report)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

BENCH = (sys.executable, "-m", "microscopy_notebook.bench")


@pytest.mark.slow
def test_the_book_timing_builds_a_copy_three_times() -> None:
    proc = subprocess.run([*BENCH, "--book-only"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    times = json.loads(proc.stdout.strip().splitlines()[-1])["book"]
    assert set(times) == {"cold_s", "no_change_s", "one_notebook_edited_s"}
    assert all(t > 0 for t in times.values())
