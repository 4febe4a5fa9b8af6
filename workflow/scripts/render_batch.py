"""Make the previews of one batch, in one Python process.

Run by the ``render`` rule (``script:``). The renderer (`previews` and the RosettaSciIO readers it
loads) is imported once for the whole batch. Each file is fetched (with its companions, e.g. the
``.emi`` of a ``.ser``), rendered, written under the output, and gets one report row. Downloads run
a few files ahead and uploads behind, in threads, while this thread renders: the storage's latency
is hidden behind the drawing instead of added to it.

A file that cannot be read gets a placeholder preview and an error row; the batch goes on. A storage
failure is not a file's fault: it fails the job, and the next run redoes the batch.
"""

import json
import shutil
import sys
import tempfile
import time
import traceback
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TextIO

import jobplan
import jobstore

PROGRESS_SECONDS = 5.0  # at most one progress line per this many seconds on the terminal
IO_THREADS = 4  # concurrent downloads and uploads
AHEAD = 8  # files downloaded ahead of the one being drawn: bounds the scratch disk in use
GONE = "the file disappeared before the job could read it"


def fetch(source: jobplan.Location, item: dict, scratch: Path) -> tuple[Path | None, list[str]]:
    """A readable copy of the file and its companions; None if the file is gone. Also the
    companions that could not be found."""
    try:
        path = jobstore.fetch(source, item["name"], scratch / item["name"])
    except FileNotFoundError:
        return None, []
    missing = list(item.get("missing", []))
    for companion in item.get("companions", []):
        if companion not in missing:
            try:
                jobstore.fetch(source, companion, scratch / companion)
            except FileNotFoundError:
                missing.append(companion)
    return path, missing


def render(previews, source: jobplan.Location, target: jobplan.Location, name: str,
           path: Path | None, missing: list[str]) -> tuple[dict, bytes | None]:
    """The report row of one file, and the PNG to write (None: nothing to write).
    Never raises for a bad file."""
    if path is None:
        return jobplan.row(source, target, name, ok=False, preview=False, error=GONE), None
    try:
        preview = previews.make_preview(path, name)
    except Exception as exc:  # noqa: BLE001 - a renderer bug must not cost the other files
        return jobplan.row(source, target, name, ok=False, preview=False,
                           error=f"the renderer failed: {type(exc).__name__}: {exc}"), None
    error, shown = preview.error, preview.shown
    if missing:  # e.g. a .ser without its .emi: readable, but without calibration
        note = f"missing companion file: {', '.join(missing)}"
        if preview.ok:
            shown = f"{shown} ({note})"
        else:
            error = f"{error} ({note})"
    row = jobplan.row(source, target, name, ok=preview.ok, kind=preview.kind, title=preview.title,
                      signals=preview.signals, shown=shown, error=error)
    return row, preview.png


def write(target: jobplan.Location, name: str, png: bytes) -> bool:
    # False: a preview was already there (a rerun after an interruption); it is kept as it is.
    return jobstore.create(target, jobplan.preview_name(name), png, "image/png")


def render_one(previews, source: jobplan.Location, target: jobplan.Location, item: dict,
               scratch: Path) -> dict:
    """Fetch, preview and write one file, all in this thread; returns its report row."""
    try:
        row, png = render(previews, source, target, item["name"], *fetch(source, item, scratch))
        if png is not None:
            write(target, item["name"], png)
        return row
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


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
    with tempfile.TemporaryDirectory(prefix="thumbnail-batch-") as tmp, \
            ThreadPoolExecutor(IO_THREADS, thread_name_prefix="storage") as pool:
        fetches: dict[int, Future] = {}
        uploads: deque[Future] = deque()
        queued = 0  # files whose download has been started
        try:
            for i, item in enumerate(files):
                while queued < min(i + AHEAD, len(files)):
                    fetches[queued] = pool.submit(fetch, source, files[queued],
                                                  Path(tmp) / str(queued))
                    queued += 1
                t = time.perf_counter()
                row, png = render(previews, source, target, item["name"], *fetches.pop(i).result())
                shutil.rmtree(Path(tmp) / str(i), ignore_errors=True)
                if png is not None:
                    uploads.append(pool.submit(write, target, item["name"], png))
                while len(uploads) > 2 * IO_THREADS:  # a failed upload stops the batch early
                    uploads.popleft().result()
                rows.append(row)
                failed += not row["ok"]
                now = time.perf_counter()
                state = "ok" if row["ok"] else f"FAILED: {row['error']}"
                say(f"  {i + 1}/{len(files)} {row['name']}: {row['kind'] or '-'}, "
                    f"{1000 * (now - t):.0f} ms, {state}", log)
                if now - last >= PROGRESS_SECONDS or i + 1 == len(files):
                    rate = (i + 1) / (now - imported) if now > imported else 0.0
                    say(f"batch {batch}: {i + 1}/{len(files)} files, {failed} failed, "
                        f"{rate:.1f} files/s", progress)
                    last = now
            while uploads:
                uploads.popleft().result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # no upload left running unseen
            raise
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
