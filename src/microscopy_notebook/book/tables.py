"""Docutils tables for the book's generated tables (`package_table`, `roles_table`)."""

from __future__ import annotations

from collections.abc import Sequence

from docutils import nodes


def row(cells: list[nodes.Node]) -> nodes.row:
    """A table row of one entry per cell."""
    out = nodes.row()
    for cell in cells:
        entry = nodes.entry()
        entry += cell
        out += entry
    return out


def table(
    classes: list[str],
    title: str | None,
    header: Sequence[str],
    widths: Sequence[int],
    rows: list[nodes.row],
) -> nodes.table:
    """A table with an optional title, a header row of ``header``, and ``rows``."""
    out = nodes.table(classes=classes)
    if title:
        out += nodes.title(text=title)
    group = nodes.tgroup(cols=len(header))
    out += group
    for width in widths:
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    head += row([nodes.paragraph(text=text) for text in header])
    group += head
    body = nodes.tbody()
    for each in rows:
        body += each
    group += body
    return out
