"""Docutils table rows for the book's generated tables (`package_table`, `roles_table`)."""

from __future__ import annotations

from docutils import nodes


def row(cells: list[nodes.Node]) -> nodes.row:
    """A table row of one entry per cell."""
    out = nodes.row()
    for cell in cells:
        entry = nodes.entry()
        entry += cell
        out += entry
    return out
