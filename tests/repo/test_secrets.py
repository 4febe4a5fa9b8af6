"""No credential in the repository: detect-secrets plus Google's patterns (the site: tests/book)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from microscopy_notebook.paths import ROOT
from tests.repo.secret_patterns import scan

# Fake values in the shapes of real ones (assembled here so this file itself scans clean).
PLANTED = {
    "access token": "ya29." + "a0AfB_byC" * 4,
    "API key": "AIza" + "SyD3mo" * 5 + "x1234",
    "service-account key": '{"private_key_id": "' + "0123456789abcdef" * 2 + '"}',
    "signed URL": "https://storage.googleapis.com/b/o?X-Goog-Signature=" + "ab12" * 64,
}


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_the_scan_finds_a_planted_google_credential(kind: str, tmp_path: Path) -> None:
    leak = tmp_path / "notes.md"
    leak.write_text(f"debug output:\n{PLANTED[kind]}\n")
    found = scan([str(leak)])
    assert found, f"a {kind} went unnoticed"
    assert "Google credential" in {s["type"] for s in found[str(leak)]}


def test_the_repository_holds_no_secret() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    found = scan([str(ROOT / f) for f in tracked if (ROOT / f).is_file()])
    assert found == {}, found


def test_no_notebook_is_committed_with_outputs() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "*.ipynb"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert tracked == [], "notebooks are MyST text (.md), so no output can be committed"
