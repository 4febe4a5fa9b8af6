"""Every page of the built site says under which licences its text and code are, and its "Open an
issue" button lands on the guide's issue form with the page filled in."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from bs4 import BeautifulSoup

from microscopy_notebook import book
from microscopy_notebook.book import hosted_site
from microscopy_notebook.paths import ROOT

FORM = ROOT / ".github" / "ISSUE_TEMPLATE" / hosted_site.ISSUE_FORM
CONFIG = yaml.safe_load((book.BOOK / "_config.yml").read_text())


def _toc_pages() -> list[str]:
    toc = yaml.safe_load((book.BOOK / "_toc.yml").read_text())
    return [toc["root"], *(c["file"] for part in toc["parts"] for c in part["chapters"])]


@pytest.fixture(scope="module")
def pages() -> dict[str, BeautifulSoup]:
    if not (book.HTML / "index.html").exists():
        pytest.fail("no built site: run `nox -s docs` (`nox -s site` builds it before its tests)")
    return {
        name: BeautifulSoup((book.HTML / f"{name}.html").read_text(), "html.parser")
        for name in _toc_pages()
    }


def test_every_page_names_both_licences(pages: dict[str, BeautifulSoup]) -> None:
    for name, page in pages.items():
        footer = page.select_one("footer.bd-footer-content")
        assert footer, name
        links = {a["href"] for a in footer.find_all("a", href=True)}
        assert "https://creativecommons.org/licenses/by/4.0/" in links, name
        assert f"{CONFIG['repository']['url']}/blob/main/LICENSE" in links, name


def test_the_issue_button_opens_the_guides_form_with_the_page(
    pages: dict[str, BeautifulSoup],
) -> None:
    fields = {f["id"] for f in yaml.safe_load(FORM.read_text())["body"]}
    for name, page in pages.items():
        (button,) = page.select("a.btn-source-issues-button")
        url = urlsplit(button["href"])
        assert (
            f"{url.scheme}://{url.netloc}{url.path}" == f"{CONFIG['repository']['url']}/issues/new"
        )
        query = parse_qs(url.query)
        assert query["template"] == [FORM.name], name
        assert query["page"] == [f"/{name}.html"], name
        assert set(query) - {"template"} <= fields, "every parameter fills a field of the form"
