"""``package-table``: the image's package list (image/packages.txt) as a table in the book.

A Sphinx extension, registered in ``book/_config.yml`` as ``sphinx: extra_extensions:
[microscopy_notebook.book.package_table]``. It lives here rather than in ``book/_ext`` because
every book build has this package installed (nox), while the tests that build throwaway books
from a copy of ``_config.yml`` have no ``book/_ext`` next to it. In a MyST page::

    ```{package-table}
    :caption: What the image installs
    ```

gives one row per package: its conda name (and channel, where it is not conda-forge), its version
spec, and what it is for, all read from the list when the book is built, so the book cannot show
a list the image does not install. An argument names another list, relative to the page.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from microscopy_notebook.book import tables
from microscopy_notebook.image import packages

HEADER = ("Package", "Version", "What it is for")
WIDTHS = (28, 16, 56)


class PackageTable(SphinxDirective):
    optional_arguments = 1
    option_spec: ClassVar[dict[str, Callable[[str], object]]] = {
        "caption": directives.unchanged,
        "name": directives.unchanged,
    }

    def run(self) -> list[nodes.Node]:
        if self.arguments:
            _, path = self.env.relfn2path(self.arguments[0], self.env.docname)
            path = Path(path)
        else:
            path = packages.PACKAGE_LIST
        self.env.note_dependency(str(path))  # editing the list rebuilds this page
        try:
            listed = packages.load(path)
        except (OSError, ValueError) as err:
            raise self.error(f"package-table: cannot read {path}: {err}") from err

        rows = []
        for package in listed:
            name = nodes.paragraph()
            name += nodes.literal(text=package.name)
            if package.channel != "conda-forge":
                name += nodes.Text(f" ({package.channel})")
            version = nodes.paragraph()
            version += nodes.literal(text=package.spec) if package.spec else nodes.Text("any")
            rows.append(tables.row([name, version, nodes.paragraph(text=package.purpose)]))
        table = tables.table(["package-table"], self.options.get("caption"), HEADER, WIDTHS, rows)
        self.add_name(table)
        return [table]


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("package-table", PackageTable)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
