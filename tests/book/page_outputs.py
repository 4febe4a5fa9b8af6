"""What a notebook page shows, as a notebook: the reader's download with the page's outputs.

Every notebook page offers ``_sources/<page>.ipynb`` for download, without outputs. The outputs
the page shows are those of the build's run of that notebook, which myst-nb (execution mode
"cache") keeps in the build's jupyter-cache and renders from. They are taken from there, matched
to the download by its code, and checked against the page's HTML output by output: the same
stream lines, the same tables, the very same image files. Not from
``_build/jupyter_execute/*.ipynb``: after a rebuild in which a notebook's text changed but not
its code, myst-nb rewrites that copy without any output, while the page still shows them.
"""

from __future__ import annotations

import base64

import nbformat
import pytest
from bs4 import BeautifulSoup
from jupyter_cache import get_cache
from markdown_it import MarkdownIt

from microscopy_notebook import book

DOWNLOADS = book.HTML / "_sources"
CACHE = book.BOOK / "_build" / ".jupyter_cache"  # _config.yml: execute.cache "" (the default)


def download(notebook: str) -> nbformat.NotebookNode:
    """The ``.ipynb`` the page ``notebook`` (e.g. "notebooks/scaling") offers for download."""
    path = DOWNLOADS / f"{notebook}.ipynb"
    if not path.exists():
        pytest.fail("no built site: run `nox -s docs` (`nox -s site` builds it before its tests)")
    return nbformat.read(path, as_version=4)


def _code(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def shown(notebook: str) -> nbformat.NotebookNode:
    """The download, with the outputs (and execution counts) its page shows in its code cells."""
    nb = download(notebook)
    cache = get_cache(str(CACHE))
    try:
        record = cache.match_cache_notebook(nb)
    except KeyError:
        pytest.fail(f"{notebook}: the build's cache has no run of this code: rebuild the book")
    ran = cache.get_cache_bundle(record.pk).nb
    assert [c.source for c in _code(nb)] == [c.source for c in _code(ran)], notebook
    for cell, run in zip(_code(nb), _code(ran), strict=True):
        cell.outputs = run.outputs
        cell.execution_count = run.execution_count
    _check_the_page(notebook, nb)
    return nb


def _check_the_page(notebook: str, nb: nbformat.NotebookNode) -> None:
    """The page's HTML shows exactly these outputs, cell by cell."""
    html = book.HTML / f"{notebook}.html"
    cells = BeautifulSoup(html.read_text(), "html.parser").select("article.bd-article div.cell")
    code = _code(nb)
    assert len(cells) == len(code), f"{notebook}: {len(cells)} cells on the page"
    for index, (div, cell) in enumerate(zip(cells, code, strict=True)):
        where = f"{notebook}, code cell {index}"
        page = div.select("div.cell_output > *")
        assert len(page) == len(cell.outputs), where
        for element, output in zip(page, cell.outputs, strict=True):
            if output.output_type == "stream":
                lines = {line.strip() for line in element.get_text().splitlines()}
                for line in output.text.splitlines():
                    assert line.strip() in lines, f"{where}: {line!r} is not on the page"
            elif "image/png" in output.get("data", {}):
                img = element if element.name == "img" else element.find("img")
                image = (html.parent / img["src"]).resolve()
                assert image.read_bytes() == base64.b64decode(output.data["image/png"]), where
            elif "text/html" in output.get("data", {}):  # a table (pandas): the same text
                page_text = " ".join(element.get_text().split())
                table = BeautifulSoup(output.data["text/html"], "html.parser").get_text()
                assert " ".join(table.split()) in page_text, where
            elif "text/markdown" in output.get("data", {}):  # a computed sentence: its text
                page_text = " ".join(element.get_text().split())
                rendered = MarkdownIt().render(output.data["text/markdown"])
                text = BeautifulSoup(rendered, "html.parser").get_text()
                assert " ".join(text.split()) in page_text, where
            else:
                pytest.fail(f"{where}: an output of a kind this check does not know: {output}")


def images(nb: nbformat.NotebookNode) -> int:
    """How many images (plots, galleries) the notebook's outputs hold."""
    return sum(
        "image/png" in output.get("data", {}) for cell in _code(nb) for output in cell.outputs
    )


# In the page, for an <img>: how far its pixels are from one flat colour (the standard deviation
# of their grey levels, on a copy at most 400 px wide), or null when it did not load. A blank or
# black picture is a broken preview even when it loaded.
PIXEL_SPREAD_JS = """(img) => {
    if (!(img.naturalWidth > 0)) return null;
    const canvas = document.createElement("canvas");
    canvas.width = Math.min(img.naturalWidth, 400);
    canvas.height = Math.round(canvas.width * img.naturalHeight / img.naturalWidth);
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let sum = 0, sq = 0, n = 0;
    for (let i = 0; i < px.length; i += 4) {
        const v = (px[i] + px[i + 1] + px[i + 2]) / 3;
        sum += v; sq += v * v; n += 1;
    }
    return Math.sqrt(sq / n - (sum / n) ** 2);
}"""
