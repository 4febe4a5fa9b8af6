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
# environment is: a tutorial's `!snakemake` runs the Snakemake the book is built with.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
sys.exit(emulator.main(["--seed", "--", *book.build_command(book.BOOK, *sys.argv[1:])]))
