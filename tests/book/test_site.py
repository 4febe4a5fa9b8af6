"""The built site (book/_build/html, made by `nox -s docs` and by `nox -s tests` before pytest)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from bs4 import BeautifulSoup

from microscopy_notebook import book
from microscopy_notebook.cloud import samples

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
        pytest.fail("no built site: run `nox -s docs` (nox -s tests builds it before pytest)")
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
    assert re.search(r"refused: uploads/\d{8}-\d{6}-[0-9a-f]{6}/multi_signal.dm3 is already there",
                     outputs)
    assert "bucket deleted" in outputs  # the bucket it made, and only that one
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

