"""How long the guide's sentences are, as a reader meets them on the built site.

``python -m microscopy_notebook.book.prose [--over N] [--list]`` reads every page of the table of
contents from ``book/_build/html``, takes the text of its paragraphs, list items, definitions,
admonitions and captions (not code, commands' outputs, cells' outputs or tables), splits it into
sentences and counts their words. It prints, per page, how many sentences run over 40 and over 50
words, and with ``--list`` the sentences over ``--over`` words (default 40). A non-native reader
reads a sentence of 40 words once only with luck; the guide aims at none.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from bs4 import BeautifulSoup

from microscopy_notebook import book

# Blocks whose text is prose; anything inside code, outputs, tables or the theme is not.
PROSE = "p, li, dd, dt, figcaption, .admonition-title, caption"
NOT_PROSE = "pre, .cell_output, .terminal, table, nav, .toctree-wrapper, .sd-card, .sig"
ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "cf.", "vs.", "approx.")
# Inline code is marked while the text is read, since a sentence may start with it in lower case
# ("`gsutil` needs ..."). A sentence ends at . ? or ! followed by space and a capital letter, a
# digit, a quote, a bracket or inline code.
CODE_START, CODE_END = "\x01", "\x02"
_END = re.compile(r"(?<=[.?!])\s+(?=[A-Z0-9\"'(\[\x01])")


@dataclass(frozen=True)
class Sentence:
    page: str
    words: int
    text: str


def toc_pages() -> list[str]:
    toc = yaml.safe_load((book.BOOK / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages += [chapter["file"] for chapter in part["chapters"]]
    return pages


def _text(html: str) -> list[str]:
    """The prose blocks of a page's article, each as one line of text."""
    article = BeautifulSoup(html, "html.parser").select_one("article.bd-article")
    if article is None:
        return []
    for noise in article.select(NOT_PROSE + ", a.headerlink, .copybtn"):
        noise.decompose()
    for code in article.select("code"):
        code.replace_with(CODE_START + code.get_text() + CODE_END)
    blocks = []
    for element in article.select(PROSE):
        if element.find_parent(["li", "dd"]) and element.name == "p":
            continue  # a list item's paragraphs are read with the item
        if element.select_one("p") and element.name in ("li", "dd"):
            parts = [p.get_text(" ") for p in element.find_all("p", recursive=False)]
            text = " ".join(parts) or element.get_text(" ")
        else:
            text = element.get_text(" ")
        blocks.append(" ".join(text.split()))
    return [b for b in blocks if b]


def sentences(page: str, html: str) -> list[Sentence]:
    found = []
    for block in _text(html):
        protected = block
        for abbreviation in ABBREVIATIONS:
            protected = protected.replace(abbreviation, abbreviation.replace(".", "\0"))
        for piece in _END.split(protected):
            text = piece.replace("\0", ".").replace(CODE_START, "").replace(CODE_END, "").strip()
            words = len(re.findall(r"\S+", text))
            if words:
                found.append(Sentence(page, words, text))
    return found


def measure(html_root: Path = book.HTML) -> list[Sentence]:
    found = []
    for page in toc_pages():
        path = html_root / f"{page}.html"
        if path.exists():
            found += sentences(page, path.read_text())
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--over", type=int, default=40, help="list sentences over N words")
    parser.add_argument("--list", action="store_true", help="print the long sentences")
    args = parser.parse_args(argv)
    found = measure()
    if not found:
        print("no built site: run `nox -s docs` first", file=sys.stderr)
        return 1
    print(f"{'page':40} {'sentences':>9} {'>40':>4} {'>50':>4} {'longest':>7}")
    for page in toc_pages():
        mine = [s for s in found if s.page == page]
        if mine:
            print(
                f"{page:40} {len(mine):9} {sum(s.words > 40 for s in mine):4} "
                f"{sum(s.words > 50 for s in mine):4} {max(s.words for s in mine):7}"
            )
    print(
        f"{'all pages':40} {len(found):9} {sum(s.words > 40 for s in found):4} "
        f"{sum(s.words > 50 for s in found):4} {max(s.words for s in found):7}"
    )
    if args.list:
        for s in sorted(found, key=lambda s: -s.words):
            if s.words > args.over:
                print(f"\n[{s.page}, {s.words} words] {s.text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
