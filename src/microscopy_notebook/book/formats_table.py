"""``formats-table``: the thumbnail job's table of formats (``thumbnails.formats.FORMATS``) in the
book, with the job's own preview of a sample of each, made when the book is built.

A Sphinx extension, registered in ``book/_config.yml`` like `package_table`. In a MyST page::

    ```{formats-table}
    :caption: The files the job previews
    ```

gives one row per format of the table: its name and extensions, what such files hold, the file
read beside it, where its sample comes from (``microscopy_notebook.format_samples``), and the
preview ``thumbnails.preview.make_preview`` makes of that sample, with what it says it drew. A
format added to the table without a sample fails the build. The previews are written under the
book's ``_build/formats/`` (never committed), from where Sphinx copies them with the page.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Iterator
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from microscopy_notebook import format_samples
from microscopy_notebook.book import tables

HEADER = ("Format", "The job's preview of a sample")
WIDTHS = (55, 45)
PREVIEWS = "_build/formats"  # under the book's folder: Sphinx copies images from there
PREVIEW_WIDTH = "180px"


class FormatsTable(SphinxDirective):
    option_spec = {"caption": directives.unchanged, "name": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        from thumbnails import formats, preview

        for module in (formats, format_samples):  # editing the table rebuilds this page
            self.env.note_dependency(inspect.getfile(module))
        shown = format_samples.preview_samples()
        missing = [f.name for f in formats.FORMATS if f.extensions[0] not in shown]
        if missing:
            raise self.error(f"formats-table: no sample for {', '.join(missing)}")
        root = format_samples.files()
        out = Path(self.env.srcdir) / PREVIEWS
        out.mkdir(parents=True, exist_ok=True)

        rows = []
        for fmt in formats.FORMATS:
            sample = format_samples.BY_NAME[shown[fmt.extensions[0]]]
            with _quiet("rsciio"):  # readers log notes about their files (the job's, not ours)
                made = preview.make_preview(root / sample.name, sample.name)
            if not made.ok:
                raise self.error(f"formats-table: {sample.name}: {made.error}")
            png = out / f"{fmt.extensions[0].lstrip('.')}.png"
            if not png.exists() or png.read_bytes() != made.png:
                png.write_bytes(made.png)
            rows.append(tables.row([self._describe(fmt, sample), self._preview(png, made)]))
        table = tables.table(["formats-table"], self.options.get("caption"), HEADER, WIDTHS, rows)
        self.add_name(table)
        return [table]

    def _describe(self, fmt, sample: format_samples.FormatSample) -> nodes.Element:
        cell = nodes.container()
        title = nodes.paragraph()
        title += nodes.strong(text=fmt.name)
        title += nodes.Text(": ")
        for i, ext in enumerate(fmt.extensions):
            title += nodes.Text(", " if i else "")
            title += nodes.literal(text=ext)
        cell += title
        cell += nodes.paragraph(text=fmt.holds[0].upper() + fmt.holds[1:] + ".")
        if fmt.companion:
            cell += nodes.paragraph(text=f"Read with {fmt.companion}.")
        reader = nodes.paragraph(text="Read by ")
        if fmt.reader == "pillow":
            reader += nodes.Text("Pillow.")
        else:
            reader += nodes.Text("RosettaSciIO's ")
            reader += nodes.literal(text=fmt.reader)
            reader += nodes.Text(" reader.")
        cell += reader
        where = nodes.paragraph(text="Sample: ")
        where += nodes.literal(text=Path(sample.name).name)
        where += nodes.Text(f", {sample.source}.")
        cell += where
        return cell

    def _preview(self, png: Path, made) -> nodes.Element:
        cell = nodes.container()
        uri = "/" + png.relative_to(self.env.srcdir).as_posix()  # "/": from the book's folder
        image = nodes.image(uri=uri, alt=f"The job's preview: {made.shown}", width=PREVIEW_WIDTH)
        cell += image
        cell += nodes.paragraph(text=made.shown)
        return cell


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("formats-table", FormatsTable)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
