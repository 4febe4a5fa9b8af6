"""Add this run's rows to the output's report (the ``report`` rule); see `thumbnails.report`.

Each batch wrote its own record (``report/batches/<batch>.json``) when it ended. This step lists
the records, reads those the summary does not hold yet (this run's, and any a killed or
overlapping run left), and appends to ``report.csv`` the rows the CSV lacks: a row equal to its
file's last row is not added again, whichever batch or run it comes from. The append is made over
the CSV's generation as read (a precondition), so when another run appends first this one reads
the CSV again and adds only what is still missing. Then it writes the summary ``report.json``,
counted from the CSV's rows, over the version it read: the two always agree, and a run killed
between them leaves a CSV the next run's report step makes a summary of. In a local folder the
same steps run under a lock on ``report/lock`` instead of preconditions.

It writes in proportion to the new rows; it reads the CSV once per attempt (less than the listing
of the output that planning makes anyway).
"""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime
from pathlib import Path

from thumbnails import report, store
from thumbnails.locations import Location
from thumbnails.plan import JobPlan

ATTEMPTS = 20  # another run appended or wrote a summary in between: read again, add what is left
LOCK = "report/lock"  # a local folder's lock around the report's read-modify-write
PARTS = "report/parts"  # in a bucket, the pieces appended to the CSV, each for a moment


def run_figures(records: list[dict]) -> dict:
    """This run's figures from its batches' records: render seconds (summed over batches), peak
    memory of the largest batch process, previews kept because another object had the name,
    previews redone."""
    rows = [r for record in records for r in record["rows"]]
    return {
        **report.summarize(rows),
        "render_seconds": round(sum(r.get("seconds", 0.0) for r in records), 3),
        "peak_memory_mib": max((r.get("peak_memory_mib", 0) for r in records), default=0),
        "kept": sorted(n for r in records for n in r.get("kept", [])),
        "redone": sorted(row["name"] for row in rows if row.get("redone")),
        "failures": [{"name": r["name"], "error": r["error"]} for r in rows if not r["ok"]],
    }


def report_folder(target: Location) -> tuple[list[str], list[str]]:
    """The batches whose record is in the output, and the parts of appends a killed run left
    (`PARTS`): one listing of the report's folder."""
    batches, parts = [], []
    folder = report.RECORDS.rpartition("/")[0]  # "report"
    for name in store.list_names(target.under(folder), missing_ok=True):
        batch = report.batch_of_record(f"{folder}/{name}")
        if batch is not None:
            batches.append(batch)
        elif f"{folder}/{name}".startswith(f"{PARTS}/"):
            parts.append(f"{folder}/{name}")
    return sorted(batches), parts


def merge_into_report(
    source: Location, target: Location, run: dict, known: dict[str, dict] | None = None
) -> dict:
    """Append the rows the report lacks from every record the summary does not hold yet, then
    write the summary of the CSV; returns that summary. ``known``: records already read."""
    recorded, parts = report_folder(target)
    for part in parts:  # a killed run's; an append in flight whose part goes is made again
        store.remove(target, part)
    records: dict[str, dict] = dict(known or {})  # read once, whatever the attempts
    with store.locked(target, LOCK):
        for attempt in range(ATTEMPTS):
            if attempt:  # another run is at the same step: let it finish its write first
                time.sleep(random.uniform(0.05, 0.5) * min(attempt, 5))
            old, generation = store.read(target, report.REPORT_JSON)
            previous = report.parse_summary(old)
            pending = sorted(set(recorded) - set(previous["records"]))
            for b in pending:
                if b not in records:
                    data = store.read(target, report.record_name(b))[0]
                    records[b] = json.loads(data) if data else {"batch": b, "rows": []}
            text, csv_generation = store.read(target, report.REPORT_CSV)
            rows, last = report.scan_csv(text)
            new = report.rows_to_add(last, (records[b] for b in pending))
            if text and report.csv_columns(text) != report.REPORT_COLUMNS:  # an older report
                whole = report.report_csv(
                    dict(zip(report.REPORT_COLUMNS, v, strict=True)) for v in report.read_csv(text)
                )  # in this job's columns, once
                whole += report.csv_rows(new)
                if not store.replace(
                    target, report.REPORT_CSV, whole, "text/csv; charset=utf-8", csv_generation
                ):
                    continue
            elif new and not store.append(
                target,
                report.REPORT_CSV,
                report.csv_rows(new),
                report.csv_header(),
                "text/csv; charset=utf-8",
                csv_generation,
                PARTS,
            ):
                continue  # another run appended first: read the CSV again
            count = rows + len(new)
            if not new and not pending and previous.get("csv_rows") == count:
                return previous  # another run's summary already says all this
            updated = datetime.now(UTC).isoformat(timespec="seconds")
            summary = report.make_summary(
                source, target, last, count, [*previous["records"], *pending], run, updated
            )
            if store.replace(
                target,
                report.REPORT_JSON,
                report.report_json(summary),
                "application/json",
                generation,
            ):
                return summary
    raise RuntimeError(
        f"{target.child(report.REPORT_JSON)} kept changing while this run "
        f"added its rows; run the job again to count them"
    )


def write_report(
    source: Location,
    target: Location,
    plan: JobPlan,
    work: Path,
    storage: Location | None = None,
) -> dict:
    """The report step of a run (from the Snakefile: `onsuccess`, or while it is read when there
    is nothing to render): merge, log, this run's figures to ``<work>/runs/<plan>.json`` for the
    closing line; then the run's manifests and batch markers go, here and (``storage``: the
    default storage prefix of the cloud path) there. Returns the run's figures."""
    mine = [store.read(target, report.record_name(b))[0] for b in plan.batches]
    if not any(mine) and not plan.pending:  # no batch finished: nothing to report
        return {"plan": plan.id, **run_figures([]), "skipped": plan.skipped, "repaired": 0}
    known = {b: json.loads(r) for b, r in zip(plan.batches, mine, strict=True) if r}
    run = {
        "plan": plan.id,
        **run_figures(list(known.values())),
        "skipped": plan.skipped,
        "repaired": len(plan.pending),
    }
    try:
        summary = merge_into_report(source, target, run, known)
    except store.StoreError as exc:  # the message says what to do; a traceback would not
        raise SystemExit(f"the report was not written: {exc}") from None
    log = work / "logs" / "report" / f"{plan.id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(
        f"report: {target.child(report.REPORT_CSV)} ({summary['summary']['files']} files, "
        f"{summary.get('csv_rows', 0)} rows in total), summary "
        f"{target.child(report.REPORT_JSON)}\n{report.summary_line(run)}\n"
    )
    out = work / "runs" / f"{plan.id}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(run, indent=1, ensure_ascii=False) + "\n")
    for batch, record in zip(plan.batches, mine, strict=True):  # the records are what counts
        for folder in ("manifests", "batches") if record else ():
            path = work / folder / f"{batch}.json"
            path.unlink(missing_ok=True)
            if storage is not None:
                store.remove(storage, path.as_posix())
    return run
