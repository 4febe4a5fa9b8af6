"""The plan of a run and one manifest per batch, written while Snakemake reads the Snakefile.

The plan is made once, from one listing of the input and one of the output (`thumbnails.plan`).
Here it is written to ``<work>/plans/<plan>.json`` and cut into the manifests the ``render`` jobs
read, ``<work>/manifests/<batch>.json``, each whole or absent (written aside, then renamed). On
the cloud path the render jobs run on Batch machines, which find their manifest in the default
storage: there each one is uploaded too, where Snakemake looks for that path under
``--default-storage-prefix``. Standard library only, but for that upload.
"""

from __future__ import annotations

import json
from pathlib import Path

from thumbnails import store
from thumbnails.locations import Location
from thumbnails.plan import JobPlan


def plan_file(plan: JobPlan, work: Path) -> Path:
    return work / "plans" / f"{plan.id}.json"


def manifest_file(batch: str, work: Path) -> Path:
    return work / "manifests" / f"{batch}.json"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".part")
    part.write_text(text)
    part.replace(path)


def write_plan(plan: JobPlan, work: Path, storage: Location | None = None) -> None:
    """The plan and its manifests under ``work``; with ``storage`` (the default storage prefix
    of the cloud path), each manifest there too, at the same relative path."""
    if not plan_file(plan, work).exists():
        _write(plan_file(plan, work), json.dumps(plan.as_dict(), ensure_ascii=False))
    for batch in plan.batches:
        text = json.dumps(plan.manifest(batch), indent=1, ensure_ascii=False) + "\n"
        path = manifest_file(batch, work)
        _write(path, text)
        if storage is not None:
            store.replace(storage, path.as_posix(), text.encode(), "application/json")
