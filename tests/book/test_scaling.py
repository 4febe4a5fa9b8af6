"""The scaling page's figures are the benchmark's: read from the result files committed in
bench/measured/, each with the date and machine it was measured on, never typed into the page."""

from __future__ import annotations

import json
import re

import pytest
from bs4 import BeautifulSoup

from microscopy_notebook import book
from microscopy_notebook.paths import ROOT

RESULTS = ROOT / "bench" / "measured"
PAGE = book.BOOK / "notebooks" / "scaling.md"


@pytest.fixture(scope="module")
def tables() -> list[dict[str, str]]:
    """Every two-column table the built page shows: label -> value as displayed."""
    html = book.HTML / "notebooks" / "scaling.html"
    if not html.exists():
        pytest.fail("no built site: run `nox -s docs` (`nox -s site` builds it before its tests)")
    found = []
    for table in BeautifulSoup(html.read_text(), "html.parser").select("table.dataframe"):
        rows = {}
        for tr in table.select("tbody tr"):
            cells = [c.get_text(strip=True) for c in tr.find_all(["th", "td"])]
            rows[cells[0]] = cells[1:]
        found.append(rows)
    return found


@pytest.mark.parametrize("name, mode", [("compare.json", "compare"), ("archive.json", "archive")])
def test_each_result_file_says_when_and_on_what_it_was_measured(name: str, mode: str) -> None:
    result = json.loads((RESULTS / name).read_text())
    assert result["mode"] == mode
    machine = result["machine"]
    assert re.fullmatch(r"20\d\d-\d\d-\d\d", machine["date"])
    assert machine["cores"] >= 1 and machine["memory_mib"] > 0
    assert machine["snakemake"] and machine["python"] and "bytecode_compiled" in machine


def test_the_page_shows_the_files_figures(tables: list[dict[str, list[str]]]) -> None:
    compare = json.loads((RESULTS / "compare.json").read_text())
    ours = compare["variants"]["ours"]
    archive = json.loads((RESULTS / "archive.json").read_text())
    shown = {
        label: values[0] for table in tables for label, values in table.items() if len(values) == 1
    }
    expected = {
        "ours: wall time (s)": round(ours["wall_s"], 1),
        "ours: cost of one more file, 2 cores (ms)": round(1000 * ours["marginal_s_per_file"], 1),
        "rerun, nothing new (s)": round(archive["nothing_new_s"], 1),
        "report bytes that run wrote (% of report.csv)": round(
            100 * archive["report_written_fraction"], 2
        ),
        f"one new file in {archive['latency_archive']}: preview after (s)": round(
            archive["latency_one_new_file_s"], 1
        ),
    }
    for label, value in expected.items():
        assert label in shown, f"{label!r} not on the page: {sorted(shown)}"
        assert float(shown[label]) == value, label
    # the machine table shows the date each file names, in the page's order
    sizes = json.loads((RESULTS / "sizes.json").read_text())
    dates = [v for table in tables for label, v in table.items() if label == "date"]
    assert [r["machine"]["date"] for r in (compare, archive, sizes)] in dates


def test_the_page_types_in_no_measured_figure() -> None:
    """Its code cells hold parameters of the estimate (prices, a start-up guess), never a
    figure of a run: those come from the files."""
    code = "\n".join(re.findall(r"```\{code-cell\}[^\n]*\n(.*?)```", PAGE.read_text(), re.S))
    for key in ("plan_s", "wall_s", "nothing_new_s", "marginal_s_per_file", "peak_rss_mib"):
        assert not re.search(rf"{key}\"?\s*[:=]\s*[\d.]+", code), key
