"""The book's build starts the storage emulator itself (microscopy_notebook.book.storage), seeded,
when it has pages to read, and not at all when it has none (a rebuild with nothing changed)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from microscopy_notebook import book
from microscopy_notebook.cloud import samples
from tests.book.test_build import CONFIG, NOTEBOOK_HEADER

PAGE = f"""{NOTEBOOK_HEADER}
# Samples

```{{code-cell}} ipython3
from google.cloud import storage

names = [b.name for b in storage.Client().list_blobs("{samples.BUCKET}", prefix="{samples.PREFIX}")]
print(len(names), "sample objects")
```
"""
STARTED = "storage emulator: http://127.0.0.1:"


@pytest.mark.slow
def test_the_emulator_is_up_for_pages_to_read_and_not_for_a_rebuild(tmp_path: Path) -> None:
    src = tmp_path / "book"
    src.mkdir()
    (src / "_config.yml").write_text(CONFIG)
    (src / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    (src / "intro.md").write_text(PAGE)
    env = {k: v for k, v in os.environ.items() if k != "STORAGE_EMULATOR_HOST"}

    def build() -> str:
        proc = subprocess.run(
            book.build_command(src), capture_output=True, text=True, env=env, timeout=600
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    first = build()
    assert STARTED in first
    html = (src / "_build" / "html" / "intro.html").read_text()
    assert f"{len(samples.SAMPLES)} sample objects" in html, "the seeded buckets were read"
    again = build()
    assert STARTED not in again and "build succeeded" in again
