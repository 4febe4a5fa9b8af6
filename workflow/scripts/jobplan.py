"""What the thumbnail job must do: locations, preview names, what is new, batches, the report.

Pure functions only (no storage, no Snakemake), so the tests call them directly and the Snakefile
stays a list of rules. The storage calls are in `jobstore`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PREVIEW_SUFFIX = ".png"
REPORT_JSON = "report.json"
REPORT_CSV = "report.csv"
REPORT_COLUMNS = ("name", "source", "preview", "ok", "kind", "title", "signals", "shown", "error")
# Where the job keeps its own files, relative to Snakemake's working directory (on the cloud path
# Snakemake maps them into --default-storage-prefix). `results/` is ignored by git.
WORK = "results/thumbnail-job"

# Bucket names as Cloud Storage accepts them (3-222 characters; dots allowed).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


class JobConfigError(ValueError):
    """Configuration the job refuses; the message is one paragraph saying what to fix."""


# -- locations ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Location:
    """``gs://bucket/prefix`` or a local directory, normalised so that two spellings compare equal.

    ``path`` is the object-name prefix without leading or trailing slash (``""`` for a whole
    bucket) for ``gs``, and an absolute POSIX path without trailing slash for ``file``.
    """

    scheme: str  # "gs" or "file"
    bucket: str
    path: str

    @property
    def url(self) -> str:
        if self.scheme == "gs":
            return f"gs://{self.bucket}/{self.path}" if self.path else f"gs://{self.bucket}"
        return self.path

    def child(self, name: str) -> str:
        """Where the object ``name`` (relative to this location) lives, as a URL or a path."""
        return f"{self.url.rstrip('/')}/{name}"

    def key(self, name: str) -> str:
        """The object name in the bucket (gs) or the absolute path (file) of ``name``."""
        if self.scheme == "gs":
            return f"{self.path}/{name}" if self.path else name
        return os.path.join(self.path, *name.split("/"))

    def contains(self, other: Location) -> bool:
        """True when ``other`` is this location or lies anywhere under it."""
        if (self.scheme, self.bucket) != (other.scheme, other.bucket):
            return False
        if self.scheme == "gs" and not self.path:
            return True  # a whole bucket holds every prefix in it
        return other.path == self.path or other.path.startswith(self.path.rstrip("/") + "/")

    def __str__(self) -> str:
        return self.url


def parse_location(text: object, what: str, base: Path | None = None) -> Location:
    """Parse a config value; a relative local path is taken relative to ``base`` (default: cwd)."""
    if not isinstance(text, str) or not text.strip():
        raise JobConfigError(
            f"The thumbnail job needs `{what}` to be a location, `gs://bucket/prefix` or a local "
            f"directory, but got {text!r}. Set it in workflow/config/config.yaml or on the command "
            f"line, e.g. `--config {what}=gs://my-bucket/my-prefix`."
        )
    text = text.strip()
    if text.startswith("gs://"):
        bucket, _, prefix = text[len("gs://"):].partition("/")
        parts = [p for p in prefix.split("/") if p]
        if not _BUCKET.match(bucket) or any(p in (".", "..") for p in parts):
            raise JobConfigError(
                f"The thumbnail job cannot use {text!r} as `{what}`: a Cloud Storage location is "
                f"`gs://` followed by a bucket name (3-222 lower-case letters, digits, dots, "
                f"dashes or underscores) and an optional prefix without `.` or `..` parts, e.g. "
                f"`gs://nexuslims_example-datafiles/MockDataFiles`."
            )
        return Location("gs", bucket, "/".join(parts))
    if "://" in text:
        raise JobConfigError(
            f"The thumbnail job cannot use {text!r} as `{what}`: only `gs://bucket/prefix` "
            f"locations and local directories are supported."
        )
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    # resolve() follows symlinks, so a link from the output into the input is still caught.
    return Location("file", "", Path(os.path.normpath(path)).resolve().as_posix())


def check_locations(source: Location, target: Location) -> None:
    """Refuse an output that is, or lies under, the input (and the reverse)."""
    if source == target:
        relation = "is the same location as"
    elif source.contains(target):
        relation = "lies inside"
    elif target.contains(source):
        relation = "contains"
    else:
        return
    raise JobConfigError(
        f"The thumbnail job refuses this configuration: the output {target} {relation} the input "
        f"{source}. The job never writes where it reads, so that source files stay untouched and "
        f"previews are never taken for new microscope files on the next run. Choose an output "
        f"that does not overlap the input, e.g. `--config output=gs://my-bucket/previews` next to "
        f"`input=gs://my-bucket/raw`, or sibling local folders."
    )


def check_work_prefix(source: Location, work_prefix: str | None) -> None:
    """Refuse a ``--default-storage-prefix`` (where the job's own files go) under the input."""
    if not work_prefix:
        return
    text = work_prefix if "://" in work_prefix else f"gs://{work_prefix}"
    if not text.startswith("gs://"):
        return  # another storage provider: it cannot overlap a gs:// or local input
    work = parse_location(text, "default-storage-prefix")
    if source.contains(work):
        raise JobConfigError(
            f"The thumbnail job refuses --default-storage-prefix {work_prefix}: it lies inside the "
            f"input {source}, and Snakemake would write the job's work files among the source "
            f"files. Point it at a prefix of its own, e.g. `gs://my-bucket/snakemake-work`."
        )


def check_config_file(path: Path) -> None:
    """Refuse a config file that is not YAML, saying where, before Snakemake reads it (its own
    message names neither the file nor the line)."""
    import yaml

    try:
        yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise JobConfigError(
            f"The thumbnail job's configuration file {path} is not valid YAML{where}: {what}. "
            f"Each setting is `key: value` on a line of its own, indented with spaces, never "
            f"tabs; compare with the file in the repository (`git diff {path.name}` in its "
            f"folder shows your changes), or leave the file alone and give settings on the "
            f"command line with `--config KEY=VALUE`."
        ) from None


def config_problem(error: BaseException) -> str:
    """One paragraph from a failed schema validation (Snakemake wraps jsonschema's error)."""
    cause: BaseException | None = error
    while cause is not None and not hasattr(cause, "absolute_path"):
        cause = cause.__cause__ or cause.__context__  # Snakemake raises it from jsonschema's
    cause = cause or error
    where = "/".join(str(p) for p in getattr(cause, "absolute_path", ()))
    what = getattr(cause, "message", str(cause))
    return (
        f"The thumbnail job's configuration is malformed{f' at `{where}`' if where else ''}: "
        f"{what}. The keys are "
        f"`input` and `output` (each `gs://bucket/prefix` or a local directory), `batch_size` (a "
        f"whole number of files per job, at least 1), `max_files` (a whole number, or null for "
        f"all; `max_files=` on the command line) and `strict` (`strict=True` on the command line); "
        f"see workflow/schemas/config.schema.yaml."
    )


# -- naming and planning --------------------------------------------------------------------------
def preview_name(name: str) -> str:
    """The preview of ``a/x.dm3`` is ``a/x.dm3.png``: the source extension is kept, so ``x.dm3``
    and ``x.dm4`` never share a preview."""
    return name + PREVIEW_SUFFIX


def source_of(preview: str) -> str | None:
    """The source name a preview name belongs to, or None if it is not a preview name."""
    if preview.endswith(PREVIEW_SUFFIX) and len(preview) > len(PREVIEW_SUFFIX):
        return preview[: -len(PREVIEW_SUFFIX)]
    return None


@dataclass(frozen=True)
class Item:
    """One file to preview and the files that must sit beside it to be read."""

    name: str
    companions: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()  # companions the listing did not find

    def as_dict(self) -> dict:
        return {"name": self.name, "companions": list(self.companions),
                "missing": list(self.missing)}


@dataclass
class Plan:
    """The batches of one run, each named by a hash of its content (see `batch_id`)."""

    source: Location
    target: Location
    batches: dict[str, list[Item]] = field(default_factory=dict)
    listed: int = 0  # objects under the input
    previewable: int = 0  # of which the job makes previews
    done: int = 0  # of which already have a preview and a report row
    skipped: dict = field(default_factory=dict)  # what is not previewed (`skipped_files`)

    @property
    def id(self) -> str:
        return _digest([self.source.url, self.target.url, *self.batches])

    @property
    def files(self) -> int:
        return sum(len(items) for items in self.batches.values())

    def __bool__(self) -> bool:
        return bool(self.batches)

    def manifest(self, batch: str) -> dict:
        return {"batch": batch, "input": self.source.url, "output": self.target.url,
                "files": [item.as_dict() for item in self.batches[batch]]}

    def as_dict(self) -> dict:
        return {"plan": self.id, "input": self.source.url, "output": self.target.url,
                "listed": self.listed, "previewable": self.previewable, "done": self.done,
                "skipped": self.skipped,
                "batches": {b: [i.as_dict() for i in items] for b, items in self.batches.items()}}

    def describe(self) -> str:
        line = (f"thumbnail job: {self.listed} objects under {self.source}, {self.previewable} "
                f"previewable, {self.done} already done, {self.files} new in "
                f"{len(self.batches)} batch(es)")
        if self.skipped.get("files"):
            line += f"; {skipped_note(self.skipped)}"
        return line


def _digest(parts: Iterable[str]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def batch_id(source: Location, target: Location, names: Iterable[str]) -> str:
    """Same files between the same locations → same id, so an interrupted run resumes its batches;
    anything else → a new id, so a stale manifest is never reused for other work."""
    return _digest([source.url, target.url, *names])


def what_is_new(
    sources: Iterable[str],
    outputs: Iterable[str],
    reported: Iterable[str],
    is_previewable: Callable[[str], bool],
) -> tuple[list[str], set[str], int]:
    """Previewable sources that lack a preview or a report row, sorted; plus every source name
    (to check companions) and how many previewable files are already done.

    A file with a preview but no report row is redone: that is what an interrupted run leaves, and
    redoing it only adds the row (the existing preview is never overwritten).
    """
    have = {src for src in map(source_of, outputs) if src is not None}
    rows = set(reported)
    names: set[str] = set()
    new: list[str] = []
    done = 0
    for name in sources:
        names.add(name)
        if not is_previewable(name):
            continue
        if name in have and name in rows:
            done += 1
        else:
            new.append(name)
    new.sort()  # a GCS listing is sorted, os.walk is not: batches must not depend on it
    return new, names, done


def make_plan(
    source: Location,
    target: Location,
    sources: Iterable[str],
    outputs: Iterable[str],
    reported: Iterable[str],
    is_previewable: Callable[[str], bool],
    companion_names: Callable[[str], list[str]],
    batch_size: int,
    max_files: int | None = None,
    workers: int = 1,
) -> Plan:
    """Everything the run will do, from one listing of the input and one of the output."""
    if batch_size < 1:
        raise JobConfigError(f"batch_size must be at least 1, got {batch_size}.")
    new, names, done = what_is_new(sources, outputs, reported, is_previewable)
    previewable = len(new) + done
    if max_files is not None:
        new = new[:max_files]
    items = []
    for name in new:
        companions = tuple(companion_names(name))
        items.append(Item(name, companions, tuple(c for c in companions if c not in names)))
    plan = Plan(source, target, listed=len(names), previewable=previewable, done=done,
                skipped=skipped_files(names, is_previewable, companion_names))
    for chunk in split(items, batch_size, workers):
        plan.batches[batch_id(source, target, (i.name for i in chunk))] = chunk
    return plan


SKIPPED_EXAMPLES = 20  # names of skipped files kept in the plan and the report


def skipped_files(names: Iterable[str], is_previewable: Callable[[str], bool],
                  companion_names: Callable[[str], list[str]]) -> dict:
    """The files under the input the job does not preview: neither of a type it reads nor a
    companion of one that is (the .emi beside a .ser). They get no placeholder and no report row;
    the plan and the report count them by type, with a few names, so that the user knows they
    were seen and left alone."""
    names = sorted(names)
    used = {c for name in names if is_previewable(name) for c in companion_names(name)}
    left = [n for n in names if not is_previewable(n) and n not in used]
    types: dict[str, int] = {}
    for name in left:
        suffix = os.path.splitext(name.rsplit("/", 1)[-1])[1].lower() or "no extension"
        types[suffix] = types.get(suffix, 0) + 1
    return {"files": len(left), "types": dict(sorted(types.items())),
            "examples": left[:SKIPPED_EXAMPLES]}


def skipped_note(summary: Mapping, most: int = 5) -> str:
    """E.g. "3 files skipped: not a type the job previews (.txt 1, .xyz 2)"; the ``most`` commonest
    types only (the report has them all)."""
    n = summary["files"]
    types = sorted(summary.get("types", {}).items(), key=lambda tc: (-tc[1], tc[0]))
    shown = ", ".join(f"{t} {c}" for t, c in types[:most])
    if len(types) > most:
        shown += f" and {len(types) - most} more types"
    return (f"{n} file{'s' if n != 1 else ''} skipped: not a type the job previews"
            + (f" ({shown})" if shown else ""))


def split(items: list, batch_size: int, workers: int = 1) -> list[list]:
    """Batches of at most ``batch_size``, as even as possible, and a multiple of ``workers`` of
    them where there are enough items, so that no worker idles while one finishes a big batch.

    201 items, size 200, 1 worker: two batches of 101 and 100 (not 200 and 1); 1,000 items, size
    200, 4 workers: eight batches of 125 (not five of 200, the fifth running alone).
    """
    n = len(items)
    if n == 0:
        return []
    count = -(-n // batch_size)
    if workers > 1:
        count = min(n, -(-count // workers) * workers)
    size, extra = divmod(n, count)  # the first `extra` batches take one more
    bounds = [i * size + min(i, extra) for i in range(count + 1)]
    return [items[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


# -- the report -----------------------------------------------------------------------------------
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
