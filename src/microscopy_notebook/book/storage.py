"""The storage emulator of the book's build, started only when the build has pages to read.

A Sphinx extension (``book/_config.yml``, ``sphinx: extra_extensions``). The notebooks and the
``{terminal}`` blocks read the guide's example buckets, so a build that reads pages needs the
storage emulator (`microscopy_notebook.cloud.emulator`), seeded with the sample files. Starting it
takes longer than the rest of a rebuild with nothing changed, which reads no page at all; so it
starts on Sphinx's ``env-before-read-docs`` when there are pages to read (or when another
extension asks for it with `ensure`, as the screenshots do), its settings go into the environment
of the build (the notebooks' kernels and the pages' commands inherit them), and it stops when the
build ends. A build started with an emulator's settings already in its environment
(the tests, the benchmark) reads and writes that emulator instead.
"""

from __future__ import annotations

import os

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)
_running: dict = {}  # "emulator" -> the Emulator, "saved" -> the settings it replaced


def ensure(why: str) -> None:
    """The emulator up, seeded, its settings in this process's environment: unless one runs
    already, or the environment names one. For whatever in the build needs storage (reading
    pages; the screenshots, taken before any page is read)."""
    if _running or os.environ.get("STORAGE_EMULATOR_HOST"):
        return
    from microscopy_notebook.cloud import samples
    from microscopy_notebook.cloud.emulator import Emulator

    emulator = Emulator().start()
    _running["emulator"] = emulator
    _running["saved"] = {key: os.environ.get(key) for key in emulator.env}
    os.environ.update(emulator.env)
    samples.seed()
    logger.info(f"storage emulator: {emulator.endpoint}, seeded, for {why}")


def _start(app: Sphinx, env, docnames: list[str]) -> None:
    if docnames:
        ensure(f"{len(docnames)} page(s)")


def _stop(app: Sphinx, exception: Exception | None) -> None:
    emulator = _running.pop("emulator", None)
    if emulator is None:
        return
    for key, value in _running.pop("saved").items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    emulator.stop()


def setup(app: Sphinx) -> dict:
    app.connect("env-before-read-docs", _start)
    app.connect("build-finished", _stop)
    return {"parallel_read_safe": False, "parallel_write_safe": True}
