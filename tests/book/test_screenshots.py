"""The pictures of the reader's screen on the built site: the build's own, each one shown.

`microscopy_notebook.book.screenshots` takes them during the build, waiting for what each shows
(the build fails if that never appears). Here: every picture the build takes is on a page, every
{screenshot} of a page shows a picture the build took (not a file of the repository), at the size
of the window it was taken in (or a part of it), and not blank.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from PIL import Image, ImageStat

from microscopy_notebook import book
from microscopy_notebook.book import screenshots
from microscopy_notebook.paths import ROOT
from tests.book.test_browser import PAGES


@pytest.fixture(scope="module")
def shown() -> dict[str, list[Path]]:
    """page -> the screenshot files its figures show, as the built site has them."""
    if not (book.HTML / "index.html").exists():
        pytest.fail("no built site: run `nox -s docs` (nox -s site builds it before pytest)")
    found = {}
    for page in PAGES:
        html = book.HTML / f"{page}.html"
        soup = BeautifulSoup(html.read_text(), "html.parser")
        images = soup.select("figure.screenshot img")
        found[page] = [(html.parent / img["src"]).resolve() for img in images]
    return found


def test_every_picture_the_build_takes_is_on_a_page(shown: dict[str, list[Path]]) -> None:
    names = {path.stem for paths in shown.values() for path in paths}
    assert names == screenshots.NAMES


def test_each_picture_is_the_builds_and_shows_something(shown: dict[str, list[Path]]) -> None:
    for page, paths in shown.items():
        for path in paths:
            taken = screenshots.path(path.stem)
            assert path.read_bytes() == taken.read_bytes(), f"{page}: {path.name} is stale"
            with Image.open(path) as image:
                window = (screenshots.VIEWPORT["width"], screenshots.VIEWPORT["height"])
                if path.stem in ("launcher", "launched"):  # the whole window
                    assert image.size == window, (page, path.name, image.size)
                else:  # a part of it: the terminal's tab, a cell
                    assert image.size[0] <= window[0] and image.size[1] <= window[1], path.name
                spread = ImageStat.Stat(image.convert("L")).stddev[0]
                assert spread > 10, f"{page}: {path.name} is nearly one colour ({spread:.1f})"


def test_no_picture_is_committed() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "*.png"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    pictures = [t for t in tracked if re.search(r"(^|/)(screenshots?)/", t)]
    assert not pictures, pictures
    assert not any(Path(t).stem in screenshots.NAMES for t in tracked), tracked


def test_pictures_taken_beside_the_reading_fail_the_build_as_they_failed() -> None:
    """The pictures are taken in a thread while the pages are read: the build waits for them
    where a page shows one, and an error in that thread is raised there, as if taken in line."""
    import threading
    from types import SimpleNamespace

    from sphinx.errors import ExtensionError

    failed: list[BaseException] = []

    def work() -> None:
        failed.append(ExtensionError("screenshot 2 of 5 (terminal): never appeared"))

    thread = threading.Thread(target=work)
    thread.start()
    app = SimpleNamespace(screenshots_pending=(thread, failed))
    with pytest.raises(ExtensionError, match="never appeared"):
        screenshots._wait_for_pictures(app)
    assert not thread.is_alive()
    screenshots._wait_for_pictures(app)  # waited for once; nothing is pending after that
