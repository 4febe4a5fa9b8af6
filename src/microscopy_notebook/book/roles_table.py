"""``roles-table``: the IAM roles one person is granted, on which resource, from what their code is
measured to call.

A Sphinx extension (``book/_config.yml``, like `package_table`). In a MyST page::

    ```{roles-table} job-submitter
    ```

gives one row per grant of that person in ``iam.yaml`` (`microscopy_notebook.cloud.iam`): the
role's name and ID, the resource it is granted on, which of the person's needs there it serves,
and what else it grants and why. The build (``-W``) fails when a need is granted by nothing, when a
grant gives a permission no measured call uses and the grant does not say why, or when a grant
breaks the guide's rules (`iam.problems`): the page can promise neither too little nor too much.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from microscopy_notebook.book import tables
from microscopy_notebook.cloud import iam

IAM = iam.IAM
HEADER = ("Role", "Granted on", "What it grants here")
WIDTHS = (30, 30, 40)
Person = iam.Person
load = iam.load
ungranted = iam.ungranted


def _literals(names: list[str]) -> list[nodes.Node]:
    out: list[nodes.Node] = []
    for i, name in enumerate(names):
        if i:
            out.append(nodes.Text(", "))
        out.append(nodes.literal(text=name))
    return out


class RolesTable(SphinxDirective):
    required_arguments = 1
    option_spec = {"iam": directives.unchanged}  # another iam.yaml, relative to the page

    def run(self) -> list[nodes.Node]:
        path = IAM
        if "iam" in self.options:
            given = Path(self.options["iam"])
            path = (
                given
                if given.is_absolute() and given.exists()
                else Path(self.env.relfn2path(self.options["iam"], self.env.docname)[1])
            )
        self.env.note_dependency(str(path))  # editing it rebuilds the page
        try:
            model = iam.load(path)
        except (OSError, KeyError, TypeError, yaml.YAMLError) as err:
            raise self.error(f"roles-table: cannot read {path}: {err}") from err
        person = model.people.get(self.arguments[0])
        if person is None:
            raise self.error(f"roles-table: no person {self.arguments[0]!r} in {path}")
        problems = iam.problems(model, person)
        if problems:
            raise self.error(f"roles-table {person.name}: " + "; ".join(problems))
        rows = []
        for grant in person.grants:
            role = model.roles[grant.role]
            name = nodes.paragraph(text=role["title"])
            ident = nodes.paragraph()
            ident += nodes.reference("", "", nodes.literal(text=grant.role), refuri=role["source"])
            where = model.resources[grant.at]
            place = nodes.paragraph(text=f"{where['title']} ")
            place += nodes.literal(text=where["example"])
            used = sorted(model.permissions(grant.role) & iam.used_by(person, grant))
            grants = nodes.paragraph()
            grants += _literals(used)
            cells = [nodes.container("", name, ident), place, nodes.container("", grants)]
            if grant.unused:
                note = nodes.paragraph(text="Also: ")
                note += _literals(list(grant.unused))
                note += nodes.Text(f", unused: {grant.why}.")
                cells[2] += note
            elif grant.why:
                cells[2] += nodes.paragraph(text=f"({grant.why}.)")
            rows.append(tables.row(cells))
        table = tables.table(["roles-table"], person.title, HEADER, WIDTHS, rows)
        return [table]


def setup(app: Sphinx) -> dict:
    app.add_directive("roles-table", RolesTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
