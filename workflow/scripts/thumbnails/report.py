"""The thumbnail job's report: one row per file, merged run after run, as JSON and CSV.

``<output>/report.json`` is the record (one row per file ever previewed there, a summary, the
last run's counts) and ``report.csv`` the same rows for spreadsheets. Pure functions only: the
merge that reads and writes them is the ``report`` rule's (``write_report.py``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping

from .locations import Location, preview_name
from .plan import skipped_note

REPORT_JSON = "report.json"
REPORT_CSV = "report.csv"
REPORT_COLUMNS = ("name", "source", "preview", "ok", "kind", "title", "signals", "shown", "error")


def row(source: Location, target: Location, name: str, *, ok: bool, kind: str = "", title: str = "",
        signals: int = 0, shown: str = "", error: str | None = None,
        preview: bool = True) -> dict:
    """One report row; ``preview=False`` when no preview object was made for the file."""
    return {"name": name, "source": source.child(name),
            "preview": target.child(preview_name(name)) if preview else "",
            "ok": bool(ok), "kind": kind, "title": title, "signals": int(signals),
            "shown": shown, "error": error}


def merge_rows(previous: Iterable[Mapping], new: Iterable[Mapping]) -> list[dict]:
    """Rows of earlier runs, with this run's row replacing any for the same file; sorted by name."""
    rows = {r["name"]: dict(r) for r in previous}
    rows.update((r["name"], dict(r)) for r in new)
    return [rows[name] for name in sorted(rows)]


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
        line = (f"thumbnail job: done with {failed} failure{'s' if failed != 1 else ''} "
                f"({n - failed} of {n} previews made from readable files; failures got a "
                f"placeholder, see the report)")
    kept = len(summary.get("kept") or ())
    if kept:
        line += (f"; {kept} preview{'s' if kept != 1 else ''} not written because another "
                 f"object already had {'their names' if kept != 1 else 'its name'} (kept as it "
                 f"was, see the report)")
    if (summary.get("skipped") or {}).get("files"):
        line += f"; {skipped_note(summary['skipped'])}"
    return line


def report_document(source: Location, target: Location, rows: list[dict], run: Mapping,
                    updated: str) -> dict:
    return {"input": source.url, "output": target.url, "updated": updated,
            "summary": summarize(rows), "last_run": dict(run), "files": rows}


def report_json(document: Mapping) -> bytes:
    return (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode()


def report_csv(rows: Iterable[Mapping]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=REPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in REPORT_COLUMNS})
    return buf.getvalue().encode()


def reported_names(document: bytes | None) -> Iterator[str]:
    """Names that have a row in a report.json (nothing if there is none or it is unreadable)."""
    if not document:
        return iter(())
    try:
        files = json.loads(document)["files"]
        return iter([r["name"] for r in files])
    except (ValueError, KeyError, TypeError):
        return iter(())  # a damaged report only means files get redone, never lost
