"""The book's ``{formats-table}`` directive: one row per format of the job's table, each with the
preview the job makes of its sample, written when the book is built."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bs4 import BeautifulSoup

from microscopy_notebook import format_samples
from thumbnails import formats, preview


def _build(tmp_path: Path, page: str) -> subprocess.CompletedProcess:
    (tmp_path / "conf.py").write_text(
        'extensions = ["myst_parser", "microscopy_notebook.book.formats_table"]\n'
        "smartquotes = False\n"
    )
    (tmp_path / "index.md").write_text(page)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "-q",
            "-b",
            "html",
            str(tmp_path),
            str(tmp_path / "_build" / "html"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_formats_table_is_the_jobs_table_with_its_previews(tmp_path: Path) -> None:
    proc = _build(tmp_path, "# Formats\n\n```{formats-table}\n:caption: Read by the job\n```\n")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    html = BeautifulSoup((tmp_path / "_build" / "html" / "index.html").read_text(), "html.parser")
    table = html.select_one("table.formats-table")
    assert "Read by the job" in table.find("caption").get_text()
    rows = table.select("tbody tr")
    assert len(rows) == len(formats.FORMATS)
    samples = format_samples.preview_samples()
    for row, fmt in zip(rows, formats.FORMATS, strict=True):
        text, picture = row.find_all("td")
        assert fmt.name in text.get_text(" ", strip=True)
        assert [c.get_text() for c in text.select("code")][: len(fmt.extensions)] == list(
            fmt.extensions
        )
        # the picture shown is the job's preview of the sample, byte for byte
        name = samples[fmt.extensions[0]]
        made = preview.make_preview(format_samples.files() / name, name)
        img = picture.find("img")
        shown = (tmp_path / "_build" / "html" / img["src"]).read_bytes()
        assert shown == made.png, fmt.name
        assert img["alt"] == f"The job's preview: {made.shown}"
        assert made.shown in picture.get_text()


def test_a_format_without_a_sample_fails_the_build(tmp_path: Path) -> None:
    """Run in this process's Python with the table one row longer: the build must refuse."""
    extra = tmp_path / "extra_format.py"
    extra.write_text(
        "from thumbnails import formats\n"
        "made_up = formats.Format('Made up', ('.xyz',), 'xyz', 'nothing')\n"
        "formats.FORMATS = (*formats.FORMATS, made_up)\n"
    )
    (tmp_path / "src").mkdir()
    page = "# Formats\n\n```{formats-table}\n```\n"
    (tmp_path / "src" / "conf.py").write_text(
        "import extra_format\n"
        'extensions = ["myst_parser", "microscopy_notebook.book.formats_table"]\n'
    )
    (tmp_path / "src" / "index.md").write_text(page)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "-q",
            "-b",
            "html",
            str(tmp_path / "src"),
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        # extra_format first, then this process's path (where `thumbnails` is found)
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])},
    )
    assert proc.returncode != 0
    assert "formats-table: no sample for Made up" in proc.stdout + proc.stderr
