"""Merge the batches' rows into the output's cumulative report (the ``report`` rule).

``<output>/report.json`` is the record: one row per file ever previewed there (this run's rows
replace older rows of the same file), a summary, and the last run's counts. ``report.csv`` holds
the same rows for spreadsheets. The JSON is written only over the version this step read (a
generation precondition), so two runs finishing together merge rather than lose rows.
"""

import json
from datetime import UTC, datetime
from pathlib import Path

from thumbnails import report, store
from thumbnails.locations import Location, parse_location

ATTEMPTS = 5  # merges retried when another run wrote the report in between


def load_batches(paths: list[str]) -> tuple[list[dict], dict]:
    """The rows of every batch, and the run's figures: render seconds (summed over batches),
    peak memory of the largest batch process, previews kept because another object had the name."""
    rows: list[dict] = []
    figures = {"render_seconds": 0.0, "peak_memory_mib": 0, "kept": []}
    for path in paths:
        batch = json.loads(Path(path).read_text())
        rows.extend(batch["rows"])
        figures["render_seconds"] += batch.get("seconds", 0.0)
        figures["peak_memory_mib"] = max(figures["peak_memory_mib"],
                                         batch.get("peak_memory_mib", 0))
        figures["kept"] += batch.get("kept", [])
    figures["render_seconds"] = round(figures["render_seconds"], 3)
    figures["kept"].sort()
    return rows, figures


def previous_rows(document: bytes | None) -> list[dict]:
    if not document:
        return []
    try:
        return list(json.loads(document)["files"])
    except (ValueError, KeyError, TypeError):
        return []  # unreadable: every file it listed was planned again, so its rows come back


def merge_into_report(source: Location, target: Location, new: list[dict], run: dict) -> dict:
    """Merge ``new`` into the report under ``target`` and write it; returns the document."""
    for _ in range(ATTEMPTS):
        old, generation = store.read(target, report.REPORT_JSON)
        rows = report.merge_rows(previous_rows(old), new)
        updated = datetime.now(UTC).isoformat(timespec="seconds")
        document = report.report_document(source, target, rows, run, updated)
        if store.replace(target, report.REPORT_JSON, report.report_json(document),
                         "application/json", generation):
            store.replace(target, report.REPORT_CSV, report.report_csv(rows),
                          "text/csv; charset=utf-8")
            return document
    raise RuntimeError(f"{target.child(report.REPORT_JSON)} kept changing while this run "
                       f"merged its rows; run the job again to merge them")


def main(smk) -> None:
    source = parse_location(smk.params.input, "input")
    target = parse_location(smk.params.output, "output")
    new, figures = load_batches(list(smk.input.batches))
    plan = json.loads(Path(smk.input.plan).read_text())
    run = {"plan": smk.wildcards.plan, **report.summarize(new), **figures,
           "failures": [{"name": r["name"], "error": r["error"]} for r in new if not r["ok"]],
           "skipped": plan.get("skipped", {})}
    try:
        document = merge_into_report(source, target, new, run)
    except store.StoreError as exc:  # the message says what to do; a traceback would not
        raise SystemExit(f"the report was not written: {exc}") from None
    with open(smk.log[0], "w") as log:
        print(f"report: {target.child(report.REPORT_JSON)} ({document['summary']['files']} "
              f"files in total)", file=log)
        print(report.summary_line(run), file=log)
    Path(smk.output.run).write_text(json.dumps(run, indent=1, ensure_ascii=False) + "\n")


if "snakemake" in globals():
    main(snakemake)  # noqa: F821 - defined by Snakemake's script preamble
