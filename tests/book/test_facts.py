"""Facts the book states about tools, checked against the tools themselves.

Each test names the page and the words it checks; facts no installed tool can show carry their
source next to them in the page's source (``% source: URL``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

from microscopy_notebook.paths import BOOK


def _snakemake_help() -> str:
    snakemake = Path(sys.executable).with_name("snakemake")
    return subprocess.run(
        [str(snakemake), "--help"], capture_output=True, text=True, timeout=120
    ).stdout


def test_snakemake_9_preemptible_flags_as_the_migration_table_says() -> None:
    """migration.md: `--preemptible-rules` takes rule names (none: every rule), and the number
    of retries is `--preemptible-retries N`; `RULE=N` is not Snakemake 9's syntax."""
    assert importlib.metadata.version("snakemake").startswith("9.")
    usage = _snakemake_help()
    assert re.search(r"--preemptible-rules \[PREEMPTIBLE_RULES \.\.\.\]", usage)
    assert re.search(r"--preemptible-retries PREEMPTIBLE_RETRIES", usage)
    table = (BOOK / "chapters" / "migration.md").read_text()
    assert "--preemptible-retries N" in table and "RULE=N" not in table


def test_snakemake_9_still_accepts_use_conda() -> None:
    """migration.md: `--use-conda` is still accepted by Snakemake 9."""
    assert re.search(r"^\s+--use-conda\b", _snakemake_help(), re.MULTILINE)
    assert "still accepted by Snakemake 9" in (BOOK / "chapters" / "migration.md").read_text()


def test_hyperspy_api_nogui_is_gone_and_api_imports() -> None:
    """migration.md: HyperSpy 2.1.0 removed `hyperspy.api_nogui` (source in the page)."""
    major, minor = (int(x) for x in importlib.metadata.version("hyperspy").split(".")[:2])
    assert (major, minor) >= (2, 1)
    assert importlib.util.find_spec("hyperspy.api_nogui") is None
    assert importlib.util.find_spec("hyperspy.api") is not None
    assert "2.1.0 removed `api_nogui`" in (BOOK / "chapters" / "migration.md").read_text()


def test_every_dated_fact_carries_its_source() -> None:
    """Dated facts (gsutil, apt-key, api_nogui, Life Sciences, Docker Hub) cite a source."""
    for page, words, url in [
        ("cloud-storage.md", "after March 2027", "https://cloud.google.com/storage/docs/gsutil"),
        ("migration.md", "After March 2027", "https://cloud.google.com/storage/docs/gsutil"),
        ("image.md", "until March 2027", "https://cloud.google.com/storage/docs/gsutil"),
        (
            "migration.md",
            "its own manual page says",
            "https://manpages.ubuntu.com/manpages/noble/man8/apt-key.8.html",
        ),
        ("migration.md", "HyperSpy 1.3", "https://github.com/hyperspy/hyperspy/blob/"),
        (
            "migration.md",
            "in July 2025",
            "https://cloud.google.com/life-sciences/docs/deprecations",
        ),
        ("migration.md", "Docker Hub images in 2023", "https://github.com/jupyter/docker-stacks"),
    ]:
        text = (BOOK / "chapters" / page).read_text()
        assert words in text, f"{page}: {words!r}"
        assert re.search(rf"^% .*source: {re.escape(url)}", text, re.MULTILINE), f"{page}: {url}"
