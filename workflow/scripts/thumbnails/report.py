"""The thumbnail job's report, kept in the output so that a run writes in proportion to what
it adds, never the whole archive's rows again:

- ``report/batches/<batch>.json``, the record of one batch (its rows, its figures), written by the
  batch itself when it ends; never rewritten;
- ``report.csv``, every row for spreadsheets: each run appends the rows that the records add (a
  server-side compose in a bucket, under a precondition on the CSV's generation). A row that is
  already the file's last row is never added again, so runs that overlap, split their batches
  differently, or die and are run again add each file's row once; a file previewed again (redone,
  or its preview removed) gets a later row only if that row differs, and the last row counts;
- ``report.json``, the summary: made from the CSV's last rows each time it is written (files, ok
  and failed, the names kept or without a preview), the records it holds, the last run's figures.
  It always agrees with the CSV it was made from; a run killed between the two leaves a CSV ahead
  of its summary, and the next run's report step makes the summary again.

Planning reads only the summary and the one listing of the output it makes anyway: a source is
reported when its preview was written by a batch whose record exists (`reported_names`). Pure
functions only: the reading and writing is the ``render`` and ``report`` rules'.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import NamedTuple

from .locations import NO_PLACE, Location, preview_name, source_of
from .plan import skipped_note

REPORT_JSON = "report.json"
REPORT_CSV = "report.csv"
RECORDS = "report/batches"
# `renderer`: the version of the renderer that made the preview (thumbnails.RENDERER); `redone`:
# what a `redo:` run replaced (e.g. "placeholder"), empty for a file's first preview.
REPORT_COLUMNS = (
    "name",
    "source",
    "preview",
    "ok",
    "kind",
    "title",
    "signals",
    "shown",
    "error",
    "renderer",
    "redone",
)
# Said in a row whose preview was not written because another object held its name.
KEPT = "not written: another object was already at the preview's name and was kept"


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
    renderer: str = "",
    redone: str = "",
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
        "renderer": renderer,
        "redone": redone,
    }


def summarize(rows: Iterable[Mapping]) -> dict:
    rows = list(rows)
    failed = sum(1 for r in rows if not _ok(r["ok"]))
    return {"files": len(rows), "ok": len(rows) - failed, "failed": failed}


def _ok(value: object) -> bool:
    return value is True or value == "True"


def summary_line(summary: Mapping) -> str:
    """The last line a run prints: tells "all done" from "done with failures" at a glance."""
    n, failed = summary["files"], summary["failed"]
    if n == 0 and summary.get("repaired"):
        line = (
            f"thumbnail job: nothing new to preview; added to the report the rows of "
            f"{summary['repaired']} batch(es) a stopped run left"
        )
    elif failed == 0:
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
    redone = len(summary.get("redone") or ())
    if redone:
        line += f"; {redone} preview{'s' if redone != 1 else ''} redone (see the report)"
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
    (a damaged summary only means that records are read again: no row is lost or doubled)."""
    empty = {
        "summary": {"files": 0, "ok": 0, "failed": 0},
        "records": [],
        "kept": [],
        "unwritable": [],
    }
    if not document:
        return empty
    try:
        summary = json.loads(document)
        if not isinstance(summary, dict) or not isinstance(summary.get("records"), list):
            return empty
        return {**empty, **summary}
    except ValueError:
        return empty


# -- the CSV, read back -----------------------------------------------------------------------
_OK, _SHOWN, _ERROR = (REPORT_COLUMNS.index(c) for c in ("ok", "shown", "error"))


class Last(NamedTuple):
    """What the report keeps of a file's last row while it merges: enough to tell an equal row
    (``digest``) and to count the summary, a few dozen bytes a file however long the row."""

    digest: int
    ok: bool
    kept: bool
    unwritable: bool


def values(r: Mapping) -> tuple[str, ...]:
    """A row as the CSV holds it, one string per column: how two rows are compared."""
    return tuple("" if r.get(k) is None else str(r.get(k)) for k in REPORT_COLUMNS)


def last_of(v: tuple[str, ...]) -> Last:
    return Last(hash(v), v[_OK] == "True", KEPT in v[_SHOWN], v[_ERROR].startswith(NO_PLACE))


def read_csv(document: bytes | None) -> Iterator[tuple[str, ...]]:
    """Every row of a report.csv, as `values`, streamed; a row of an older header (fewer
    columns) gets empty values for those it lacks."""
    if not document:
        return
    reader = csv.reader(io.TextIOWrapper(io.BytesIO(document), "utf-8", "replace", newline=""))
    index = {column: i for i, column in enumerate(next(reader, ()))}
    for fields in reader:
        if fields:
            yield tuple(
                fields[index[c]] if c in index and index[c] < len(fields) else ""
                for c in REPORT_COLUMNS
            )


def csv_columns(document: bytes | None) -> tuple[str, ...]:
    """The header of a report.csv (empty if there is none)."""
    if not document:
        return ()
    first = document.split(b"\n", 1)[0].decode("utf-8", "replace")
    return tuple(next(csv.reader([first]), ()))


def scan_csv(document: bytes | None) -> tuple[int, dict[str, Last]]:
    """How many rows a report.csv holds, and each file's last row (the one that counts)."""
    count, last = 0, {}
    for v in read_csv(document):
        count += 1
        last[v[0]] = last_of(v)
    return count, last


def rows_to_add(last: dict[str, Last], records: Iterable[Mapping]) -> list[dict]:
    """The rows of ``records`` that the report lacks, in order: a row equal to its file's last row
    (another batch's of the same file, a killed run's already appended) is left out. ``last`` is
    updated with the rows returned."""
    out = []
    for record in records:
        for r in record["rows"]:
            v = values(r)
            seen = last.get(v[0])
            if seen is None or seen.digest != hash(v):
                out.append(r)
                last[v[0]] = last_of(v)
    return out


def make_summary(
    source: Location,
    target: Location,
    last: Mapping[str, Last],
    csv_rows_count: int,
    records: Iterable[str],
    run: Mapping,
    updated: str,
) -> dict:
    """``report.json`` for a CSV whose last rows are ``last`` (and that holds ``csv_rows_count``
    rows): every figure is counted from those rows, so the two always agree."""
    failed = sum(1 for v in last.values() if not v.ok)
    return {
        "input": source.url,
        "output": target.url,
        "updated": updated,
        "rows": REPORT_CSV,
        "csv_rows": csv_rows_count,
        "summary": {"files": len(last), "ok": len(last) - failed, "failed": failed},
        "last_run": dict(run),
        "records": sorted(set(records)),
        "kept": sorted(n for n, v in last.items() if v.kept),
        "unwritable": sorted(n for n, v in last.items() if v.unwritable),
    }


def next_summary(
    previous: Mapping,
    source: Location,
    target: Location,
    records: list[Mapping],
    run: Mapping,
    updated: str,
) -> dict:
    """The summary of a report whose CSV holds exactly the rows of ``records`` (and the records
    ``previous`` lists): for a report made in one go, as the archive benchmark seeds one."""
    last: dict[str, Last] = {}
    added = rows_to_add(last, records)
    return make_summary(
        source,
        target,
        last,
        len(added),
        [*previous.get("records", []), *(r["batch"] for r in records)],
        run,
        updated,
    )


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
