"""The benchmark keeps working: a tiny run end to end (no timing is asserted, only the report)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from microscopy_notebook.bench import common as bench

BENCH = (sys.executable, "-m", "microscopy_notebook.bench")


def test_file_set_cycles_the_samples_with_companions() -> None:
    names, companions = bench.file_set(25)
    assert len(names) == len(set(names)) == 25
    sers = [n for n in names if n.endswith(".ser")]
    assert sers and all(companions[n] and companions[n][0].endswith(".emi") for n in sers)
    assert len({n.rsplit("/", 1)[1] for n in names}) >= 8  # every kind of sample is in


@pytest.mark.slow
def test_a_tiny_benchmark_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [*BENCH, "--files", "4", "--rounds", "1", "--no-book", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last == json.loads(out.read_text())
    for variant in ("original", "ours"):
        figures = last["variants"][variant]
        assert figures["wall_s"] > 0 and figures["files_per_s"] > 0
        assert figures["peak_rss_mib"] > 50  # a Python process with numpy: measured, not zero
    assert last["variants"]["floor"]["render_s_per_file"] > 0
    assert last["ratios"]["throughput_ours_over_original"] > 0
    assert "variant" in proc.stdout and "original" in proc.stdout  # the table was printed


@pytest.mark.slow
def test_the_scale_mode_reports_plan_reruns_and_memory(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    proc = subprocess.run(
        [*BENCH, "--scale", "20", "--out", str(out)], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last == json.loads(out.read_text())
    assert last["scale"] == 20 and last["one_percent_new_files"] == 1
    for key in ("plan_s", "full_s", "nothing_new_s", "one_percent_new_s", "peak_rss_mib"):
        assert last[key] > 0, key


@pytest.mark.slow
def test_the_archive_mode_reports_fixed_costs_report_bytes_and_latency(tmp_path: Path) -> None:
    out = tmp_path / "archive.json"
    proc = subprocess.run(
        [*BENCH, "--archive", "300", "--latency-archive", "200", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last == json.loads(out.read_text())
    assert (last["objects"], last["one_percent_new_files"], last["latency_archive"]) == (
        300,
        3,
        200,
    )
    for key in (
        "plan_s",
        "nothing_new_s",
        "one_percent_new_s",
        "peak_rss_mib",
        "latency_one_new_file_s",
    ):
        assert last[key] > 0, key
    # three new rows, one new record and the summary: a small part of the whole CSV
    assert 0 < last["report_bytes_written_one_percent"] < last["report_csv_bytes"]
    assert last["machine"]["cores"] >= 1 and "bytecode_compiled" in last["machine"]
