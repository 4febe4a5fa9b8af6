"""Every link inside the built site resolves: the file it names exists, and so does its #anchor.

Sphinx (``-W -n``, heading anchors on) already fails the build on a broken reference it knows
about; this reads the HTML it wrote, so it also covers what the theme, myst-nb and raw HTML add
(navigation, download and source buttons, images, scripts, stylesheets). Links to other sites are
checked by ``nox -s linkcheck``, which needs the internet.
"""

from __future__ import annotations

import posixpath
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from bs4 import BeautifulSoup

from microscopy_notebook import book
from microscopy_notebook.book import publish

EXTERNAL = ("http", "https", "mailto", "tel", "data", "javascript")
ATTRIBUTES = {
    "a": "href",
    "link": "href",
    "area": "href",
    "script": "src",
    "img": "src",
    "source": "src",
    "iframe": "src",
    "video": "src",
    "audio": "src",
}


@cache
def _ids(page: Path) -> frozenset[str]:
    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    ids = {tag["id"] for tag in soup.find_all(id=True)}
    ids |= {tag["name"] for tag in soup.find_all("a", attrs={"name": True})}
    return frozenset(ids)


def broken_links(site: Path) -> list[str]:
    """``page: url (why)`` for every local link of every published page that does not resolve."""
    problems = []
    pages = sorted(
        p for p in site.rglob("*.html") if publish.excluded(p.relative_to(site).as_posix()) is None
    )
    for page in pages:
        name = page.relative_to(site).as_posix()
        soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
        for tag, attribute in ATTRIBUTES.items():
            for element in soup.find_all(tag, attrs={attribute: True}):
                url = element[attribute].strip()
                parts = urlsplit(url)
                if parts.scheme in EXTERNAL or parts.netloc:
                    continue
                if parts.path.startswith("/"):  # from the site's root, as the bucket serves it
                    target = site / unquote(parts.path).lstrip("/")
                elif parts.path:
                    target = page.parent / unquote(parts.path)
                else:
                    target = page
                if target.is_dir():
                    target = target / "index.html"
                try:
                    relative = target.resolve().relative_to(site.resolve()).as_posix()
                except ValueError:
                    problems.append(f"{name}: {url} (outside the site)")
                    continue
                if not target.is_file():
                    problems.append(f"{name}: {url} (no such file)")
                    continue
                if publish.excluded(relative):
                    problems.append(f"{name}: {url} (a file that is not published)")
                    continue
                anchor = unquote(parts.fragment)
                if anchor and target.suffix == ".html" and anchor not in _ids(target):
                    problems.append(f"{name}: {url} (no #{anchor} in {relative})")
    return problems


def test_the_checker_finds_broken_files_and_anchors(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "index.html").write_text(
        '<h2 id="here">Here</h2><a href="sub/page.html#there">ok</a><a href="#here">ok</a>'
        '<a href="sub/page.html#nowhere">bad</a><a href="gone.html">bad</a>'
        '<img src="sub/missing.png"><a href="https://example.org/x.html#y">external</a>'
        '<a href="/">root</a><a href="sub/">folder</a><a href=".buildinfo">internal</a>'
    )
    (tmp_path / "sub" / "page.html").write_text(
        '<a name="there"></a><a href="../index.html#here">ok</a><a href="../../up.html">bad</a>'
    )
    (tmp_path / "sub" / "index.html").write_text("<p>folder</p>")
    (tmp_path / ".buildinfo").write_text("# Sphinx build info")
    assert broken_links(tmp_path) == [
        "index.html: sub/page.html#nowhere (no #nowhere in sub/page.html)",
        "index.html: gone.html (no such file)",
        "index.html: .buildinfo (a file that is not published)",
        "index.html: sub/missing.png (no such file)",
        "sub/page.html: ../../up.html (outside the site)",
    ]


def test_every_link_and_anchor_in_the_built_site_resolves() -> None:
    if not (book.HTML / "index.html").exists():
        pytest.fail("no built site: run `nox -s docs` (`nox -s site` builds it before its tests)")
    problems = broken_links(book.HTML)
    assert not problems, "broken links in the built site:\n" + "\n".join(problems)


def test_cross_page_anchors_are_really_checked() -> None:
    """The guide links to headings of other pages; each such link was among those checked."""
    if not (book.HTML / "index.html").exists():
        pytest.fail("no built site: run `nox -s docs` (`nox -s site` builds it before its tests)")
    page = book.HTML / "chapters" / "migration.html"
    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    anchored = [
        a["href"]
        for a in soup.select("article a[href]")
        if "#" in a["href"] and not a["href"].startswith(("#", "http"))
    ]
    assert "cloud-storage.html#gsutil-the-older-tool" in anchored
    target = posixpath.normpath("chapters/cloud-storage.html")
    assert "gsutil-the-older-tool" in _ids(book.HTML / target)
