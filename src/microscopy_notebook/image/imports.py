"""What Python code imports, read without running it: the book's notebooks and the job's code.

The image must provide every import of the notebooks (MyST ``{code-cell}`` blocks) and of the
thumbnail job (workflow/scripts); `unprovided` names what neither the standard library, the code's
own modules nor the image's package list covers.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable
from pathlib import Path

# A MyST code cell: a fence of three or more backticks opening with {code-cell}, closed by the same.
CODE_CELL = re.compile(r"^(`{3,})\{code-cell\}[^\n]*\n(.*?)^\1[ \t]*$", re.M | re.S)
CELL_OPTION = re.compile(r"^:\w[\w-]*:")  # :tags: [hide-input] and the like


def code_cells(markdown: str) -> list[str]:
    """The Python of every ``{code-cell}`` of a MyST page: options dropped, line magics and shell
    escapes made ``pass``, cells that are a cell magic (``%%bash``) left out."""
    cells = []
    for match in CODE_CELL.finditer(markdown):
        body = match[2]
        if body.startswith("---\n"):  # a YAML block of cell options
            body = body.split("\n---\n", 1)[1]
        lines = body.splitlines()
        while lines and CELL_OPTION.match(lines[0]):
            lines.pop(0)
        if lines and lines[0].startswith("%%"):
            continue  # a cell magic: not Python
        cells.append(
            "\n".join("pass" if line.lstrip().startswith(("%", "!")) else line for line in lines)
        )
    return cells


def imports(code: str) -> list[str]:
    """Every absolute import of ``code`` as a dotted name (``from a import b`` gives ``a.b``)."""
    found = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def local_names(folder: Path) -> set[str]:
    """What code in ``folder`` imports from itself: its modules and its packages."""
    return {p.stem for p in folder.glob("*.py")} | {
        p.name for p in folder.iterdir() if (p / "__init__.py").exists()
    }


def unprovided(names: Iterable[str], local: set[str], modules: Iterable[str]) -> list[str]:
    """The ``names`` that neither the standard library, the ``local`` top-level names nor one of
    ``modules`` (a module or any module inside it) provides, in order."""
    modules = set(modules)
    missing = []
    for name in names:
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top in local:
            continue
        if not any(name == m or name.startswith(m + ".") for m in modules):
            missing.append(name)
    return missing
