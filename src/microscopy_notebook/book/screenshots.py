"""``{screenshot}``: pictures of the reader's JupyterLab, taken by the build, never committed.

A Sphinx extension (``book/_config.yml``). In a MyST page::

    ```{screenshot} terminal
    :alt: A JupyterLab terminal that listed the example bucket
    The caption.
    ```

shows the picture ``terminal`` as a figure. The pictures are taken when the book is built, in the
JupyterLab a reader gets (`microscopy_notebook.book.lab`: the image's settings, the repository as
the launch button clones it, the storage emulator behind the CLIs and the kernel), driven in
Chromium through the UI only, as JupyterLab's own documentation screenshots are made by its UI
tests (Galata). So a picture shows what the reader will see with this guide's current files, and
is never stale.

Each picture waits for what it is meant to show (the listing a command printed, the sign-in
prompt, the cloned tutorial in the file browser) and the build fails if that never appears. They
are taken again whenever what they depend on changed (`inputs_key`), and always on a clean build
(``nox -s publish``, CI); they live in ``book/_build/screenshots/``, beside the site.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import yaml
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.directives.patches import Figure
from sphinx.errors import ExtensionError
from sphinx.util import logging

from microscopy_notebook.book import BOOK, lab, storage
from microscopy_notebook.paths import IMAGE

logger = logging.getLogger(__name__)

FOLDER = Path("_build") / "screenshots"  # in the book's folder: book/_build/screenshots
CHROMIUM = Path("/usr/bin/chromium")  # Debian's: Playwright never downloads a browser here
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# A laptop's window: large enough for JupyterLab's layout, small enough to read on a phone.
VIEWPORT = {"width": 1100, "height": 640}
TUTORIAL = "notebooks/cloud-storage"  # the tutorial the launch pictures open and run
DATA = "gs://nexuslims_example-datafiles/MockDataFiles/"
RUN_TIMEOUT = 120  # seconds for Run All Cells of the tutorial
# The prompt of the pictures' terminal: the folder, as the image's prompt ends, without the build
# machine's user and host name.
PROMPT = r"\w$ "


@dataclass(frozen=True)
class Shot:
    name: str
    what: str  # what it shows, for the page's alternative text when the page gives none


SHOTS = (
    Shot("launcher", "JupyterLab as it opens: the file browser and the Launcher"),
    Shot("terminal", "a JupyterLab terminal that listed the example bucket"),
    Shot("sign-in", "the terminal after gcloud auth login --no-launch-browser, waiting for a code"),
    Shot("launched", "JupyterLab after the launch button: the tutorial open beside its folder"),
    Shot("first-result", "the tutorial's first result: the objects its cell listed"),
)
NAMES = {shot.name for shot in SHOTS}


def path(name: str, book: Path = BOOK) -> Path:
    """Where the build keeps the picture ``name`` of the book in ``book``."""
    return book / FOLDER / f"{name}.png"


# --- when to take them again ---------------------------------------------------------------------
def inputs_key(book: Path = BOOK) -> str:
    """What the pictures depend on: this module and the lab's, the image's JupyterLab settings,
    the tutorial they run, the folder the file browser shows, and JupyterLab's version."""
    digest = hashlib.sha256()
    for file in (
        Path(__file__),
        Path(lab.__file__),
        IMAGE / "overrides.json",
        book / f"{TUTORIAL}.md",
        book / "_config.yml",
    ):
        digest.update(file.read_bytes() + b"\0")
    for file in sorted((book / TUTORIAL).parent.iterdir()):
        if not file.name.startswith("."):  # as the file browser shows it; not .snakemake/
            digest.update(file.name.encode() + b"\0")
    digest.update(metadata.version("jupyterlab").encode())
    return digest.hexdigest()


def stale(book: Path = BOOK) -> bool:
    key = book / FOLDER / "inputs-key.txt"
    return not (
        key.exists()
        and key.read_text() == inputs_key(book)
        and all(path(name, book).exists() for name in NAMES)
    )


# --- taking them ---------------------------------------------------------------------------------
def launch_query(config: dict, notebook: str, repo: str) -> dict[str, str]:
    """The query of a notebook page's launch button (nbgitpuller's), as the theme writes it from
    ``_config.yml``, with the repository at ``repo``."""
    repository = config["repository"]
    clone = urlsplit(repository["url"]).path.rstrip("/").rsplit("/", 1)[1]
    book = repository.get("path_to_book", "book")
    interface = {"jupyterlab": "lab/tree", "classic": "tree"}[
        config["launch_buttons"].get("notebook_interface", "classic")
    ]
    return {
        "repo": repo,
        "urlpath": f"{interface}/{clone}/{book}/{notebook}.md",
        "branch": repository["branch"],
    }


@contextmanager
def _browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        raise ExtensionError(
            f"the screenshots need Debian's chromium at {CHROMIUM}: `nox -s docs` installs it "
            "(apt-get, as root), or install it yourself (apt-get install chromium)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


def _page(browser, server: lab.Lab):
    """A page that lets no request leave the lab: a picture must not need the internet."""
    page = browser.new_page(viewport=VIEWPORT)
    local = urlsplit(server.url).netloc
    page.route(
        "**/*",
        lambda route: (
            route.continue_()
            if urlsplit(route.request.url).netloc in (local, "")
            else route.abort("blockedbyclient")
        ),
    )
    return page


def _menu(page, *labels: str) -> None:
    """Click through the menu bar: ``_menu(page, "File", "New", "Terminal")``."""
    page.locator(f'.lm-MenuBar-itemLabel:text-is("{labels[0]}")').click()
    for label in labels[1:]:
        page.locator(f'.lm-Menu:visible .lm-Menu-itemLabel:text-is("{label}")').last.click()


# The text of the current tab's terminal, line by line, from its xterm.js buffer (the terminal
# draws on a canvas, so the page has no text to read).
_TERMINAL_TEXT_JS = """() => {
    const term = window.jupyterapp.shell.currentWidget?.content?._term;
    if (!term) return null;
    const buffer = term.buffer.active;
    const lines = [];
    for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
    return lines.join("\\n").trimEnd();
}"""


def _wait_for_terminal(page, pattern: str, timeout: float = 60) -> None:
    """Until the current tab's terminal shows ``pattern`` (a regular expression) at its end."""
    page.wait_for_function(
        f"""(pattern) => {{
            const text = ({_TERMINAL_TEXT_JS})();
            return text !== null && new RegExp(pattern).test(text);
        }}""",
        arg=pattern,
        timeout=timeout * 1000,
        polling=250,
    )


def _type(page, command: str) -> None:
    page.locator(".jp-Terminal:visible .xterm-screen").click()  # as a reader does, to type
    page.keyboard.type(command)
    page.keyboard.press("Enter")


def take(folder: Path = BOOK / FOLDER, book: Path = BOOK) -> dict[str, Path]:
    """Take every picture of `SHOTS` into ``folder``, with the storage settings of this process
    (the build runs with the emulator's). Raises if a picture's subject never appears, leaving
    what the window showed then in ``folder/failed.png``."""
    config = yaml.safe_load((book / "_config.yml").read_text())
    folder.mkdir(parents=True, exist_ok=True)
    taken: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp:
        origin = lab.origin(Path(tmp) / "origin", config["repository"]["branch"])
        home = Path(tmp) / "home"
        home.mkdir()
        # The pictures' prompt: a terminal runs a login shell, which reads ~/.bash_profile.
        (home / ".bash_profile").write_text(f"PS1='{PROMPT}'\n")
        with lab.Lab(home, {}) as server, _browser() as browser:
            pages = []
            try:
                pages.append(_page(browser, server))
                _terminal_shots(pages[-1], server, folder, taken)
                pages.append(_page(browser, server))
                query = launch_query(config, TUTORIAL, origin.as_uri())
                _tutorial_shots(pages[-1], server, query, folder, taken)
            except Exception as error:
                if pages and not pages[-1].is_closed():
                    pages[-1].screenshot(path=folder / "failed.png")
                raise ExtensionError(
                    f"screenshot {len(taken) + 1} of {len(SHOTS)} ({SHOTS[len(taken)].name}): "
                    f"{error}\nthe window then: {folder / 'failed.png'}\nthe lab's log:\n"
                    + server.log()
                ) from error
            finally:
                server.close_sessions()
    return taken


def _terminal_shots(page, server: lab.Lab, folder: Path, taken: dict[str, Path]) -> None:
    page.goto(server.link("lab/workspaces/screenshots?reset"))
    page.locator(".jp-LauncherCard", has_text="Terminal").wait_for(timeout=60_000)
    taken["launcher"] = _shoot(page, folder, "launcher")

    _menu(page, "File", "New", "Terminal")
    _wait_for_terminal(page, r"\$\s*$")
    _type(page, f"gcloud storage ls {DATA}")
    _wait_for_terminal(page, re.escape(f"{DATA}tia/") + r"\s+\S*\$\s*$")
    # The terminal's tab alone: its text stays legible on a phone's screen.
    taken["terminal"] = _shoot(page.locator("#jp-main-dock-panel"), folder, "terminal")

    _type(page, "clear")
    _wait_for_terminal(page, r"^\S*\$\s*$")  # only the prompt is left
    _type(page, "gcloud auth login --no-launch-browser")
    _wait_for_terminal(page, r"enter the verification code provided in your browser:\s*$")
    taken["sign-in"] = _shoot(page.locator("#jp-main-dock-panel"), folder, "sign-in")
    page.keyboard.press("Control+C")  # no code: the sign-in stops, nothing is saved
    page.close()


def _tutorial_shots(
    page, server: lab.Lab, query: dict[str, str], folder: Path, taken: dict[str, Path]
) -> None:
    lab.launch(page, server, query)
    notebook = Path(TUTORIAL).name + ".md"
    page.locator(lab.PANEL).wait_for(timeout=60_000)
    page.locator(".jp-DirListing-item .jp-DirListing-itemText", has_text=notebook).wait_for()
    page.locator(".jp-BreadCrumbs", has_text="notebooks").wait_for()
    taken["launched"] = _shoot(page, folder, "launched")

    lab.run_all(page, RUN_TIMEOUT)
    cell = page.locator(f"{lab.PANEL} .jp-CodeCell", has_text="list_blobs").first
    cell.scroll_into_view_if_needed()
    cell.locator(".jp-OutputArea-output", has_text=DATA.split("/", 3)[3]).wait_for()
    taken["first-result"] = _shoot(cell, folder, "first-result")
    page.close()


def _shoot(target, folder: Path, name: str) -> Path:
    """A picture of a page (the window) or of one element of it."""
    out = folder / f"{name}.png"
    target.screenshot(path=out, animations="disabled", caret="hide")
    return out


# --- the directive -------------------------------------------------------------------------------
class Screenshot(Figure):
    """``{screenshot} NAME``: the picture NAME, with the figure's options and caption."""

    option_spec: ClassVar[dict[str, Callable[[str], object]]] = {
        **Figure.option_spec,
        "alt": directives.unchanged,
    }

    def run(self):
        _wait_for_pictures(self.state.document.settings.env.app)
        name = self.arguments[0]
        if name not in NAMES:
            raise self.error(f"no screenshot {name!r}: the build takes {sorted(NAMES)}")
        what = next(shot.what for shot in SHOTS if shot.name == name)
        self.options.setdefault("alt", what)
        self.options.setdefault("figclass", []).append("screenshot")
        # Scaled to the column, so Sphinx links it to the full picture: a tap on a phone enlarges.
        self.options.setdefault("width", "100%")
        # Relative to the book's folder ("/..."): Sphinx copies it into the site's _images/.
        self.arguments = [f"/{(FOLDER / f'{name}.png').as_posix()}"]
        return super().run()


def _take_if_stale(app: Sphinx) -> None:
    """Before any page is read: start taking the pictures again if they are stale and a page
    shows one (a test's small book shows none, and takes none). They are taken in a thread of
    their own while the pages are read (half a minute of JupyterLab and Chromium, mostly waiting),
    and waited for by the first page that shows one, or when every page has been read."""
    book = Path(app.srcdir)
    pages = book.rglob("*.md")
    if not any("{screenshot}" in page.read_text() for page in pages if "_build" not in page.parts):
        return
    if not stale(book):
        return
    logger.info("taking the screenshots of the reader's JupyterLab, while the pages are read ...")
    storage.ensure("the screenshots")  # the reader's JupyterLab reaches the example buckets
    shutil.rmtree(book / FOLDER, ignore_errors=True)
    failed: list[BaseException] = []

    def work() -> None:
        try:
            take(book / FOLDER, book)
            (book / FOLDER / "inputs-key.txt").write_text(inputs_key(book))
        except Exception as error:  # noqa: BLE001 - raised again where the build waits for it
            failed.append(error)

    thread = threading.Thread(target=work, name="screenshots", daemon=True)
    thread.start()
    app.screenshots_pending = (thread, failed)


def _wait_for_pictures(app: Sphinx, *_args) -> None:
    """Wait until the pictures are taken, if they are being taken; fail as `take` failed."""
    pending = getattr(app, "screenshots_pending", None)
    if pending is None:
        return
    thread, failed = pending
    thread.join()
    app.screenshots_pending = None
    if failed:
        raise failed[0]


def setup(app: Sphinx) -> dict:
    app.add_directive("screenshot", Screenshot)
    app.connect("builder-inited", _take_if_stale)
    app.connect("env-updated", _wait_for_pictures)  # before the site's images are copied
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
