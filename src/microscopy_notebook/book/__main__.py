"""``python -m microscopy_notebook.book [BUILD ARGS]``: the strict build, emulator up and seeded.

Every notebook of the book reads the example buckets, so a build starts the storage emulator,
seeds it with the sample files, builds, and stops it: what ``nox -s docs`` runs.
"""

import os
import sys
from pathlib import Path

from microscopy_notebook import book
from microscopy_notebook.cloud import emulator

# This environment's programs first on PATH, for the notebooks' kernels too, as the image's conda
# environment is: a tutorial runs the Snakemake the book is built with.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
# The pages' commands run as in a reader's JupyterLab on the hub, where JupyterHub names the
# server's user: the first job names the reader's own folder after it (not the build machine's).
os.environ.setdefault("JUPYTERHUB_USER", "a-reader")
sys.exit(emulator.main(["--seed", "--", *book.build_command(book.BOOK, *sys.argv[1:])]))
