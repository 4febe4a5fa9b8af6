"""The tutorials as readers open them: the launch link, then JupyterLab in a real browser.

A reader presses a notebook page's launch button: the hub sends them to their JupyterLab's
``git-pull`` (nbgitpuller), which clones the repository into their home folder and opens the
tutorial's ``.md``; image/overrides.json makes JupyterLab open it as a notebook (jupytext). Here
the hub's user server is a JupyterLab started by the test (`tests.book.jupyterlab.Lab`) in a
throwaway home, with the image's overrides.json and, for its kernels, the settings of a freshly
seeded storage emulator; the repository is the checkout as it is, served as a bare repository
under the real one's name. Chromium (Debian's, driven by Playwright as in test_browser.py; as
JupyterLab's own UI tests, Galata, do) does the reader's clicks.

The first launch link clones the repository and opens its tutorial, and every page's link is
one nbgitpuller follows to its tutorial. Then, for each tutorial: double-clicking its ``.md`` in
the file browser opens a notebook with every cell and a Python kernel; Run All Cells finishes
with no error shown, every plot and preview image displayed, and nothing written in the home
but what JupyterLab, IPython and the libraries keep there (listed below, each with why). A
screenshot of each finished notebook goes to artifacts/screenshots/jupyterlab/.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jupytext
import nbgitpuller.handlers
import pytest
from bs4 import BeautifulSoup
from playwright.sync_api import Browser, Page, Route, sync_playwright

from microscopy_notebook import book
from microscopy_notebook.cloud.emulator import Emulator
from microscopy_notebook.paths import ARTIFACTS, ROOT
from tests.book import jupyterlab, page_outputs
from tests.book.jupyterlab import REPO_NAME, Files, Lab
from tests.book.test_browser import CHROMIUM, CHROMIUM_ARGS, CONFIG, NOTEBOOKS

pytestmark = pytest.mark.slow  # runs every tutorial, the thumbnail job included

SCREENSHOTS = ARTIFACTS / "screenshots" / "jupyterlab"
BRANCH = CONFIG["repository"]["branch"]
KERNEL = "Python 3 (ipykernel)"  # the kernel the notebooks' kernelspec "python3" names
RUN_TIMEOUT = 120  # seconds for Run All Cells of one tutorial (the thumbnail job: 15 to 30)

# What may appear or change in the home while a tutorial runs, and why; anything else fails.
# The tutorials' own scratch folders are temporary folders (tempfile), outside the home.
ALLOWED = {
    r"\.ipython/.*": "IPython's profile and input history, kept by every kernel",
    r"\.cache/matplotlib/.*": "matplotlib's font cache, built at its first import",
    r"\.hyperspy/hyperspyrc": "HyperSpy writes its settings file at its first import",
    # JupyterLab checkpoints a file when it opens it (File > Revert to Checkpoint).
    rf"{REPO_NAME}/book/notebooks/\.ipynb_checkpoints/[^/]+-checkpoint\.md": "JupyterLab",
    # The thumbnail tutorial runs the job from the repository root, as its page says a reader
    # does in a terminal: the job's plans and logs, and Snakemake's records of its runs.
    rf"{REPO_NAME}/results/thumbnail-job/.*": "the thumbnail job's plans, run records and logs",
    rf"{REPO_NAME}/\.snakemake/.*": "Snakemake's log, locks and metadata",
    # The thumbnail tutorial imports its helper from beside it (book/notebooks/commands.py).
    rf"{REPO_NAME}/book/notebooks/__pycache__/commands\.[^/]+\.pyc": "Python's bytecode cache",
    # Python caches the bytecode of the job's library when Snakemake imports it from the clone.
    rf"{REPO_NAME}/workflow/(scripts/)?(.+/)?__pycache__/[^/]+\.pyc": "Python's bytecode cache",
}


def _allowed(change: str) -> bool:
    return any(re.fullmatch(pattern, change[2:]) for pattern in ALLOWED)


# --- the server, the repository and the browser --------------------------------------------------
@pytest.fixture(scope="module")
def storage() -> Iterator[Emulator]:
    with jupyterlab.seeded_emulator() as emu:
        yield emu


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return jupyterlab.origin(tmp_path_factory.mktemp("origin"), BRANCH)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, storage: Emulator) -> Iterator[Lab]:
    with Lab(tmp_path_factory.mktemp("lab") / "home", storage.env) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"no {CHROMIUM}: `nox -s site` installs Debian's chromium (apt-get) first")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


class Visit:
    """A page of the lab that records console errors and blocks (and records) other hosts."""

    def __init__(self, browser: Browser, lab: Lab) -> None:
        self.page: Page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        self.external: list[str] = []
        origin = urlsplit(lab.url).netloc
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on(
            "console",
            lambda m: m.type == "error" and self.errors.append(f"console error: {m.text}"),
        )

        def only_local(route: Route) -> None:
            if urlsplit(route.request.url).netloc not in (origin, ""):
                self.external.append(route.request.url)
                route.abort("blockedbyclient")
            else:
                route.continue_()

        self.page.route("**/*", only_local)

    def clean(self) -> None:
        assert not self.errors, "\n".join(self.errors)
        assert not self.external, f"JupyterLab asked for other hosts: {self.external}"


def _launch_url(notebook: str) -> str:
    """The href of the launch button on the notebook's built page."""
    html = book.HTML / f"{notebook}.html"
    if not html.exists():
        pytest.fail("no built site: run `nox -s docs` (`nox -s site` builds it before its tests)")
    links = BeautifulSoup(html.read_text(), "html.parser").select(".dropdown-launch-buttons a")
    assert len(links) == 1, f"{notebook}: launch links {links}"
    return links[0]["href"]


def _nbgitpuller_parameters() -> set[str]:
    """The query parameters nbgitpuller's git-pull page reads, from its own handler."""
    source = inspect.getsource(nbgitpuller.handlers.UIHandler.get)
    return set(re.findall(r"get_argument\(\s*['\"](\w+)['\"]", source))


def _launch(visit: Visit, lab: Lab, origin: Path, notebook: str) -> str:
    """Follow the page's launch link as the hub would, to this lab; return the URL it lands on.

    Only `repo` changes: the checkout's bare copy.
    """
    query = {k: v[0] for k, v in parse_qs(urlsplit(_launch_url(notebook)).query).items()}
    query["repo"] = origin.as_uri()
    return jupyterlab.launch(visit.page, lab, query)


@dataclass
class Launched:
    """The reader's first press of a launch button: nbgitpuller's clone, and where it led."""

    clone: Path
    notebook: str
    landed: str  # the URL the browser ended at
    tab: str  # the title of the tab JupyterLab opened there, as a notebook
    errors: list[str]


@pytest.fixture(scope="module")
def launched(lab: Lab, origin: Path, browser: Browser) -> Launched:
    """The repository in the home, where and as nbgitpuller puts it: by following a launch link."""
    path = lab.home / REPO_NAME
    assert not path.exists()
    visit = Visit(browser, lab)
    try:
        landed = _launch(visit, lab, origin, NOTEBOOKS[0])
        tab = _notebook_panel(visit.page)
        errors = visit.errors + [f"other host: {url}" for url in visit.external]
    finally:
        visit.page.close()
        lab.close_sessions()
    return Launched(path, NOTEBOOKS[0], landed, tab, errors)


@pytest.fixture(scope="module")
def clone(launched: Launched) -> Path:
    assert (launched.clone / ".git").is_dir(), f"nbgitpuller made no clone: {launched}"
    return launched.clone


def _notebook_panel(page: Page) -> str:
    """The title of the current tab, once JupyterLab shows a notebook in it."""
    page.locator(jupyterlab.PANEL).wait_for(timeout=60_000)
    title = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel")
    return title.inner_text()


# --- the launch link -----------------------------------------------------------------------------
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_the_launch_link_is_one_nbgitpuller_follows(clone: Path, notebook: str) -> None:
    query = parse_qs(urlsplit(_launch_url(notebook)).query)
    # Every parameter is one nbgitpuller reads, once; it needs no other.
    assert set(query) <= _nbgitpuller_parameters(), set(query) - _nbgitpuller_parameters()
    assert all(len(values) == 1 for values in query.values()), query
    assert {"repo", "branch", "urlpath"} <= set(query)
    # nbgitpuller clones into the last part of the repository's URL (its `targetpath` default),
    # and the page's urlpath must point into that folder, at this page's tutorial.
    assert query["repo"][0].rstrip("/").rsplit("/", 1)[1] == REPO_NAME
    assert query["branch"][0] == BRANCH
    assert query["urlpath"][0] == f"lab/tree/{REPO_NAME}/book/{notebook}.md"
    assert (clone.parent / query["urlpath"][0].removeprefix("lab/tree/")).is_file()


def test_the_launch_link_clones_the_repository_and_opens_the_tutorial(
    launched: Launched, origin: Path
) -> None:
    """The first launch (the `launched` fixture): nbgitpuller clones, JupyterLab opens the file."""
    path = urlsplit(launched.landed).path
    assert path == f"/lab/tree/{REPO_NAME}/book/{launched.notebook}.md", launched.landed
    assert launched.tab == f"{Path(launched.notebook).name}.md"  # opened, as a notebook
    assert not launched.errors, launched.errors
    head = jupyterlab._git("rev-parse", "HEAD", cwd=launched.clone)
    assert head == jupyterlab._git("rev-parse", BRANCH, cwd=origin)  # the branch it names
    source = f"book/{launched.notebook}.md"
    assert (launched.clone / source).read_bytes() == (ROOT / source).read_bytes()


# --- every tutorial, run in JupyterLab -----------------------------------------------------------
def _open_and_run(visit: Visit, lab: Lab, relative: str) -> dict:
    """Open ``relative`` by double-clicks in a fresh workspace, check it is a notebook, run it."""
    page = visit.page
    # A workspace of its own, reset: no tab of an earlier test is restored.
    page.goto(lab.link(f"lab/workspaces/{re.sub(r'[^a-z0-9]+', '-', relative)}?reset"))
    jupyterlab.open_path(page, relative)
    assert _notebook_panel(page) == Path(relative).name
    # The kernel is up, and the page knows it: Run All before that asks which kernel to start.
    lab.wait_for_kernel(relative, page)
    page.locator(".jp-StatusBar-TextItem", has_text=f"{KERNEL} | Idle").wait_for(timeout=60_000)
    opened = jupyterlab.outputs(page)
    jupyterlab.run_all(page, RUN_TIMEOUT)
    return {"opened": opened, "ran": jupyterlab.outputs(page)}


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_the_tutorial_runs_in_jupyterlab(
    lab: Lab, clone: Path, browser: Browser, notebook: str
) -> None:
    source = clone / "book" / f"{notebook}.md"
    expected = jupytext.read(source)
    code_cells = sum(cell.cell_type == "code" for cell in expected.cells)
    images = page_outputs.images(page_outputs.shown(notebook))  # the page's plots and galleries
    before = Files.of(lab.home)
    visit = Visit(browser, lab)
    try:
        shown = _open_and_run(visit, lab, source.relative_to(lab.home).as_posix())
        opened = shown["opened"]
        assert opened["kernel"] == KERNEL, opened
        assert (opened["cells"], opened["code"]) == (len(expected.cells), code_cells), opened
        assert not opened["emptyLinks"], f"links that show no text here: {opened['emptyLinks']}"

        ran = shown["ran"]
        assert not ran["errors"], "\n\n".join(ran["errors"])
        # Every plot and preview gallery the page shows is displayed here too, and not blank.
        assert len(ran["images"]) == images, ran["images"]
        for image in ran["images"]:
            assert image["natural"] > 0, f"an image did not load: {image}"
            assert image["width"] >= 100 and image["height"] >= 100, image
            assert image["spread"] > 2, f"a blank image: {image}"
        visit.clean()
    finally:
        # The notebook as it ended, passed or not: an artifact for people to look at.
        if visit.page.locator(jupyterlab.PANEL).count():
            jupyterlab.screenshot(visit.page, SCREENSHOTS / f"{Path(notebook).name}.png")
        visit.page.close()
        lab.close_sessions()

    written = [c for c in Files.of(lab.home).changed_since(before) if not _allowed(c)]
    assert not written, f"{notebook} wrote in the reader's home:\n" + "\n".join(written)


# --- the checks above can fail -------------------------------------------------------------------
PLANTED = """\
---
jupytext:
  text_representation: {extension: .md, format_name: myst}
kernelspec: {display_name: Python 3, language: python, name: python3}
---

# Planted

```{code-cell} ipython3
print("before")
```

```{code-cell} ipython3
1 / 0
```
"""


def test_a_cell_error_is_seen(lab: Lab, browser: Browser) -> None:
    """A notebook with a failing cell: the error is found as the tutorials' check looks for it."""
    folder = lab.home / "planted"
    folder.mkdir(exist_ok=True)
    (folder / "planted.md").write_text(PLANTED)
    visit = Visit(browser, lab)
    try:
        ran = _open_and_run(visit, lab, "planted/planted.md")["ran"]
        assert len(ran["errors"]) == 1 and "ZeroDivisionError" in ran["errors"][0], ran
    finally:
        visit.page.close()
        lab.close_sessions()


def test_a_write_in_the_reader_s_folders_is_seen(tmp_path: Path) -> None:
    """The home's before/after comparison with the allowances the tutorials get."""
    home = tmp_path / "home"
    notebooks = home / REPO_NAME / "book" / "notebooks"
    notebooks.mkdir(parents=True)
    (notebooks / "scaling.md").write_text("as cloned\n")
    before = Files.of(home)
    (home / ".ipython" / "profile_default").mkdir(parents=True)
    (home / ".ipython" / "profile_default" / "history.sqlite").write_bytes(b"kept by IPython")
    (notebooks / "preview.png").write_bytes(b"a figure saved beside the tutorial")
    (notebooks / "scaling.md").write_text("changed by a cell\n")
    (home / "results.csv").write_text("a file in the home\n")
    written = [c for c in Files.of(home).changed_since(before) if not _allowed(c)]
    assert written == [
        f"+ {REPO_NAME}/book/notebooks/preview.png",
        f"~ {REPO_NAME}/book/notebooks/scaling.md",
        "+ results.csv",
    ]


def test_without_the_image_settings_a_tutorial_opens_as_text(
    tmp_path: Path, storage: Emulator, clone: Path, browser: Browser
) -> None:
    """What overrides.json is for: without it, double-clicking a .md opens the text editor."""
    home = tmp_path / "home"
    home.mkdir()
    jupyterlab._git("clone", "--quiet", "--shared", str(clone), str(home / REPO_NAME))
    with Lab(home, storage.env, overrides=None) as bare:
        visit = Visit(browser, bare)
        try:
            visit.page.goto(bare.link("lab/workspaces/plain?reset"))
            jupyterlab.open_path(visit.page, f"{REPO_NAME}/book/{NOTEBOOKS[0]}.md")
            visit.page.locator(".jp-FileEditor, .jp-MarkdownViewer").first.wait_for()
            assert visit.page.locator(".jp-NotebookPanel").count() == 0
        finally:
            visit.page.close()
            bare.close_sessions()
