"""The image provides what the book's notebooks and the thumbnail job import; and the scanner
(microscopy_notebook.image.imports) this stands on, tested on its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from microscopy_notebook.image import imports
from microscopy_notebook.paths import BOOK, ROOT, WORKFLOW
from tests.image.spec import LISTED

SCRIPTS = WORKFLOW / "scripts"  # rule entry points, and the job's library package beside them
# Every notebook, and every module of the job at any depth (its library is a package).
SOURCES = sorted((BOOK / "notebooks").glob("*.md")) + sorted(SCRIPTS.rglob("*.py"))
MODULES = {p.module for p in LISTED}


@pytest.mark.parametrize("source", SOURCES, ids=[str(s.relative_to(ROOT)) for s in SOURCES])
def test_the_image_provides_everything_the_book_and_the_job_import(source: Path) -> None:
    text = source.read_text()
    code = imports.code_cells(text) if source.suffix == ".md" else [text]
    # The job imports its own modules and packages by their top-level name (the Snakefile puts
    # workflow/scripts on sys.path), at any depth; a notebook only the helpers beside it
    # (book/notebooks/commands.py), in the folder its kernel starts in.
    local = imports.local_names(SCRIPTS if source.suffix == ".py" else BOOK / "notebooks")
    names = [name for cell in code for name in imports.imports(cell)]
    assert not imports.unprovided(names, local, MODULES), (
        "imported but not in image/packages.txt (or not mapped in "
        "src/microscopy_notebook/image/packages.py)"
    )


def test_the_import_scan_reads_cells_and_catches_a_missing_package() -> None:
    notebook = (
        "# A page\n\n```{code-cell} ipython3\n:tags: [hide-input]\nimport json\n"
        "%matplotlib inline\nfrom google.cloud import storage\nimport skimage.io\n```\n\n"
        "```python\nimport not_a_cell\n```\n\n````{code-cell} ipython3\n---\ntags: [x]\n"
        "---\nimport not_in_the_image.sub\nfrom . import sibling\nimport jobplan\n````\n"
    )
    names = [n for cell in imports.code_cells(notebook) for n in imports.imports(cell)]
    assert names == [
        "json",
        "google.cloud.storage",
        "skimage.io",
        "not_in_the_image.sub",
        "jobplan",
    ]
    assert imports.unprovided(names, {"jobplan"}, MODULES) == ["not_in_the_image.sub"]
    assert imports.unprovided(names, set(), MODULES) == ["not_in_the_image.sub", "jobplan"]


def test_a_cell_magic_is_not_python_and_a_shell_escape_is_skipped() -> None:
    notebook = (
        "```{code-cell} ipython3\n%%bash\nimport nothing\n```\n\n"
        "```{code-cell}\n!pip install x\nimport yaml\n```\n"
    )
    assert imports.code_cells(notebook) == ["pass\nimport yaml"]


def test_a_module_provides_its_submodules_but_not_its_namesakes() -> None:
    names = ["numpy.linalg", "numpyx", "google.cloud.storage", "google.auth", "os.path"]
    assert imports.unprovided(names, set(), {"numpy", "google.cloud.storage"}) == [
        "numpyx",
        "google.auth",
    ]


def test_local_names_are_the_folders_modules_and_packages(tmp_path: Path) -> None:
    (tmp_path / "render_batch.py").write_text("")
    (tmp_path / "thumbnails" / "draw").mkdir(parents=True)
    for init in ("thumbnails/__init__.py", "thumbnails/draw/__init__.py"):
        (tmp_path / init).write_text("")
    (tmp_path / "not_a_package").mkdir()
    assert imports.local_names(tmp_path) == {"render_batch", "thumbnails"}
    code = (
        "import thumbnails.draw.micrograph\nfrom thumbnails.formats import FORMATS\nimport numpy\n"
    )
    assert imports.unprovided(imports.imports(code), imports.local_names(tmp_path), {"numpy"}) == []
