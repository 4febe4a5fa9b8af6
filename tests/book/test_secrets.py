"""No credential in the built site: the repository's secret scan (tests/repo) over every page."""

from __future__ import annotations

from microscopy_notebook import book
from tests.repo.secret_patterns import scan

SITE_SUFFIXES = {".html", ".js", ".css", ".txt", ".json", ".ipynb", ".md", ".xml", ".svg"}


def test_the_built_site_holds_no_secret() -> None:
    assert (book.HTML / "index.html").exists(), "build the site first (nox -s docs)"
    files = [str(p) for p in book.HTML.rglob("*") if p.is_file() and p.suffix in SITE_SUFFIXES]
    assert len(files) > 20
    # A built site is full of content hashes (asset digests, the job's plan ids, md5 sums) and of
    # base64 images (the notebooks' plots, in the .ipynb downloads): the two entropy detectors
    # would flag each one. Every other detector, Google's shapes included, still runs.
    found = scan(files, leave_out=frozenset({"HexHighEntropyString", "Base64HighEntropyString"}))
    assert found == {}, {k: [s["type"] for s in v] for k, v in found.items()}
