"""``roles-table``: the IAM roles one person needs, from what their code is measured to call.

A Sphinx extension (``book/_config.yml``, like `package_table`). In a MyST page::

    ```{roles-table} job-submitter
    ```

gives one row per role listed for that person in ``iam.yaml`` (beside this file): its name, its
ID, and which of the person's needed permissions it grants. The needed permissions are those the
tests recorded the person's code calling (``measured``) and those only Google's side needs
(``platform``). A needed permission that none of the listed roles grants is an error, and the
book build (``-W``) fails: the page cannot promise roles that would not let the code run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import yaml
from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from microscopy_notebook.book import tables

IAM = Path(__file__).with_name("iam.yaml")
HEADER = ("Role", "ID", "What it grants here")
WIDTHS = (24, 34, 42)


@dataclass(frozen=True)
class Person:
    name: str
    title: str
    roles: list[str]
    needs: dict[str, str]  # permission -> why ("measured" or the platform's reason)
    pages: tuple[str, ...] = ()  # the book's pages whose commands this person runs


def load(path: Path = IAM) -> tuple[dict, dict[str, Person]]:
    data = yaml.safe_load(path.read_text())
    people = {}
    for name, entry in data["people"].items():
        needs = {p: "measured" for p in entry.get("measured", [])}
        needs.update(entry.get("platform", {}))
        people[name] = Person(
            name, entry["title"], entry["roles"], needs, tuple(entry.get("pages", ()))
        )
    return data["roles"], people


def ungranted(roles: dict, person: Person) -> list[str]:
    """The person's needed permissions that none of their roles grants (or unknown roles)."""
    problems = [f"{r}: not in the roles snapshot" for r in person.roles if r not in roles]
    granted = {p for r in person.roles if r in roles for p in roles[r]["permissions"]}
    return problems + sorted(p for p in person.needs if p not in granted)


class RolesTable(SphinxDirective):
    required_arguments = 1
    option_spec: ClassVar[dict[str, Callable[[str], object]]] = {
        "iam": directives.unchanged
    }  # another iam.yaml, relative to the page

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
            roles, people = load(path)
        except (OSError, KeyError, TypeError, yaml.YAMLError) as err:
            raise self.error(f"roles-table: cannot read {path}: {err}") from err
        person = people.get(self.arguments[0])
        if person is None:
            raise self.error(f"roles-table: no person {self.arguments[0]!r} in {path}")
        missing = ungranted(roles, person)
        if missing:
            raise self.error(
                f"roles-table {person.name}: needed but granted by none of "
                f"{person.roles}: {', '.join(missing)}"
            )
        rows = []
        for role_id in person.roles:
            role = roles[role_id]
            ident = nodes.paragraph()
            ident += nodes.reference("", "", nodes.literal(text=role_id), refuri=role["source"])
            used = sorted(p for p in role["permissions"] if p in person.needs)
            grants = nodes.paragraph()
            for i, permission in enumerate(used):
                if i:
                    grants += nodes.Text(", ")
                grants += nodes.literal(text=permission)
            rows.append(tables.row([nodes.paragraph(text=role["title"]), ident, grants]))
        table = tables.table(["roles-table"], person.title, HEADER, WIDTHS, rows)
        return [table]


def setup(app: Sphinx) -> dict:
    app.add_directive("roles-table", RolesTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
