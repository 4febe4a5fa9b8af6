"""Make the previews of one batch, in one Python process.

Run by the ``render`` rule (``script:``). The renderer (`previews`, which loads HyperSpy and
RosettaSciIO) is imported once for the whole batch; each file is then fetched (with its companions,
e.g. the ``.emi`` of a ``.ser``), rendered and written under the output, and gets one report row.
A file that cannot be read gets a placeholder preview and an error row; the batch goes on. A storage
failure is not a file's fault: it fails the job, and the next run redoes the batch.
"""

import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import TextIO

import jobplan
import jobstore

PROGRESS_SECONDS = 5.0  # at most one progress line per this many seconds on the terminal


def render_one(previews, source: jobplan.Location, target: jobplan.Location, item: dict,
               scratch: Path) -> dict:
    """Preview one file; returns its report row. Never raises for a bad file."""
    name = item["name"]
    try:
        try:
            path = jobstore.fetch(source, name, scratch / name)
        except FileNotFoundError:
            return jobplan.row(source, target, name, ok=False, preview=False,
                               error="the file disappeared before the job could read it")
        missing = list(item.get("missing", []))
        for companion in item.get("companions", []):
            if companion in missing:
                continue
            try:
                jobstore.fetch(source, companion, scratch / companion)
            except FileNotFoundError:
                missing.append(companion)
        try:
            preview = previews.make_preview(path, name)
        except Exception as exc:  # noqa: BLE001 - a renderer bug must not cost the other files
            return jobplan.row(source, target, name, ok=False, preview=False,
                               error=f"the renderer failed: {type(exc).__name__}: {exc}")
        error, shown = preview.error, preview.shown
        if missing:  # e.g. a .ser without its .emi: readable, but without calibration
            note = f"missing companion file: {', '.join(missing)}"
            if preview.ok:
                shown = f"{shown} ({note})"
            else:
                error = f"{error} ({note})"
        # False means a preview was already there (a rerun after an interruption): it is kept.
        jobstore.create(target, jobplan.preview_name(name), preview.png, "image/png")
        return jobplan.row(source, target, name, ok=preview.ok, kind=preview.kind,
                           title=preview.title, signals=preview.signals, shown=shown, error=error)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # disk use stays one file's worth


def render_batch(manifest: dict, log: TextIO | None = None, progress: TextIO | None = None) -> dict:
    """Render every file of a manifest (see `jobplan.Plan.manifest`); returns the batch results."""
    source = jobplan.parse_location(manifest["input"], "input")
    target = jobplan.parse_location(manifest["output"], "output")
    batch, files = manifest["batch"], manifest["files"]
    progress = progress or sys.stderr

    def say(line: str, stream: TextIO | None) -> None:
        if stream is not None:
            print(line, file=stream, flush=True)

    start = time.perf_counter()
    import previews  # the heavy import, paid once per batch

    imported = time.perf_counter()
    say(f"batch {batch}: {len(files)} files, renderer loaded in {imported - start:.1f} s", log)
    rows: list[dict] = []
    failed = 0
    last = imported
    with tempfile.TemporaryDirectory(prefix="thumbnail-batch-") as tmp:
        for i, item in enumerate(files, 1):
            t = time.perf_counter()
            r = render_one(previews, source, target, item, Path(tmp) / str(i))
            rows.append(r)
            failed += not r["ok"]
            now = time.perf_counter()
            state = "ok" if r["ok"] else f"FAILED: {r['error']}"
            say(f"  {i}/{len(files)} {r['name']}: {r['kind'] or '-'}, "
                f"{1000 * (now - t):.0f} ms, {state}", log)
            if now - last >= PROGRESS_SECONDS or i == len(files):
                rate = i / (now - imported) if now > imported else 0.0
                say(f"batch {batch}: {i}/{len(files)} files, {failed} failed, "
                    f"{rate:.1f} files/s", progress)
                last = now
    seconds = time.perf_counter() - start
    return {"batch": batch, "input": source.url, "output": target.url, "rows": rows,
            "files": len(rows), "failed": failed, "seconds": round(seconds, 3),
            "import_seconds": round(imported - start, 3)}


def main(smk) -> None:
    manifest = json.loads(Path(smk.input.manifest).read_text())
    with open(smk.log[0], "w") as log:
        try:
            results = render_batch(manifest, log=log)
        except Exception:
            traceback.print_exc(file=log)
            raise
    out = Path(smk.output.results)
    out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")


if "snakemake" in globals():
    main(snakemake)  # noqa: F821 - defined by Snakemake's script preamble
