"""Make the previews of one batch, in one Python process.

Run by the ``render`` rule (``script:``). The renderer (`thumbnails.preview` and the RosettaSciIO
readers it loads) is imported once for the whole batch. Each file is fetched (with its companions,
e.g. the ``.emi`` of a ``.ser``), rendered, written under the output, and gets one report row.
Downloads run a few files ahead and uploads behind, in threads, while this thread renders: the
storage's latency is hidden behind the drawing instead of added to it.

A file that cannot be read gets a placeholder preview and an error row; the batch goes on. A storage
failure is not a file's fault: it fails the job with a one-paragraph message (no traceback), and the
next run redoes the batch. An object already at a preview's name is never replaced; unless it holds
this very preview (a retried upload whose answer was lost, a rerun), its row says it was kept.
"""

import json
import resource
import shutil
import sys
import tempfile
import time
import traceback
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TextIO

from thumbnails import report, store
from thumbnails.locations import Location, parse_location, preview_name

PROGRESS_SECONDS = 5.0  # at most one progress line per this many seconds on the terminal
IO_THREADS = 4  # concurrent downloads and uploads
AHEAD = 8  # files downloaded ahead of the one being drawn: bounds the scratch disk in use
GONE = "the file disappeared before the job could read it"
KEPT = "not written: another object was already at the preview's name and was kept"


class _Stopped(Exception):
    """A storage call not made because an earlier one of the batch failed."""


def fetch(source: Location, item: dict, scratch: Path) -> tuple[Path | None, list[str]]:
    """A readable copy of the file and its companions; None if the file is gone. Also the
    companions that could not be found."""
    try:
        path = store.fetch(source, item["name"], scratch / item["name"])
    except FileNotFoundError:
        return None, []
    missing = list(item.get("missing", []))
    for companion in item.get("companions", []):
        if companion not in missing:
            try:
                store.fetch(source, companion, scratch / companion)
            except FileNotFoundError:
                missing.append(companion)
    return path, missing


def render(
    renderer, source: Location, target: Location, name: str, path: Path | None, missing: list[str]
) -> tuple[dict, bytes | None]:
    """The report row of one file, and the PNG to write (None: nothing to write).
    Never raises for a bad file."""
    if path is None:
        return report.row(source, target, name, ok=False, preview=False, error=GONE), None
    try:
        preview = renderer.make_preview(path, name)
    except Exception as exc:  # noqa: BLE001 - a renderer bug must not cost the other files
        return report.row(
            source,
            target,
            name,
            ok=False,
            preview=False,
            error=f"the renderer failed: {type(exc).__name__}: {exc}",
        ), None
    error, shown = preview.error, preview.shown
    if missing:  # e.g. a .ser without its .emi: readable, but without calibration
        note = f"missing companion file: {', '.join(missing)}"
        if preview.ok:
            shown = f"{shown} ({note})"
        else:
            error = f"{error} ({note})"
    row = report.row(
        source,
        target,
        name,
        ok=preview.ok,
        kind=preview.kind,
        title=preview.title,
        signals=preview.signals,
        shown=shown,
        error=error,
    )
    return row, preview.png


def write(target: Location, name: str, png: bytes, batch: str) -> bool:
    """True when the preview is in place: written now by ``batch``, or found there with the same
    bytes as this job's own (a retry whose first answer was lost, a rerun after a killed batch).
    False when another object held its name: that object is kept as it is, never overwritten."""
    preview = preview_name(name)
    return store.create(target, preview, png, "image/png", batch=batch) or store.matches(
        target, preview, png, batch=batch
    )


def note_kept(row: dict) -> None:
    """Say in the row that its preview was not written over an existing object."""
    row["shown"] = f"{row['shown']} ({KEPT})" if row["shown"] else KEPT


def peak_memory_mib() -> float:
    """The most memory this process has held (its peak resident set), in MiB."""
    try:
        with open("/proc/self/status") as status:  # Linux: this process only, not its parent
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def render_one(renderer, source: Location, target: Location, item: dict, scratch: Path) -> dict:
    """Fetch, preview and write one file, all in this thread; returns its report row."""
    try:
        row, png = render(renderer, source, target, item["name"], *fetch(source, item, scratch))
        if png is not None and not write(target, item["name"], png):
            note_kept(row)
        return row
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def render_batch(manifest: dict, log: TextIO | None = None, progress: TextIO | None = None) -> dict:
    """Render every file of a manifest (see `plan.JobPlan.manifest`); returns the batch results."""
    source = parse_location(manifest["input"], "input")
    target = parse_location(manifest["output"], "output")
    batch, files = manifest["batch"], manifest["files"]
    progress = progress or sys.stderr

    def say(line: str, stream: TextIO | None) -> None:
        if stream is not None:
            print(line, file=stream, flush=True)

    start = time.perf_counter()
    from thumbnails import preview  # the heavy import, paid once per batch

    imported = time.perf_counter()
    say(f"batch {batch}: {len(files)} files, renderer loaded in {imported - start:.1f} s", log)
    rows: list[dict] = []
    kept: list[str] = []  # files whose preview's name was taken by another object
    failed = 0
    last = imported
    with (
        tempfile.TemporaryDirectory(prefix="thumbnail-batch-") as tmp,
        ThreadPoolExecutor(IO_THREADS, thread_name_prefix="storage") as pool,
    ):
        fetches: dict[int, Future] = {}
        uploads: deque[tuple[dict, Future]] = deque()
        failure: list[BaseException] = []  # the first storage error stops the batch

        def storage(fn, *args):
            """Run a storage call in the pool; once one has failed, the queued ones do not
            start (each would wait out its own retries), so the batch stops within one retry
            period of the storage going away."""
            if failure:
                raise _Stopped
            try:
                return fn(*args)
            except BaseException as exc:
                failure.append(exc)
                raise

        def finish_upload() -> None:
            row, upload = uploads.popleft()
            if not upload.result():  # a failed upload raises here and stops the batch early
                note_kept(row)
                kept.append(row["name"])

        queued = 0  # files whose download has been started
        try:
            for i, item in enumerate(files):
                while queued < min(i + AHEAD, len(files)):
                    fetches[queued] = pool.submit(
                        storage, fetch, source, files[queued], Path(tmp) / str(queued)
                    )
                    queued += 1
                t = time.perf_counter()
                row, png = render(preview, source, target, item["name"], *fetches.pop(i).result())
                shutil.rmtree(Path(tmp) / str(i), ignore_errors=True)
                if png is not None:
                    uploads.append(
                        (row, pool.submit(storage, write, target, item["name"], png, batch))
                    )
                while len(uploads) > 2 * IO_THREADS:
                    finish_upload()
                rows.append(row)
                failed += not row["ok"]
                now = time.perf_counter()
                state = "ok" if row["ok"] else f"FAILED: {row['error']}"
                say(
                    f"  {i + 1}/{len(files)} {row['name']}: {row['kind'] or '-'}, "
                    f"{1000 * (now - t):.0f} ms, {state}",
                    log,
                )
                if now - last >= PROGRESS_SECONDS or i + 1 == len(files):
                    rate = (i + 1) / (now - imported) if now > imported else 0.0
                    say(
                        f"batch {batch}: {i + 1}/{len(files)} files, {failed} failed, "
                        f"{rate:.1f} files/s",
                        progress,
                    )
                    last = now
            while uploads:
                finish_upload()
        except BaseException as exc:
            pool.shutdown(wait=True, cancel_futures=True)  # no upload left running unseen
            if isinstance(exc, _Stopped):
                raise failure[0] from None  # the error that stopped the batch, not its echo
            raise
    seconds = time.perf_counter() - start
    peak = peak_memory_mib()
    say(
        f"batch {batch}: {len(rows)} files in {seconds:.1f} s, {failed} failed, "
        f"{len(kept)} existing preview(s) kept, peak memory {peak:.0f} MiB",
        log,
    )
    results = {
        "batch": batch,
        "input": source.url,
        "output": target.url,
        "rows": rows,
        "files": len(rows),
        "failed": failed,
        "kept": kept,
        "seconds": round(seconds, 3),
        "import_seconds": round(imported - start, 3),
        "peak_memory_mib": round(peak),
    }
    # The batch's record, once all its previews are in place: from now on its files count as
    # reported, even if this run is killed before its report step (see thumbnails.report).
    store.create(target, report.record_name(batch), report.report_json(results), "application/json")
    return results


def main(smk) -> None:
    manifest = json.loads(Path(smk.input.manifest).read_text())
    with open(smk.log[0], "w") as log:
        try:
            results = render_batch(manifest, log=log)
        except store.StoreError as exc:  # the storage's fault, and the message says what to do
            print(exc, file=log)
            raise SystemExit(f"batch {manifest['batch']} stopped: {exc}") from None
        except Exception:
            traceback.print_exc(file=log)
            raise
    out = Path(smk.output.results)
    out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")


if "snakemake" in globals():
    main(snakemake)  # noqa: F821 - defined by Snakemake's script preamble
