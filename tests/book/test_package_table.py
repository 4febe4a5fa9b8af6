"""The book's ``{package-table}`` directive renders image/packages.txt, row for row."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bs4 import BeautifulSoup

from microscopy_notebook.image import packages


def test_the_package_table_directive_renders_the_list(tmp_path: Path) -> None:
    listed = packages.load()
    (tmp_path / "conf.py").write_text(
        'extensions = ["myst_parser", "microscopy_notebook.book.package_table"]\n'
        "smartquotes = False\n"
    )  # compare the text as written
    (tmp_path / "index.md").write_text("# Packages\n\n```{package-table}\n:caption: Listed\n```\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "-q",
            "-b",
            "html",
            str(tmp_path),
            str(tmp_path / "_build"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    html = BeautifulSoup((tmp_path / "_build" / "index.html").read_text(), "html.parser")
    table = html.select_one("table.package-table")
    rows = [
        [c.get_text(" ", strip=True) for c in tr.find_all("td")] for tr in table.select("tbody tr")
    ]
    assert len(rows) == len(listed)
    for row, package in zip(rows, listed, strict=True):
        channel = "" if package.channel == "conda-forge" else f" ({package.channel})"
        assert row == [package.name + channel, package.spec or "any", package.purpose]
    assert "Listed" in table.find("caption").get_text()
