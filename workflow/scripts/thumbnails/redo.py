"""Which previews a ``redo:`` run replaces: only the job's own, found from one listing.

``redo: placeholders`` redoes the placeholders of files that could not be read (a reader fixed
since, a file replaced by a readable one); ``redo: older-than=VERSION`` redoes previews an older
renderer drew (`thumbnails.RENDERER`, recorded with each). A preview is the job's own when its
batch's record in this output has a row for the file whose PNG has the MD5 the object has now
(in a bucket the object also names that batch): an object someone else put at a preview's name,
or wrote over one, is never a candidate. The render step then replaces it only if it is still
that very version (`store.swap`: a generation precondition in a bucket), and only if the new
preview differs. Standard library only: the Snakefile imports this while it is read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .locations import JobConfigError, source_of

PLACEHOLDERS = "placeholders"
OLDER_THAN = "older-than="


@dataclass(frozen=True)
class Preview:
    """One preview in the output as the plan sees it: its batch (None: not written by the job),
    the renderer and kind it recorded, its generation and MD5."""

    batch: str | None
    renderer: str | None
    kind: str | None
    generation: int
    md5: str | None


def version(text: str | None) -> tuple[int, ...]:
    """``"2026.12"`` -> (2026, 12); a missing or unreadable version sorts before every other."""
    try:
        return tuple(int(part) for part in (text or "").split("."))
    except ValueError:
        return ()


def reason(setting: str | None) -> Callable[[Mapping], str | None]:
    """For a ``redo:`` setting, a function from a report row to why it is redone (None: not)."""
    if setting == PLACEHOLDERS:
        return lambda row: "placeholder" if row.get("kind") == "placeholder" else None
    if setting and setting.startswith(OLDER_THAN) and version(setting[len(OLDER_THAN) :]):
        wanted = version(setting[len(OLDER_THAN) :])
        return lambda row: (
            f"renderer {row.get('renderer') or 'unknown'}"
            if row.get("kind") and version(row.get("renderer")) < wanted
            else None
        )
    raise JobConfigError(
        f"The thumbnail job cannot use redo={setting!r}: it is `placeholders` or "
        f"`older-than=VERSION` (a version like 2026.12), or unset."
    )


def candidates(
    setting: str,
    previews: Mapping[str, Preview],
    record: Callable[[str], bytes | None],
    md5_of_file: Callable[[str], str | None] | None = None,
) -> dict[str, dict]:
    """Source name -> what the render step needs to redo its preview (`why`, the `md5` and, in a
    bucket, the `generation` to replace, the `renderer` recorded), from the output's previews
    (object name -> `Preview`) and a reader of batch records. In a local folder, which keeps no
    metadata, ``md5_of_file(preview name)`` reads the file's MD5 instead, and every record's rows
    are searched for the one of that MD5."""
    why = reason(setting)
    records = {}  # batch -> its rows by source name, read once
    recorded = {
        name.rsplit("/", 1)[1][: -len(".json")]
        for name in previews
        if name.startswith("report/batches/") and name.endswith(".json")
    }

    def rows_of(batch: str) -> dict[str, dict]:
        if batch not in records:
            try:
                rows = json.loads(record(batch) or b"null")["rows"]
            except (ValueError, KeyError, TypeError):
                rows = []
            records[batch] = {r["name"]: r for r in rows}
        return records[batch]

    out: dict[str, dict] = {}
    local = md5_of_file is not None
    by_name: dict[str, list[dict]] = {}
    if local:
        for batch in sorted(recorded):
            for name, row in rows_of(batch).items():
                if row.get("png_md5") and why(row):
                    by_name.setdefault(name, []).append(row)
    for preview_name, seen in previews.items():
        source = source_of(preview_name)
        if source is None:
            continue
        if local:
            rows = by_name.get(source)
            md5 = md5_of_file(preview_name) if rows else None
            row = next((r for r in rows or () if r["png_md5"] == md5), None)
            generation = 0
        else:
            if seen.batch is None or seen.batch not in recorded:
                continue
            if seen.kind is not None and not why({"kind": seen.kind, "renderer": seen.renderer}):
                continue  # what the object says of itself rules it out: its record is not read
            row = rows_of(seen.batch).get(source)
            md5, generation = seen.md5, seen.generation
            if row is None or (row.get("png_md5") and row["png_md5"] != md5):
                continue  # not (or no longer) the preview that batch wrote
        if row is None or md5 is None or not why(row):
            continue
        out[source] = {
            "why": why(row),
            "md5": md5,
            "generation": generation,
            "renderer": row.get("renderer") or "",
        }
    return out
