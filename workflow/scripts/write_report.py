"""Add this run's rows to the output's report (the ``report`` rule); see `thumbnails.report`.

Each batch wrote its own record (``report/batches/<batch>.json``) when it ended. This step lists
the records, reads only those the summary does not hold yet (this run's, and any a killed run
left), appends their rows to ``report.csv`` and writes the summary ``report.json``, over the
version it read (a generation precondition), so two runs finishing together both get counted.
What it reads and writes grows with the new files, not with the archive.
"""

import json
from datetime import UTC, datetime
from pathlib import Path

from thumbnails import report, store
from thumbnails.locations import Location, parse_location

ATTEMPTS = 5  # summaries retried when another run wrote one in between


def load_batches(paths: list[str]) -> tuple[list[dict], dict]:
    """The rows of every batch, and the run's figures: render seconds (summed over batches),
    peak memory of the largest batch process, previews kept because another object had the name."""
    rows: list[dict] = []
    figures = {"render_seconds": 0.0, "peak_memory_mib": 0, "kept": []}
    for path in paths:
        batch = json.loads(Path(path).read_text())
        rows.extend(batch["rows"])
        figures["render_seconds"] += batch.get("seconds", 0.0)
        figures["peak_memory_mib"] = max(
            figures["peak_memory_mib"], batch.get("peak_memory_mib", 0)
        )
        figures["kept"] += batch.get("kept", [])
    figures["render_seconds"] = round(figures["render_seconds"], 3)
    figures["kept"].sort()
    return rows, figures


def recorded_batches(target: Location) -> list[str]:
    """The batches whose record is in the output: one listing of the records' folder."""
    folder = target.under(report.RECORDS)
    return sorted(
        b
        for b in (
            report.batch_of_record(f"{report.RECORDS}/{name}")
            for name in store.list_names(folder, missing_ok=True)
        )
        if b is not None
    )


def merge_into_report(source: Location, target: Location, run: dict) -> dict:
    """Append the rows of every record the summary does not hold yet; returns the summary."""
    recorded = recorded_batches(target)
    for _ in range(ATTEMPTS):
        old, generation = store.read(target, report.REPORT_JSON)
        previous = report.parse_summary(old)
        pending = sorted(set(recorded) - set(previous["records"]))
        records = [json.loads(store.read(target, report.record_name(b))[0]) for b in pending]
        rows = [r for record in records for r in record["rows"]]
        if rows:
            store.append(
                target,
                report.REPORT_CSV,
                report.csv_rows(rows),
                report.csv_header(),
                "text/csv; charset=utf-8",
            )
        updated = datetime.now(UTC).isoformat(timespec="seconds")
        summary = report.next_summary(previous, source, target, records, run, updated)
        if store.replace(
            target, report.REPORT_JSON, report.report_json(summary), "application/json", generation
        ):
            return summary
    raise RuntimeError(
        f"{target.child(report.REPORT_JSON)} kept changing while this run "
        f"added its rows; run the job again to count them"
    )


def main(smk) -> None:
    source = parse_location(smk.params.input, "input")
    target = parse_location(smk.params.output, "output")
    new, figures = load_batches(list(smk.input.batches))
    plan = json.loads(Path(smk.input.plan).read_text())
    run = {
        "plan": smk.wildcards.plan,
        **report.summarize(new),
        **figures,
        "failures": [{"name": r["name"], "error": r["error"]} for r in new if not r["ok"]],
        "skipped": plan.get("skipped", {}),
    }
    try:
        summary = merge_into_report(source, target, run)
    except store.StoreError as exc:  # the message says what to do; a traceback would not
        raise SystemExit(f"the report was not written: {exc}") from None
    with open(smk.log[0], "w") as log:
        print(
            f"report: {target.child(report.REPORT_CSV)} ({summary['summary']['files']} "
            f"rows in total), summary {target.child(report.REPORT_JSON)}",
            file=log,
        )
        print(report.summary_line(run), file=log)
    Path(smk.output.run).write_text(json.dumps(run, indent=1, ensure_ascii=False) + "\n")


if "snakemake" in globals():
    main(snakemake)  # noqa: F821 - defined by Snakemake's script preamble
