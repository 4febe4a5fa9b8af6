"""The thumbnail job's report, kept in the output so that a run writes in proportion to what
it adds, never the whole archive's rows again:

- ``report/batches/<batch>.json``, the record of one batch (its rows, its figures), written by the
  batch itself when it ends; never rewritten;
- ``report.csv``, every row for spreadsheets: each run appends the rows of the records not yet in
  it (a server-side compose in a bucket). A file previewed again has a later row, which is the
  one that counts;
- ``report.json``, the summary: files, ok and failed over all runs, the last run's figures, which
  records the CSV holds, and the names whose preview's name another object holds (kept).

Planning reads only the summary and the one listing of the output it makes anyway: a source is
reported when its preview was written by a batch whose record exists (`reported_names`). Pure
functions only: the reading and writing is the ``render`` and ``report`` rules'.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping

from .locations import Location, preview_name, source_of
from .plan import skipped_note

REPORT_JSON = "report.json"
REPORT_CSV = "report.csv"
RECORDS = "report/batches"
REPORT_COLUMNS = ("name", "source", "preview", "ok", "kind", "title", "signals", "shown", "error")


def row(
    source: Location,
    target: Location,
    name: str,
    *,
    ok: bool,
    kind: str = "",
    title: str = "",
    signals: int = 0,
    shown: str = "",
    error: str | None = None,
    preview: bool = True,
) -> dict:
    """One report row; ``preview=False`` when no preview object was made for the file."""
    return {
        "name": name,
        "source": source.child(name),
        "preview": target.child(preview_name(name)) if preview else "",
        "ok": bool(ok),
        "kind": kind,
        "title": title,
        "signals": int(signals),
        "shown": shown,
        "error": error,
    }


def summarize(rows: Iterable[Mapping]) -> dict:
    rows = list(rows)
    failed = sum(1 for r in rows if not r["ok"])
    return {"files": len(rows), "ok": len(rows) - failed, "failed": failed}


def summary_line(summary: Mapping) -> str:
    """The last line a run prints: tells "all done" from "done with failures" at a glance."""
    n, failed = summary["files"], summary["failed"]
    if failed == 0:
        line = f"thumbnail job: all {n} done"
    else:
        line = (
            f"thumbnail job: done with {failed} failure{'s' if failed != 1 else ''} "
            f"({n - failed} of {n} previews made from readable files; failures got a "
            f"placeholder, see the report)"
        )
    kept = len(summary.get("kept") or ())
    if kept:
        line += (
            f"; {kept} preview{'s' if kept != 1 else ''} not written because another "
            f"object already had {'their names' if kept != 1 else 'its name'} (kept as it "
            f"was, see the report)"
        )
    if (summary.get("skipped") or {}).get("files"):
        line += f"; {skipped_note(summary['skipped'])}"
    return line


def report_json(document: Mapping) -> bytes:
    return (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode()


def report_csv(rows: Iterable[Mapping]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=REPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in REPORT_COLUMNS})
    return buf.getvalue().encode()


def record_name(batch: str) -> str:
    return f"{RECORDS}/{batch}.json"


def batch_of_record(name: str) -> str | None:
    """The batch whose record ``name`` (relative to the output) is, or None."""
    folder, _, leaf = name.rpartition("/")
    return leaf[: -len(".json")] if folder == RECORDS and leaf.endswith(".json") else None


def csv_rows(rows: Iterable[Mapping]) -> bytes:
    """Rows as CSV lines without the header (`report_csv` has it): what one run appends."""
    return report_csv(rows)[len(csv_header()) :]


def csv_header() -> bytes:
    return report_csv(())


def names_in_record(document: bytes | None) -> list[str]:
    """The files a batch's record holds rows of (none if it is missing or unreadable)."""
    try:
        return [r["name"] for r in json.loads(document or b"null")["rows"]]
    except (ValueError, KeyError, TypeError):
        return []


def parse_summary(document: bytes | None) -> dict:
    """The summary in ``report.json``, or an empty one when there is none or it is unreadable
    (a damaged summary only means that records are added to the CSV again: no row is lost)."""
    empty = {"summary": {"files": 0, "ok": 0, "failed": 0}, "records": [], "kept": []}
    if not document:
        return empty
    try:
        summary = json.loads(document)
        if not isinstance(summary, dict) or not isinstance(summary.get("records"), list):
            return empty
        return {**empty, **summary}
    except ValueError:
        return empty


def next_summary(
    previous: Mapping,
    source: Location,
    target: Location,
    records: list[Mapping],
    run: Mapping,
    updated: str,
) -> dict:
    """The summary after adding ``records`` (those the previous one did not hold)."""
    rows = [r for record in records for r in record["rows"]]
    added = summarize(rows)
    counts = {k: previous["summary"].get(k, 0) + added[k] for k in ("files", "ok", "failed")}
    kept = set(previous.get("kept", []))
    for record in records:
        kept.update(record.get("kept", []))
    return {
        "input": source.url,
        "output": target.url,
        "updated": updated,
        "rows": REPORT_CSV,
        "summary": counts,
        "last_run": dict(run),
        "records": sorted({*previous["records"], *(r["batch"] for r in records)}),
        "kept": sorted(kept),
    }


def reported_names(
    listing: Mapping[str, str | None],
    kept: Iterable[str],
    record_rows: Callable[[str], Iterable[str]] | None = None,
) -> set[str]:
    """Sources the report already covers, from one listing of the output (object name -> the
    batch that wrote it) and the summary's kept names.

    In a bucket a preview names its batch, so a source is covered when that batch's record is in
    the listing: a batch killed before writing its record leaves previews that are not, and those
    files are done again (their previews are kept and relabelled, never rewritten). A local folder
    keeps no metadata: there ``record_rows(batch)`` reads the names in each record instead.
    """
    records = {b for b in map(batch_of_record, listing) if b is not None}
    covered = set(kept)
    if record_rows is not None:
        names: set[str] = set()
        for batch in records:
            names.update(record_rows(batch))
        previewed = {source_of(name) for name in listing}
        return covered | (names & previewed)
    for name, batch in listing.items():
        source = source_of(name)
        if source is not None and batch in records:
            covered.add(source)
    return covered
