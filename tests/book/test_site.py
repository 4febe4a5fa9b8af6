"""The built site, book/_build/html: made by `nox -s docs` and by `nox -s site` before its tests."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest
import yaml
from bs4 import BeautifulSoup

from microscopy_notebook import book
from microscopy_notebook.cloud import samples
from microscopy_notebook.paths import ROOT

HTML = book.HTML


def _toc_files() -> list[str]:
    toc = yaml.safe_load((book.BOOK / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part["chapters"]]
    return files


@pytest.fixture(scope="module")
def site() -> Path:
    if not (HTML / "index.html").exists():
        pytest.fail("no built site: run `nox -s docs` (`nox -s site` builds it before its tests)")
    return HTML


def _page(site: Path, name: str) -> BeautifulSoup:
    return BeautifulSoup((site / f"{name}.html").read_text(), "html.parser")


def test_every_toc_entry_is_a_page(site: Path) -> None:
    for name in _toc_files():
        assert (site / f"{name}.html").exists(), name


def test_storage_notebook_shows_the_objects_it_listed(site: Path) -> None:
    page = _page(site, "notebooks/cloud-storage")
    outputs = "\n".join(o.get_text() for o in page.select("div.cell_output"))
    for sample in samples.SAMPLES:
        assert samples.PREFIX + sample.name in outputs
    assert "Signal2D, title: HAADF" in outputs  # hyperspy read the downloaded file
    assert re.search(
        r"refused: uploads/\d{8}-\d{6}-[0-9a-f]{6}/multi_signal.dm3 is already there", outputs
    )
    # what it uploaded, and only that; the reader's own bucket stays (it makes none)
    assert "deleted 1 object(s) of this run; nexuslims_example-scratch kept" in outputs
    assert page.select("div.cell_output img"), "the HyperSpy plot is missing"


def test_no_cell_printed_a_traceback_or_warning(site: Path) -> None:
    for name in _toc_files():
        page = _page(site, name)
        for output in page.select("div.cell_output .output.stderr, div.cell_output .output.error"):
            text = output.get_text()
            assert "Traceback" not in text, f"{name}: {text[:500]}"
            assert "WARNING" not in text, f"{name}: {text[:500]}"


def test_every_local_image_exists(site: Path) -> None:
    for name in _toc_files():
        page = _page(site, name)
        for img in page.find_all("img"):
            src = img.get("src", "")
            if src.startswith(("http:", "https:", "data:")):
                continue
            assert (site / name).parent.joinpath(src).resolve().exists(), f"{name}: {src}"


def _private_paths() -> list[re.Pattern]:
    """The build machine's paths: the checkout (also as a relative path climbs to it), the build
    user's home, and folders made by tempfile (a prefix, then 8 random characters)."""
    root = ROOT.as_posix().lstrip("/")
    patterns = [re.compile(re.escape(root))]
    home = os.environ.get("HOME", "")
    if len(home) > 1:
        patterns.append(re.compile(re.escape(home.rstrip("/")) + r"(?=[/\s\"'<:]|$)"))
    tmp = re.escape(tempfile.gettempdir().rstrip("/"))
    patterns.append(re.compile(tmp + r"/[\w.-]*?[-_][a-z0-9_]{8}(?![\w.])"))
    return patterns


def test_no_path_of_the_build_machine_anywhere_in_the_site(site: Path) -> None:
    patterns = _private_paths()
    for path in sorted(site.rglob("*")):
        if path.suffix not in {".html", ".ipynb", ".md", ".txt", ".json", ".js", ".xml"}:
            continue
        # Inline pictures are base64, whose alphabet can spell anything.
        text = re.sub(r"base64,[A-Za-z0-9+/=]+", "", path.read_text(errors="replace"))
        for pattern in patterns:
            match = pattern.search(text)
            assert match is None, (
                f"{path.relative_to(site)} shows a path of the build machine: "
                f"...{text[max(0, match.start() - 80) : match.end() + 40]}..."
            )


def test_no_setting_of_the_build_machine_shows_in_a_commands_output(site: Path) -> None:
    """What a command printed under the build's emulator settings is what a reader's prints: a
    warning about an environment setting (CLOUDSDK_*, BOTO_*) would be the build machine's own."""
    for page in sorted(site.rglob("*.html")):
        outputs = BeautifulSoup(page.read_text(), "html.parser").select(
            ".terminal-output, .cell_output"
        )
        for output in outputs:
            text = output.get_text()
            assert not re.search(r"\b(CLOUDSDK|BOTO)_[A-Z_]+", text), (
                f"{page.relative_to(site)}: {text[:300]}"
            )


def test_no_name_in_the_prose_became_a_link_to_a_website(site: Path) -> None:
    """linkify's guesses: a file name (plot.py: .py is a country's domain) or a host named in
    prose must not turn into a link to http://<that text>."""
    for page in sorted(site.rglob("*.html")):
        for link in BeautifulSoup(page.read_text(), "html.parser").select("a.reference.external"):
            text = link.get_text().strip()
            assert link.get("href") not in (f"http://{text}", f"https://{text}"), (
                f"{page.relative_to(site)}: {text!r} links to {link.get('href')}"
            )
