"""What one run of the thumbnail job will do: what is new, and the batches it is cut into.

Pure functions only: the Snakefile passes in one listing of the input, one of the output and the
names the previous report holds (``report.reported_names``), and the format table's
``is_previewable`` and ``companion_names``. Each batch is named by a hash of its content, so an
interrupted run resumes its batches and a stale manifest is never reused for other work.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field

from .locations import JobConfigError, Location, source_of

# Where the job keeps its own files, relative to Snakemake's working directory (on the cloud path
# Snakemake maps them into --default-storage-prefix). `results/` is ignored by git.
WORK = "results/thumbnail-job"
SKIPPED_EXAMPLES = 20  # names of skipped files kept in the plan and the report


@dataclass(frozen=True)
class Item:
    """One file to preview and the files that must sit beside it to be read."""

    name: str
    companions: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()  # companions the listing did not find
    redo: dict | None = None  # the job's own preview a `redo:` run replaces (`redo.candidates`)

    def as_dict(self) -> dict:
        item = {
            "name": self.name,
            "companions": list(self.companions),
            "missing": list(self.missing),
        }
        if self.redo:
            item["redo"] = dict(self.redo)
        return item

    @property
    def key(self) -> str:
        """What the batch's id is made of: the name, and for a redo the version it replaces."""
        return f"{self.name}\0redo {self.redo['md5']}" if self.redo else self.name


@dataclass
class JobPlan:
    """The batches of one run, each named by a hash of its content (see `batch_id`)."""

    source: Location
    target: Location
    batches: dict[str, list[Item]] = field(default_factory=dict)
    listed: int = 0  # objects under the input
    previewable: int = 0  # of which the job makes previews
    done: int = 0  # of which already have a preview and a report row
    redone: int = 0  # of those, how many this run redoes (`redo:`)
    skipped: dict = field(default_factory=dict)  # what is not previewed (`skipped_files`)
    # Records in the output the report does not hold yet (a run stopped before or during its
    # report step): this run's report step adds their rows, even with nothing new to preview.
    pending: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return _digest([self.source.url, self.target.url, *self.batches, "+", *self.pending])

    @property
    def files(self) -> int:
        return sum(len(items) for items in self.batches.values())

    def __bool__(self) -> bool:
        """Whether the run has work: batches to render, or records to add to the report."""
        return bool(self.batches or self.pending)

    def manifest(self, batch: str) -> dict:
        return {
            "batch": batch,
            "input": self.source.url,
            "output": self.target.url,
            "files": [item.as_dict() for item in self.batches[batch]],
        }

    def as_dict(self) -> dict:
        return {
            "plan": self.id,
            "input": self.source.url,
            "output": self.target.url,
            "listed": self.listed,
            "previewable": self.previewable,
            "done": self.done,
            "redone": self.redone,
            "skipped": self.skipped,
            "pending": self.pending,
            "batches": {b: [i.as_dict() for i in items] for b, items in self.batches.items()},
        }

    def describe(self) -> str:
        new = self.files - self.redone
        line = (
            f"thumbnail job: {self.listed} objects under {self.source}, {self.previewable} "
            f"previewable, {self.done} already done, {new} new"
            + (f" and {self.redone} to redo" if self.redone else "")
            + f" in {len(self.batches)} batch(es)"
        )
        if self.pending:
            line += (
                f"; the report lacks the rows of {len(self.pending)} batch(es) a stopped run "
                f"left, which this run adds"
            )
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
    without_preview: Iterable[str] = (),
) -> tuple[list[str], set[str], int]:
    """Previewable sources that lack a preview or a report row, sorted; plus every source name
    (to check companions) and how many previewable files are already done. ``without_preview``:
    files done with a row only, since their names can have no preview in the output.

    A file with a preview but no report row is redone: that is what an interrupted run leaves, and
    redoing it only adds the row (the existing preview is never overwritten).
    """
    have = {src for src in map(source_of, outputs) if src is not None} | set(without_preview)
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
    companion_names: Callable[[str, Container[str]], list[str]],
    batch_size: int,
    max_files: int | None = None,
    workers: int = 1,
    pending: Iterable[str] = (),
    without_preview: Iterable[str] = (),
    redo: Mapping[str, dict] | None = None,
) -> JobPlan:
    """Everything the run will do, from one listing of the input and one of the output;
    ``pending``: the records the report does not hold yet; ``without_preview``: see
    `what_is_new`; ``redo``: previews to redo (`redo.candidates`), of files already done."""
    if batch_size < 1:
        raise JobConfigError(f"batch_size must be at least 1, got {batch_size}.")
    new, names, done = what_is_new(sources, outputs, reported, is_previewable, without_preview)
    previewable = len(new) + done
    redo = {n: r for n, r in (redo or {}).items() if n in names and n not in set(new)}
    new = sorted([*new, *redo])
    if max_files is not None:
        new = new[:max_files]
    items = []
    for name in new:
        companions = tuple(companion_names(name, names))  # as spelt there: x.EMI or x.emi
        missing = tuple(c for c in companions if c not in names)
        items.append(Item(name, companions, missing, redo.get(name)))
    plan = JobPlan(
        source,
        target,
        listed=len(names),
        previewable=previewable,
        done=done - len(redo),
        redone=sum(1 for item in items if item.redo),
        skipped=skipped_files(names, is_previewable, companion_names),
        pending=sorted(pending),
    )
    for chunk in split(items, batch_size, workers):
        plan.batches[batch_id(source, target, (i.key for i in chunk))] = chunk
    return plan


def skipped_files(
    names: Iterable[str],
    is_previewable: Callable[[str], bool],
    companion_names: Callable[[str, Container[str]], list[str]],
) -> dict:
    """The files under the input the job does not preview: neither of a type it reads nor a
    companion of one that is (the .emi beside a .ser). They get no placeholder and no report row;
    the plan and the report count them by type, with a few names, so that the user knows they
    were seen and left alone."""
    listed = set(names)
    names = sorted(listed)
    used = {c for name in names if is_previewable(name) for c in companion_names(name, listed)}
    left = [n for n in names if not is_previewable(n) and n not in used]
    types: dict[str, int] = {}
    for name in left:
        suffix = os.path.splitext(name.rsplit("/", 1)[-1])[1].lower() or "no extension"
        types[suffix] = types.get(suffix, 0) + 1
    return {
        "files": len(left),
        "types": dict(sorted(types.items())),
        "examples": left[:SKIPPED_EXAMPLES],
    }


def skipped_note(summary: Mapping, most: int = 5) -> str:
    """E.g. "3 files skipped: not a type the job previews (.txt 1, .xyz 2)"; the ``most`` commonest
    types only (the report has them all)."""
    n = summary["files"]
    types = sorted(summary.get("types", {}).items(), key=lambda tc: (-tc[1], tc[0]))
    shown = ", ".join(f"{t} {c}" for t, c in types[:most])
    if len(types) > most:
        shown += f" and {len(types) - most} more types"
    return f"{n} file{'s' if n != 1 else ''} skipped: not a type the job previews" + (
        f" ({shown})" if shown else ""
    )


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
