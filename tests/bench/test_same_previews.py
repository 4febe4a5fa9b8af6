"""`same_previews`: the script that shows a change to the job's library left every preview as it
was (issue 11's split was checked with it). Against the commit of the working tree it finds every
preview identical; with one colour changed in the working tree it names the files that differ."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from microscopy_notebook.paths import ROOT

SAME = (sys.executable, "-m", "microscopy_notebook.bench.same_previews")
SCRIPTS = "workflow/scripts"


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def _repo_with_this_library(tmp_path: Path) -> Path:
    """A throwaway repository whose HEAD holds this working tree's library: never this checkout."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / SCRIPTS, repo / SCRIPTS, ignore=shutil.ignore_patterns("__pycache__"))
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "the library")
    return repo


def test_identical_against_its_own_commit_and_a_changed_colour_is_named(tmp_path: Path) -> None:
    repo = _repo_with_this_library(tmp_path)
    same = subprocess.run(
        [*SAME, "--base", "HEAD", "--repo", str(repo)], capture_output=True, text=True, timeout=300
    )
    assert same.returncode == 0, same.stdout + same.stderr
    lines = same.stdout.splitlines()
    assert lines[-1].endswith("previews identical to HEAD") and "DIFF" not in same.stdout
    assert sum(line.startswith("same  ") for line in lines) >= 10  # every sample, and its cuts

    canvas = repo / SCRIPTS / "thumbnails" / "canvas.py"
    canvas.write_text(
        canvas.read_text().replace(
            'GREY, INK = "#ffffff", "#000000", "#666666"',
            'GREY, INK = "#ffffff", "#000000", "#676767"',
        )
    )
    changed = subprocess.run(
        [*SAME, "--base", "HEAD", "--repo", str(repo)], capture_output=True, text=True, timeout=300
    )
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert "DIFF  dm3/multi_signal.dm3" in changed.stdout  # its subtitle is drawn in grey
