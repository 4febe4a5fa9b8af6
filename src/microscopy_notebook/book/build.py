"""``python -m microscopy_notebook.book.build ARGS``: jupyter-book's own command line, less a
second of start-up.

jupyter-book imports jsonschema to check ``_config.yml``; jsonschema, at import, compiles the 38
grammars of ``rfc3987-syntax`` (for its "iri" formats) whenever that package is installed, as
JupyterLab's jupyter-events installs it in the image and in the test environment: 0.8 s of every
build, a no-change rebuild included, for a format no schema of the book uses. Here jsonschema
finds it missing and leaves the "iri" formats unchecked; everything else is jupyter-book as is.

Every build of the book goes through here (`microscopy_notebook.book.build_command`: the docs,
the tests' books, the benchmark's copy), so this is also where the build becomes a reader's
JupyterLab on the hub: this environment's programs first on PATH, for the notebooks' kernels too,
as the image's conda environment is (a tutorial runs the Snakemake the book is built with); and
the server's user named by JupyterHub, as the first job names the reader's own folder after it,
not after the build machine's user.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    here = os.path.dirname(sys.executable)
    os.environ["PATH"] = f"{here}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ.setdefault("JUPYTERHUB_USER", "a-reader")
    sys.modules.setdefault("rfc3987_syntax", None)  # `import rfc3987_syntax` raises ImportError
    from jupyter_book.cli.main import main as jupyter_book

    try:
        jupyter_book(args=argv, prog_name="jupyter-book")
    except SystemExit as done:  # click ends with SystemExit, its code the build's result
        return done.code if isinstance(done.code, int) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
