"""No credential in the repository or the built site: detect-secrets plus Google's patterns."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from detect_secrets import SecretsCollection
from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.settings import transient_settings

from microscopy_notebook import book
from microscopy_notebook.paths import ROOT
from tests.repo import secret_patterns

SITE_SUFFIXES = {".html", ".js", ".css", ".txt", ".json", ".ipynb", ".md", ".xml", ".svg"}
# Fake values in the shapes of real ones (assembled here so this file itself scans clean).
PLANTED = {
    "access token": "ya29." + "a0AfB_byC" * 4,
    "API key": "AIza" + "SyD3mo" * 5 + "x1234",
    "service-account key": '{"private_key_id": "' + "0123456789abcdef" * 2 + '"}',
    "signed URL": "https://storage.googleapis.com/b/o?X-Goog-Signature=" + "ab12" * 64,
}


def _scan(files: list[str], leave_out: frozenset[str] = frozenset()) -> dict[str, list[dict]]:
    plugins = [
        {"name": cls.__name__}
        for cls in get_mapping_from_secret_type_to_class().values()
        if cls.__name__ not in leave_out | {"GoogleCredentialDetector"}
    ]
    plugins.append(
        {"name": "GoogleCredentialDetector", "path": f"file://{secret_patterns.__file__}"}
    )
    get_mapping_from_secret_type_to_class.cache_clear()  # the cache predates our plugin
    try:
        with transient_settings({"plugins_used": plugins}):
            found = SecretsCollection()
            found.scan_files(*files, num_processors=1)
            return found.json()
    finally:
        get_mapping_from_secret_type_to_class.cache_clear()


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_the_scan_finds_a_planted_google_credential(kind: str, tmp_path: Path) -> None:
    leak = tmp_path / "notes.md"
    leak.write_text(f"debug output:\n{PLANTED[kind]}\n")
    found = _scan([str(leak)])
    assert found, f"a {kind} went unnoticed"
    assert "Google credential" in {s["type"] for s in found[str(leak)]}


def test_the_repository_holds_no_secret() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    found = _scan([str(ROOT / f) for f in tracked if (ROOT / f).is_file()])
    assert found == {}, found


def test_the_built_site_holds_no_secret() -> None:
    assert (book.HTML / "index.html").exists(), "build the site first (nox -s docs)"
    files = [str(p) for p in book.HTML.rglob("*") if p.is_file() and p.suffix in SITE_SUFFIXES]
    assert len(files) > 20
    # A built site is full of content hashes (asset digests, the job's plan ids, md5 sums) and of
    # base64 images (the notebooks' plots, in the .ipynb downloads): the two entropy detectors
    # would flag each one. Every other detector, Google's shapes included, still runs.
    found = _scan(files, leave_out=frozenset({"HexHighEntropyString", "Base64HighEntropyString"}))
    assert found == {}, {k: [s["type"] for s in v] for k, v in found.items()}


def test_no_notebook_is_committed_with_outputs() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "*.ipynb"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert tracked == [], "notebooks are MyST text (.md), so no output can be committed"
