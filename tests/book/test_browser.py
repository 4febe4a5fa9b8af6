"""The built site as a reader meets it: every page in a real browser (Debian's chromium).

The site is served on 127.0.0.1 the way the bucket serves it (the content types of
`microscopy_notebook.book.publish`; the build's own files are not there), and Playwright for Python
drives ``/usr/bin/chromium`` (Playwright never downloads a browser of its own: ``nox -s site``
installs Debian's). The machine has no internet, and the site must not need it: any request to
another host is blocked *and* fails the test, so a page that would fetch a font, a script or an
analytics beacon from a CDN is caught.

For every page in the table of contents, in light and in dark mode: no console error, no failed
request, every image loaded, no serious or critical axe-core violation in the page's own content
(the theme's header and sidebars, the same on every page, are checked once, on the front page,
and what axe finds there is reported as a warning at the end of the run), and a full-page
screenshot in ``artifacts/screenshots/``. Then the reader features: search,
the light/dark switch, copy buttons, the download, launch, source and edit buttons.
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urljoin, urlsplit

import pytest
import yaml
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import BrowserContext, Page, Route, sync_playwright

from microscopy_notebook import book
from microscopy_notebook.book import publish
from microscopy_notebook.paths import ROOT
from tests.book.page_outputs import PIXEL_SPREAD_JS

HTML = book.HTML
CHROMIUM = Path("/usr/bin/chromium")
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
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
VIEWPORT = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}  # a phone held upright (an iPhone 12 to 15's CSS pixels)
CONFIG = yaml.safe_load((book.BOOK / "_config.yml").read_text())
CONTENT = "article.bd-article"  # the page's own content; the rest is the theme's
# A gallery of previews, on any page: images in a .gallery block or a sphinx-design grid or card.
GALLERY_IMAGES = ".gallery img, .sd-card img, .sd-container-fluid img"
# Pages whose gallery is a figure a cell draws: there must be one, and it must show something.
GALLERIES = {"notebooks/thumbnail-job": "#the-previews .cell_output img"}
BLOCKING = {"serious", "critical"}


class ThemeAccessibility(UserWarning):
    """An axe-core violation outside the page's own content: in the theme, reported, not fixed."""


def _toc_pages() -> list[str]:
    toc = yaml.safe_load((book.BOOK / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages += [chapter["file"] for chapter in part["chapters"]]
    return pages


def _source(page: str) -> Path:
    for suffix in (".md", ".ipynb"):
        if (book.BOOK / f"{page}{suffix}").exists():
            return book.BOOK / f"{page}{suffix}"
    raise FileNotFoundError(page)


def _is_notebook(page: str) -> bool:
    """A MyST notebook: its front matter names a kernel (myst-nb executes it)."""
    text = _source(page).read_text()
    return text.startswith("---") and "kernelspec:" in text.split("---", 2)[1]


PAGES = _toc_pages()
NOTEBOOKS = [p for p in PAGES if _is_notebook(p)]


# --- the site, served like the bucket ------------------------------------------------------------
class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def guess_type(self, path: str) -> str:
        return publish.content_type(str(path))

    def send_head(self):  # the stdlib's signature
        relative = unquote(urlsplit(self.path).path).lstrip("/")
        if relative and publish.excluded(relative):
            self.send_error(404, "not published")
            return None
        return super().send_head()


@pytest.fixture(scope="module")
def site_url() -> Iterator[str]:
    if not (HTML / "index.html").exists():
        pytest.fail("no built site: run `nox -s docs` (`nox -s site` builds it before its tests)")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(HTML)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --- the browser ---------------------------------------------------------------------------------
@dataclass
class Browser:
    context: BrowserContext
    base: str
    external: list[str] = field(default_factory=list)  # blocked requests to other hosts


@pytest.fixture(scope="module")
def browser(site_url: str) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"no {CHROMIUM}: `nox -s site` installs Debian's chromium (apt-get) first")
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile,  # an empty user-data dir, removed afterwards
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport=VIEWPORT,
        )
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site_url[:-1])
        state = Browser(context, site_url)
        origin = urlsplit(site_url).netloc

        def only_local(route: Route) -> None:
            url = route.request.url
            if urlsplit(url).scheme in ("http", "https") and urlsplit(url).netloc != origin:
                state.external.append(url)
                route.abort("blockedbyclient")
            else:
                route.continue_()

        context.route("**/*", only_local)
        try:
            yield state
        finally:
            context.close()


@dataclass
class Visit:
    page: Page
    errors: list[str] = field(default_factory=list)

    def clean(self) -> None:
        assert not self.errors, "\n".join(self.errors)


def _open(browser: Browser, path: str, dark: bool = False) -> Visit:
    """Open ``path`` of the site, recording console errors, page errors and failed requests."""
    page = browser.context.new_page()
    page.emulate_media(color_scheme="dark" if dark else "light")
    visit = Visit(page)
    page.on(
        "console",
        lambda m: (
            m.type == "error"
            and visit.errors.append(f"console error: {m.text} ({m.location.get('url')})")
        ),
    )
    page.on("pageerror", lambda e: visit.errors.append(f"page error: {e}"))
    page.on(
        "requestfailed", lambda r: visit.errors.append(f"request failed: {r.url} ({r.failure})")
    )
    page.on(
        "response", lambda r: r.status >= 400 and visit.errors.append(f"HTTP {r.status}: {r.url}")
    )
    response = page.goto(urljoin(browser.base, path), wait_until="load")
    assert response is not None and response.status == 200, f"{path}: {response}"
    page.wait_for_load_state("networkidle")
    return visit


def _images(page: Page, selector: str = "img") -> list[dict]:
    """Every image matching ``selector``, made to load even if lazy, with its natural size."""
    return page.evaluate(
        """async (selector) => {
            const images = [...document.querySelectorAll(selector)];
            for (const img of images) img.loading = "eager";
            await Promise.all(images.map((img) => img.decode().catch(() => null)));
            return images.map((img) => {
                const box = img.getBoundingClientRect();
                const spread = (${SPREAD})(img);  // how far from one flat colour
                return {src: img.currentSrc || img.src, natural: img.naturalWidth,
                        width: box.width, height: box.height, spread: spread,
                        hidden: img.closest("[hidden], .only-dark, .only-light") !== null};
            });
        }""".replace("${SPREAD}", PIXEL_SPREAD_JS),
        selector,
    )


AXE = Axe()
# No preload: axe would fetch the stylesheets again itself, resolving their @import against the
# page instead of the stylesheet (a 404 of its own making, which is not the site's).
AXE_OPTIONS = {"resultTypes": ["violations"], "preload": False}


def _axe(page: Page, context: dict) -> list[dict]:
    return AXE.run(page, context=context, options=AXE_OPTIONS).response["violations"]


def _describe(violations: list[dict]) -> str:
    return "\n".join(
        f"  {v['id']} ({v['impact']}): {v['help']}; at "
        + ", ".join(
            " ".join(node["target"]) if isinstance(node["target"], list) else str(node["target"])
            for node in v["nodes"][:4]
        )
        + (" ..." if len(v["nodes"]) > 4 else "")
        for v in violations
    )


def _shot_name(page: str, mode: str) -> Path:
    return SCREENSHOTS / f"{page.replace('/', '-')}-{mode}.png"


# --- every page ----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["light", "dark"])
@pytest.mark.parametrize("page_name", PAGES)
def test_page_works_and_is_accessible(browser: Browser, page_name: str, mode: str) -> None:
    visit = _open(browser, f"{page_name}.html", dark=mode == "dark")
    page = visit.page
    try:
        # The theme follows the reader's system setting ("auto" mode) when they have not chosen.
        assert page.evaluate("document.documentElement.dataset.theme") == mode

        images = _images(page)
        broken = [i["src"] for i in images if i["natural"] == 0]
        assert not broken, f"{page_name}: images that did not load: {broken}"
        # No table of the text sticks out of its column (code blocks and cell outputs, such as
        # a wide data frame, scroll sideways by design).
        too_wide = page.evaluate(
            """(content) => [...document.querySelectorAll(`${content} table`)]
                .filter((t) => !t.closest(".cell_output"))
                .filter((t) => t.getBoundingClientRect().width
                               > document.querySelector(content).clientWidth + 1)
                .map((t) => t.innerText.slice(0, 60))""",
            CONTENT,
        )
        assert not too_wide, f"{page_name}: tables wider than the text column: {too_wide}"

        selector = ", ".join(filter(None, [GALLERY_IMAGES, GALLERIES.get(page_name)]))
        gallery = [i for i in _images(page, selector) if not i["hidden"]]
        if page_name in GALLERIES:
            assert gallery, f"{page_name}: the gallery shows no image"
        for image in gallery:
            assert image["width"] >= 16 and image["height"] >= 16, (
                f"{page_name}: a gallery image is not rendered at a visible size: {image}"
            )
            assert image["spread"] > 2, f"{page_name}: a gallery image is blank: {image}"

        # The whole page in one window, so that the sticky sidebars are drawn as a reader sees
        # them (a full-page capture of a shorter window cuts them off).
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        height = page.evaluate("document.documentElement.scrollHeight")
        page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
        page.screenshot(path=_shot_name(page_name, mode), full_page=True)
        page.set_viewport_size(VIEWPORT)

        ours = _axe(page, {"include": [[CONTENT]]})
        minor = [v for v in ours if v["impact"] not in BLOCKING]
        if minor:
            warnings.warn(
                UserWarning(
                    f"{page_name} ({mode}), minor issues in the content:\n{_describe(minor)}"
                ),
                stacklevel=1,
            )
        blocking = [v for v in ours if v["impact"] in BLOCKING]
        assert not blocking, f"{page_name} ({mode}):\n{_describe(blocking)}"

        visit.clean()
        assert not browser.external, f"requests to other hosts: {browser.external}"
    finally:
        page.close()


@pytest.mark.parametrize("mode", ["light", "dark"])
def test_the_theme_around_the_content_is_checked_once(browser: Browser, mode: str) -> None:
    """The theme's header and sidebars are the same on every page: axe-core checks them on the
    front page, in each mode, and what it finds is reported, not failed (the theme's, not ours)."""
    visit = _open(browser, "intro.html", dark=mode == "dark")
    try:
        theirs = _axe(visit.page, {"exclude": [[CONTENT]]})
        checked = visit.page.locator(".bd-sidebar-primary, .bd-header").count()
        assert checked > 0, "the theme's sidebar and header are not on the page"
        if theirs:
            warnings.warn(
                ThemeAccessibility(
                    f"the theme ({mode}), outside the page's content:\n{_describe(theirs)}"
                ),
                stacklevel=1,
            )
        visit.clean()
    finally:
        visit.page.close()


# What scrolls sideways: scrolled as far right as it goes, how far the page moved; and the
# innermost elements of the article whose box or content reaches past the screen's right edge,
# outside any box that scrolls on its own (a code block, a wide cell output).
_SIDEWAYS_JS = """() => {
    window.scrollTo(100000, window.scrollY);
    const moved = window.scrollX;
    window.scrollTo(0, window.scrollY);
    const width = document.documentElement.clientWidth;
    const scrolls = (e) =>
        ["auto", "scroll", "hidden", "clip"].includes(getComputedStyle(e).overflowX);
    const reach = (e) => {
        const box = e.getBoundingClientRect();
        return Math.max(box.right, scrolls(e) ? box.right : box.left + e.scrollWidth);
    };
    const scrollsItself = (e) => {
        for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
            if (scrolls(a) && a.getBoundingClientRect().right <= width + 1) return true;
        }
        return false;
    };
    const wide = [...document.querySelectorAll("article.bd-article *")]
        .filter((e) => reach(e) > width + 1 && !scrollsItself(e));
    const culprits = wide
        .filter((e) => !wide.some((other) => other !== e && e.contains(other)))
        .slice(0, 6)
        .map((e) => `<${e.tagName.toLowerCase()} class="${e.className}">`
                    + ` ${e.textContent.trim().slice(0, 70)}`);
    return {moved: moved, culprits: culprits};
}"""


def sideways(page: Page) -> dict:
    """How far ``page`` scrolls sideways (0: not at all), and what sticks out."""
    return page.evaluate(_SIDEWAYS_JS)


@pytest.mark.parametrize("page_name", PAGES)
def test_no_page_scrolls_sideways_on_a_phone(browser: Browser, page_name: str) -> None:
    """At a phone's width, a page scrolls only up and down: long commands wrap or scroll in
    their own box, inline code and links break, pictures and tables fit the column."""
    visit = _open(browser, f"{page_name}.html")
    page = visit.page
    try:
        page.set_viewport_size(PHONE)
        page.wait_for_timeout(200)  # the theme lays the page out for the narrow screen
        found = sideways(page)
        assert found["moved"] == 0, (
            f"{page_name} scrolls {found['moved']} px sideways at {PHONE['width']} px; "
            f"sticking out: {found['culprits']}"
        )
        page.screenshot(path=_shot_name(page_name, "phone"), full_page=True)
        visit.clean()
    finally:
        page.close()


def test_a_page_that_scrolls_sideways_is_caught(browser: Browser) -> None:
    """The phone check above, on a real page with one unbreakable line planted in its text."""
    visit = _open(browser, "intro.html")
    page = visit.page
    try:
        page.set_viewport_size(PHONE)
        assert sideways(page)["moved"] == 0
        page.evaluate(
            """() => {
                const p = document.createElement("p");
                p.style.whiteSpace = "nowrap";
                p.textContent = "gcloud storage cp ".repeat(40);
                document.querySelector("article.bd-article section").appendChild(p);
            }"""
        )
        found = sideways(page)
        assert found["moved"] > 0 and any("gcloud storage cp" in c for c in found["culprits"])
    finally:
        page.close()


def test_the_404_page_stands_alone(browser: Browser) -> None:
    visit = _open(browser, "404.html")
    try:
        assert visit.page.locator("h1").inner_text() == "Page not found"
        assert not _axe(visit.page, {}), "the 404 page has accessibility violations"
        home = visit.page.get_by_role("link", name="Go to the guide's front page")
        home.click()
        visit.page.wait_for_url("**/intro.html")  # / serves index.html, which redirects
        visit.clean()
    finally:
        visit.page.close()


# --- reader features -----------------------------------------------------------------------------
def test_search_finds_pages_that_open(browser: Browser) -> None:
    visit = _open(browser, "intro.html")
    page = visit.page
    try:
        # As a reader does: the search button, type, Enter.
        page.locator("button.search-button__button").first.click()
        box = page.locator("#pst-search-dialog input[name=q]")
        box.fill("gcloud storage")
        box.press("Enter")
        page.wait_for_url(re.compile(r"/search\.html\?q=gcloud(\+|%20)storage"))
        results = page.locator("#search-results ul.search li a")
        results.first.wait_for()
        page.wait_for_function(
            "document.querySelector('#search-results p.search-summary')?.textContent"
            ".includes('found')"
        )
        hrefs = results.evaluate_all("links => links.map((a) => a.href)")
        assert any("chapters/cloud-storage.html" in h for h in hrefs), hrefs
        results.first.click()  # a reader's click opens the page
        page.wait_for_url(hrefs[0].split("?")[0] + "*")
        assert page.locator(CONTENT).count() == 1
        for href in hrefs:  # every result opens, on a page with both words
            response = page.goto(href, wait_until="load")
            assert response is not None and response.status == 200, href
            text = page.locator(CONTENT).inner_text().lower()
            assert "gcloud" in text and "storage" in text, href
        visit.clean()
    finally:
        page.close()


def test_the_light_dark_switch(browser: Browser) -> None:
    visit = _open(browser, "chapters/cloud-storage.html")
    page = visit.page
    try:
        switch = page.locator("button.theme-switch-button").first
        seen = set()
        for _ in range(3):  # auto -> dark/light -> ...: the switch cycles the three modes
            switch.click()
            seen.add(page.evaluate("document.documentElement.dataset.theme"))
        assert seen == {"light", "dark"}
        visit.clean()
    finally:
        page.evaluate("localStorage.clear()")  # the next pages follow the system setting again
        page.close()


def test_copy_buttons_copy_the_code(browser: Browser) -> None:
    visit = _open(browser, "chapters/cloud-storage.html")
    page = visit.page
    try:
        blocks = page.locator(f"{CONTENT} div.highlight-bash div.highlight")
        assert blocks.count() > 3
        assert page.locator(f"{CONTENT} div.highlight-bash button.copybtn").count() == (
            blocks.count()
        )
        first = blocks.first
        first.hover()
        first.locator("button.copybtn").click()
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied.strip() == first.locator("pre").inner_text().strip()
        assert copied.startswith("gcloud storage ls")
        visit.clean()
    finally:
        page.close()


def _hrefs(page: Page, selector: str) -> list[str]:
    return page.locator(selector).evaluate_all("links => links.map((a) => a.href)")


@pytest.mark.parametrize("page_name", PAGES)
def test_download_source_and_edit_buttons(browser: Browser, page_name: str) -> None:
    visit = _open(browser, f"{page_name}.html")
    page = visit.page
    repo = CONFIG["repository"]
    source = _source(page_name)
    in_repo = source.relative_to(ROOT).as_posix()
    try:
        downloads = _hrefs(page, ".dropdown-download-buttons a")
        md = [h for h in downloads if h.endswith(f"_sources/{page_name}.md")]
        assert md, downloads
        response = page.request.get(md[0])
        assert response.status == 200
        assert response.headers["content-type"] == "text/markdown; charset=utf-8"
        assert response.body() == source.read_bytes()

        notebook = [h for h in downloads if h.endswith(".ipynb")]
        if page_name in NOTEBOOKS:
            assert notebook == [urljoin(browser.base, f"_sources/{page_name}.ipynb")]
            response = page.request.get(notebook[0])
            assert response.headers["content-type"] == "application/x-ipynb+json"
            nb = json.loads(response.body())
            assert nb["nbformat"] == 4 and nb["metadata"]["kernelspec"]["name"]
            # The notebook to run: the page's code cells, in order (outputs are on the page); a
            # cell tagged remove-input shows only its output (a sentence computed from figures).
            code = [
                "".join(c["source"]).strip()
                for c in nb["cells"]
                if c["cell_type"] == "code" and "remove-input" not in c["metadata"].get("tags", [])
            ]
            shown = page.locator(f"{CONTENT} div.cell_input pre").all_inner_texts()
            assert code and code == [text.strip() for text in shown]
        else:
            assert notebook == []

        edit = f"{repo['url']}/edit/{repo['branch']}/{in_repo}"
        assert edit in _hrefs(page, ".dropdown-source-buttons a"), "no suggest-edit link"
        assert repo["url"] in _hrefs(page, ".dropdown-source-buttons a"), "no repository link"
        visit.clean()
    finally:
        page.close()


@pytest.mark.parametrize("page_name", PAGES)
def test_launch_button_opens_the_notebook_on_the_hub(browser: Browser, page_name: str) -> None:
    visit = _open(browser, f"{page_name}.html")
    page = visit.page
    try:
        launch = _hrefs(page, ".dropdown-launch-buttons a")
        if page_name not in NOTEBOOKS:
            assert launch == [], "a launch button on a page that is not a notebook"
            return
        hub = CONFIG["launch_buttons"]["jupyterhub_url"].rstrip("/")
        assert len(launch) == 1, launch
        url = urlsplit(launch[0])
        assert f"{url.scheme}://{url.netloc}" == hub
        assert url.path == "/hub/user-redirect/git-pull"  # nbgitpuller's entry point
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        repo = CONFIG["repository"]
        clone = repo["url"].rstrip("/").rsplit("/", 1)[1]  # nbgitpuller clones into <repo name>/
        assert query["repo"] == repo["url"]
        assert query["branch"] == repo["branch"]
        interface, path = query["urlpath"].split(f"/{clone}/", 1)
        assert interface == "lab/tree"  # JupyterLab, as _config.yml asks
        assert (ROOT / path).resolve() == _source(page_name)  # the file the reader opens exists
        visit.clean()
    finally:
        page.close()


def test_the_execution_times_page_lists_every_notebook(browser: Browser) -> None:
    visit = _open(browser, "chapters/execution-times.html")
    page = visit.page
    try:
        rows = page.locator(f"{CONTENT} table tbody tr")
        listed = rows.locator("td:first-child").all_inner_texts()
        assert sorted(t.strip() for t in listed) == sorted(NOTEBOOKS)
        for row in rows.all():
            assert row.locator("td").last.inner_text().strip() == "✅"
        rows.first.locator("a").click()
        page.wait_for_load_state("load")
        assert page.url.endswith(f"/{sorted(NOTEBOOKS)[0]}.html")
        visit.clean()
    finally:
        page.close()


@pytest.mark.parametrize("mode", ["light", "dark"])
def test_terminal_colours_in_outputs_are_readable(browser: Browser, mode: str) -> None:
    """Coloured output (a library's yellow WARNING, a red error) meets WCAG AA contrast.

    Today's outputs print no colour, so each ANSI colour is added to a real cell output of a
    notebook page, styled by the site's own stylesheets (book/_static/ansi-colors.css).
    """
    visit = _open(browser, f"{NOTEBOOKS[0]}.html", dark=mode == "dark")
    page = visit.page
    try:
        colours = ["Black", "Red", "Green", "Yellow", "Blue", "Magenta", "Cyan", "White"]
        page.evaluate(
            """(colours) => {
                const pre = document.querySelector(".cell_output div.highlight pre");
                for (const colour of colours) {
                    const span = document.createElement("span");
                    span.className = `-Color -Color-${colour}`;
                    span.textContent = `WARNING ${colour}\\n`;
                    pre.appendChild(span);
                }
            }""",
            colours,
        )
        result = AXE.run(
            page,
            context={"include": [[f"{CONTENT} .cell_output"]]},
            options={
                "runOnly": ["color-contrast"],
                "resultTypes": ["violations"],
                "preload": False,
            },
        )
        assert not result.response["violations"], _describe(result.response["violations"])
        visit.clean()
    finally:
        page.close()
