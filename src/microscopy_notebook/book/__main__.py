"""``python -m microscopy_notebook.book [BUILD ARGS]``: the strict build of the book, what
``nox -s docs`` runs. The storage emulator its notebooks and commands read is started by the
book's own extension (`microscopy_notebook.book.storage`) when there are pages to read.
"""

import sys

from microscopy_notebook import book
from microscopy_notebook.book import build

sys.exit(build.main(book.build_args(book.BOOK, *sys.argv[1:])))
