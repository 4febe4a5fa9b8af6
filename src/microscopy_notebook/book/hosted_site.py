"""What the hosted site needs beyond the theme: a Sphinx extension, in ``book/_config.yml``.

Registered as ``sphinx: extra_extensions: [microscopy_notebook.book.hosted_site]`` (installed
in every book build, see `package_table`). Found by the browser tests
(tests/book/test_browser.py), each is a problem a reader would meet on every page:

* **404.html** at the site's root, for a bucket served as a website (chapters/publishing.md). It
  stands alone (no stylesheet or script of the site): Cloud Storage serves it for any missing
  address, at any depth, where the site's relative links would not resolve.
* **"Open an issue" lands on a form.** The theme's button opens a blank issue; it opens the
  repository's issue form for the guide instead (``.github/ISSUE_TEMPLATE/guide.yml``), with the
  page filled in.
* **Each inline script once.** Sphinx 7 (the series Jupyter Book 1 requires) writes an inline
  script twice when an extension adds it after the builder started, as sphinx-thebe does; the
  second ``const THEBE_JS_URL`` is a SyntaxError in every page's console. Fixed in Sphinx 8.2
  (sphinx-doc/sphinx#13402); until then, duplicates are dropped from each page.
"""

from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import urlencode

from sphinx.application import Sphinx

NOT_FOUND = """<!DOCTYPE html>
<html lang="{language}">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="color-scheme" content="light dark">
  <title>Page not found · {title}</title>
  <style>
    body {{ font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto;
           padding: 0 1rem; line-height: 1.5; }}
    a {{ color: LinkText; }}
  </style>
</head>
<body>
  <main>
    <h1>Page not found</h1>
    <p>This address is not a page of the guide &ldquo;{title}&rdquo;. It may have moved when
      the guide was reorganised.</p>
    <p><a href="/">Go to the guide's front page</a> and use its search.</p>
  </main>
</body>
</html>
"""


def _each_script_once(
    app: Sphinx, pagename: str, templatename: str, context: dict, doctree
) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = (
            str(getattr(script, "filename", script) or ""),
            tuple(sorted(getattr(script, "attributes", {}).items())),
        )
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique  # the builder restores its own list after each page


ISSUE_FORM = "guide.yml"  # in .github/ISSUE_TEMPLATE/; its `page` field takes the page's path
ISSUES_BUTTON = "source-issues-button"  # the theme's label for its button


def _buttons(buttons: list[dict]):
    for button in buttons:
        yield button
        yield from _buttons(button.get("buttons", []))


def _issue_form(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    for button in _buttons(context.get("header_buttons", [])):
        if button.get("label") == ISSUES_BUTTON and "/issues/new" in button.get("url", ""):
            repository = button["url"].split("/issues/new", 1)[0]
            query = {"template": ISSUE_FORM, "page": f"/{pagename}.html"}
            button["url"] = f"{repository}/issues/new?{urlencode(query)}"


def _not_found_page(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.name not in ("html", "dirhtml"):
        return
    title = html.escape(str(app.config.html_title or app.config.project))
    language = html.escape(app.config.language or "en")
    page = NOT_FOUND.format(title=title, language=language)
    (Path(app.outdir) / "404.html").write_text(page, encoding="utf-8")


def setup(app: Sphinx) -> dict:
    app.connect("html-page-context", _each_script_once, priority=900)  # after every other
    app.connect("html-page-context", _issue_form, priority=600)  # after the theme's buttons
    app.connect("build-finished", _not_found_page)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
