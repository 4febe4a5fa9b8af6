"""``python -m microscopy_notebook.book [BUILD ARGS]``: the strict build, emulator up and seeded.

Every notebook of the book reads the example buckets, so a build starts the storage emulator,
seeds it with the sample files, builds, and stops it: what ``nox -s docs`` runs.
"""

import sys

from microscopy_notebook import book
from microscopy_notebook.cloud import emulator

sys.exit(emulator.main(["--seed", "--", *book.build_command(book.BOOK, *sys.argv[1:])]))
