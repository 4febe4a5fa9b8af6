"""Make the previews of one batch: this process fetches and writes, one renderer process draws.

Run by the ``render`` rule: ``python render_batch.py MANIFEST RESULTS LOG``. The renderer
(`thumbnails.preview` and the RosettaSciIO readers it loads) runs in a process of its own
(`thumbnails.worker`), started once for the whole batch. Each file is fetched (with its
companions, e.g. the ``.emi`` of a ``.ser``), rendered, written under the output, and gets one
report row. Downloads run a few files ahead and uploads
behind, in threads, while the renderer draws: the storage's latency is hidden behind the drawing
instead of added to it. The renderer gets the next file before this process writes the last one's
preview, so it does not wait for this process either.

A file that cannot be read gets a placeholder preview and an error row; the batch goes on. A file
that stops the renderer itself (the kernel's OOM killer, a reader that crashes) gets a placeholder
saying so from a fresh renderer, and the batch goes on. A file whose name cannot have a preview
(in a folder: a leading ``/``, ``..`` parts, a part too long for the file system) gets a row
saying why and nothing is written for it; downloads go to numbered scratch folders, never to a
path taken from a name. A storage failure is not a file's fault: it fails the job with a
one-paragraph message (no traceback), and the next run redoes the batch. An object already at a
preview's name is never replaced; unless it holds this very preview (a retried upload whose
answer was lost, a rerun), its row says it was kept. With ``redo:`` a preview this job made is
replaced (`store.swap`) when the file's new preview differs, never an object someone else put
there.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import TextIO

import thumbnails
from thumbnails import report, store
from thumbnails.locations import Location, parse_location, preview_name, preview_place
from thumbnails.worker import peak_memory_mib

PROGRESS_SECONDS = 5.0  # at most one progress line per this many seconds on the terminal
IO_THREADS = 4  # concurrent downloads and uploads
AHEAD = 8  # files downloaded ahead of the one being drawn: bounds the scratch disk in use
RENDER_AHEAD = 1  # files handed to the renderer ahead of the one whose preview is written
GONE = "the file disappeared before the job could read it"
KEPT = report.KEPT
OUTSIDE = (
    "no preview written: its place in the output folder lies outside it (a symbolic link in "
    "the output folder points elsewhere)"
)
LEAF_BYTES = 100  # scratch copies keep a plain file name up to this long (readers pair by it)


def _library_env() -> dict[str, str]:
    """This process's environment with the job's library (the folder `thumbnails` is in) first
    on PYTHONPATH: the renderer's process imports the same library as this one."""
    env = dict(os.environ)
    library = str(Path(thumbnails.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (library, env.get("PYTHONPATH"))))
    return env


class _Stopped(Exception):
    """A storage call not made because an earlier one of the batch failed."""


class _Died(Exception):
    """The renderer's process ended without answering."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def stopped_reason(status: int) -> str:
    """The placeholder's reason for a file during which the renderer's process ended."""
    if status == -signal.SIGKILL:
        how = (
            "killed by the system (SIGKILL), most likely because reading the file needed more "
            "memory than the machine has"
        )
    elif status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        how = f"it crashed reading the file ({name})"
    else:
        how = f"it exited with status {status} while reading the file"
    return f"unreadable: the file stopped the renderer: {how}"


class Renderer:
    """`preview.make_preview` in the renderer's own process (`thumbnails.worker`), started at
    once so that its imports overlap the first downloads, and started again when a file stops it:
    that file's preview is then a placeholder saying so.

    Files are handed over ahead (`submit`) and their previews taken in the same order (`result`),
    so the renderer starts on the next file while this process writes the last one's, instead of
    waiting for it; when the renderer stops, the file it was on is the oldest not answered, and
    the files sent after it go to the new renderer."""

    def __init__(self, stderr: TextIO | None = None) -> None:
        self._stderr = stderr
        self.import_seconds: float | None = None
        self.stops = 0  # files that stopped the renderer
        self.peak_mib = 0.0
        self._sent: deque[dict] = deque()  # requests not answered yet, oldest first
        self._start()

    def _start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "thumbnails.worker"],
            env=_library_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._ready = False

    def _receive(self) -> dict:
        try:
            return pickle.load(self._proc.stdout)
        except (EOFError, OSError, pickle.UnpicklingError):
            raise _Died(self._proc.wait()) from None

    def _send(self, request: dict) -> None:
        """Write one request. A renderer that has ended is found out when its answer is read:
        the file it was on then is the oldest one sent."""
        try:
            pickle.dump(request, self._proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._proc.stdin.flush()
        except OSError:
            pass

    def _answer(self) -> dict:
        if not self._ready:
            ready = self._receive()
            self._ready = True
            if self.import_seconds is None:
                self.import_seconds = ready["import_seconds"]
        return self._receive()

    @property
    def waiting(self) -> int:
        """Files submitted whose preview has not been taken yet."""
        return len(self._sent)

    def submit(self, path: Path, name: str) -> None:
        """Hand one file to the renderer; its preview comes from `result`, in this order."""
        request = {"op": "render", "path": str(path), "name": name}
        self._sent.append(request)
        self._send(request)

    def result(self) -> SimpleNamespace:
        """The preview of the oldest file submitted and not yet taken."""
        request = self._sent.popleft()
        try:
            return SimpleNamespace(**self._answer())
        except _Died as died:
            reason = stopped_reason(died.status)
        self.stops += 1
        self._end()
        self._start()
        self._send({"op": "placeholder", "name": request["name"], "reason": reason})
        for later in self._sent:  # sent to the renderer that stopped: to this one now
            self._send(later)
        try:
            made = self._answer()
        except _Died as again:  # not the file: the renderer cannot start at all
            raise RuntimeError(
                f"the renderer's process ended with status {again.status} before rendering "
                f"anything; see the batch's log"
            ) from None
        return SimpleNamespace(**made)

    def make_preview(self, path: Path, name: str) -> SimpleNamespace:
        self.submit(path, name)
        return self.result()

    def close(self) -> None:
        try:
            self._send({"op": "bye"})
            while True:  # (after an error, the answers to files still sent come first)
                answer = self._answer()
                if "peak_memory_mib" in answer:
                    self.peak_mib = max(self.peak_mib, answer["peak_memory_mib"])
                    break
        except _Died:
            pass
        finally:
            self._sent.clear()
            self._end()

    def _end(self) -> None:
        """Close this process's ends of the pipes and wait for the renderer's process to end."""
        for pipe in (self._proc.stdin, self._proc.stdout):
            # a dead renderer's stdin: the flush of what it never read fails
            with contextlib.suppress(OSError):
                pipe.close()
        self._proc.wait()


def scratch_leaves(names: list[str]) -> list[str]:
    """The file names the scratch copies of a file and its companions get, in a numbered folder
    of their own: each object's own last part when every one is plain (readers pair a ``.ser``
    with its ``.emi`` by name), else ``file<i>`` with the extension; never a path, whatever the
    names hold."""
    leaves = [n.rpartition("/")[2] for n in names]

    def plain(leaf: str) -> bool:
        return (
            leaf not in ("", ".", "..")
            and len(leaf.encode()) <= LEAF_BYTES
            and leaf.isprintable()
            and not leaf.startswith("-")
        )

    if all(map(plain, leaves)) and len(set(leaves)) == len(leaves):
        return leaves
    out = []
    for i, leaf in enumerate(leaves):
        ext = Path(leaf).suffix if plain(Path(leaf).suffix) else ""
        out.append(f"file{i}{ext}")
    return out


def fetch(source: Location, item: dict, scratch: Path) -> tuple[Path | None, list[str]]:
    """A readable copy of the file and its companions; None if the file is gone. Also the
    companions that could not be found."""
    names = [item["name"], *item.get("companions", [])]
    leaves = dict(zip(names, scratch_leaves(names), strict=True))
    try:
        path = store.fetch(source, item["name"], scratch / leaves[item["name"]])
    except FileNotFoundError:
        return None, []
    missing = list(item.get("missing", []))
    for companion in names[1:]:
        if companion not in missing:
            try:
                store.fetch(source, companion, scratch / leaves[companion])
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
    renderer.submit(path, name)
    return rendered(renderer, source, target, name, missing)


def rendered(
    renderer, source: Location, target: Location, name: str, missing: list[str]
) -> tuple[dict, bytes | None]:
    """`render`'s row and PNG for the renderer's oldest file submitted (`Renderer.submit`)."""
    try:
        preview = renderer.result()
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
        renderer=thumbnails.RENDERER,
    )
    row["png_md5"] = store.md5_of(preview.png)  # in the record: what a `redo` may replace
    return row, preview.png


def write(
    target: Location, name: str, png: bytes, batch: str, kind: str | None = None, redo=None
) -> bool:
    """True when the preview is in place: written now by ``batch``, or found there with the same
    bytes as this job's own (a retry whose first answer was lost, a rerun after a killed batch).
    False when another object held its name: that object is kept as it is, never overwritten.
    ``redo``: the plan's note of one of the job's own previews to replace (`store.swap`)."""
    preview = preview_name(name)
    if (
        redo
        and png_differs(redo, png)
        and store.swap(
            target,
            preview,
            png,
            "image/png",
            redo.get("generation", 0),
            redo["md5"],
            batch,
            thumbnails.RENDERER,
            kind or "",
        )
    ):
        return True
    return store.create(
        target, preview, png, "image/png", batch=batch, renderer=thumbnails.RENDERER, kind=kind
    ) or store.matches(target, preview, png, batch=batch)


def png_differs(redo: dict, png: bytes) -> bool:
    """Whether a redo changes anything: new bytes, or a newer renderer recorded for the same."""
    return redo["md5"] != store.md5_of(png) or redo.get("renderer") != thumbnails.RENDERER


def note_kept(row: dict) -> None:
    """Say in the row that its preview was not written over an existing object."""
    row["shown"] = f"{row['shown']} ({KEPT})" if row["shown"] else KEPT
    row["renderer"] = ""
    row["redone"] = ""
    row.pop("png_md5", None)


def no_place(row: dict, reason: str) -> None:
    """Say in the row that nothing was written for it, and why."""
    row.update(ok=False, preview="", error=reason, renderer="", redone="")
    row.pop("png_md5", None)


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
    try:
        log.fileno()  # the renderer's own messages go to the batch's log when it is a file
        renderer = Renderer(stderr=log)
    except (AttributeError, OSError, ValueError):
        renderer = Renderer()
    rows: list[dict] = []
    kept: list[str] = []  # files whose preview's name was taken by another object
    failed = 0
    last = start
    with (
        tempfile.TemporaryDirectory(prefix="thumbnail-batch-") as tmp,
        ThreadPoolExecutor(IO_THREADS, thread_name_prefix="storage") as pool,
    ):
        fetches: dict[int, Future] = {}
        uploads: deque[tuple[dict, Future]] = deque()
        failure: list[BaseException] = []  # the first storage error stops the batch
        places = [preview_place(target, item["name"]) for item in files]

        def storage(fn, *args):
            """Run a storage call in the pool; once one has failed, the queued ones do not
            start (each would wait out its own retries), so the batch stops within one retry
            period of the storage going away."""
            if failure:
                raise _Stopped
            try:
                return fn(*args)
            except store.NotInside:
                raise
            except BaseException as exc:
                failure.append(exc)
                raise

        def finish_upload() -> None:
            row, upload = uploads.popleft()
            try:
                written = upload.result()  # a failed upload raises here and stops the batch
            except store.NotInside:
                no_place(row, OUTSIDE)
                return
            if not written:
                note_kept(row)
                kept.append(row["name"])

        queued = 0  # files whose download has been started
        handed = 0  # files handed to the renderer (or found to need none), in order
        fetched: dict[int, tuple[Path | None, list[str]]] = {}

        def hand(j: int) -> None:
            """Give file ``j`` to the renderer once it is downloaded (waiting for it)."""
            if places[j] is None:
                fetched[j] = fetches.pop(j).result()
                if fetched[j][0] is not None:
                    renderer.submit(fetched[j][0], files[j]["name"])

        try:
            for i, item in enumerate(files):
                while queued < min(i + AHEAD, len(files)):
                    if places[queued] is None:
                        fetches[queued] = pool.submit(
                            storage, fetch, source, files[queued], Path(tmp) / str(queued)
                        )
                    queued += 1
                t = time.perf_counter()
                if handed == i:
                    hand(i)
                    handed += 1
                # The next files too, as far as they are downloaded (a failed download is met
                # in its turn): the renderer goes on to them while this one's preview is written.
                while handed < min(i + RENDER_AHEAD + 1, len(files)) and (
                    places[handed] is not None
                    or (fetches[handed].done() and fetches[handed].exception() is None)
                ):
                    hand(handed)
                    handed += 1
                if places[i] is not None:  # the name cannot have a preview: say why, no fetch
                    row = report.row(source, target, item["name"], ok=False, preview=False)
                    no_place(row, places[i])
                    png = None
                else:
                    path, missing = fetched.pop(i)
                    if path is None:
                        row, png = render(renderer, source, target, item["name"], None, missing)
                    else:
                        row, png = rendered(renderer, source, target, item["name"], missing)
                shutil.rmtree(Path(tmp) / str(i), ignore_errors=True)
                if png is not None:
                    redo = item.get("redo")
                    if redo and png_differs(redo, png):
                        row["redone"] = redo["why"]
                    uploads.append(
                        (
                            row,
                            pool.submit(
                                storage, write, target, item["name"], png, batch, row["kind"], redo
                            ),
                        )
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
                    rate = (i + 1) / (now - start) if now > start else 0.0
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
        finally:
            renderer.close()
    failed = sum(not r["ok"] for r in rows)  # a row may have changed when its upload ended
    seconds = time.perf_counter() - start
    peak = max(peak_memory_mib(), renderer.peak_mib)
    say(
        f"batch {batch}: {len(rows)} files in {seconds:.1f} s (renderer loaded in "
        f"{renderer.import_seconds or 0:.1f} s), {failed} failed, {len(kept)} existing "
        f"preview(s) kept, {renderer.stops} stopped the renderer, peak memory {peak:.0f} MiB",
        log,
    )
    results = {
        "batch": batch,
        "input": source.url,
        "output": target.url,
        "renderer": thumbnails.RENDERER,
        "rows": rows,
        "files": len(rows),
        "failed": failed,
        "kept": kept,
        "seconds": round(seconds, 3),
        "import_seconds": round(renderer.import_seconds or 0, 3),
        "peak_memory_mib": round(peak),
    }
    # The batch's record, once all its previews are in place: from now on its files count as
    # reported, even if this run is killed before its report step (see thumbnails.report).
    store.create(target, report.record_name(batch), report.report_json(results), "application/json")
    return results


def main(manifest_path: str, results_path: str, log_path: str) -> None:
    manifest = json.loads(Path(manifest_path).read_text())
    with open(log_path, "w") as log:
        try:
            results = render_batch(manifest, log=log)
        except store.StoreError as exc:  # the storage's fault, and the message says what to do
            print(exc, file=log)
            raise SystemExit(f"batch {manifest['batch']} stopped: {exc}") from None
        except Exception:
            traceback.print_exc(file=log)
            raise
    out = Path(results_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_suffix(".part")  # whole or absent, should the run be killed
    marker = {k: results[k] for k in ("batch", "files", "failed", "seconds")}  # the record has all
    part.write_text(json.dumps(marker) + "\n")
    part.replace(out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
