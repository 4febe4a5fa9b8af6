"""Nothing in the book deletes, empties or replaces what the reader did not make in the same run.

Before the book's commands and notebooks run, a bucket stands at every name they use, holding
objects at the names they write and others beside them, as a reader's buckets would after a
previous run, or after the reader put their own files there. Each page, in such a world of its
own: a chapter's commands run (as the build runs them, `terminal.run`), or a notebook runs
(jupytext reads it, nbclient executes it, in its own folder as myst-nb does). Then every object
that was there is still there, at the same generation (any rewrite, even of the same bytes,
changes it), and so is every bucket.
The same again with a reader's own bucket named in place of the example's.

Not pre-populated: the thumbnail job's own ``report.json`` and ``report.csv``, which the job reads
and extends at every run by design (under a generation precondition); tests/workflow covers them.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import jupytext
import pytest
from nbclient import NotebookClient
from PIL import Image

from microscopy_notebook.book import terminal
from microscopy_notebook.cloud import samples
from microscopy_notebook.cloud.emulator import Emulator
from microscopy_notebook.paths import BOOK

READERS_OWN = "a-readers-own-bucket"
# What stands in the way before the book runs: at the names the book writes, and beside them.
BEFORE: dict[str, list[str]] = {
    samples.BUCKET: ["MockDataFiles/keep-me.txt", "keep-me.txt"],
    samples.OUTPUT_BUCKET: [
        "first-job/multi_signal.png",
        "first-job/keep-me.txt",
        "previews/dm3/multi_signal.dm3.png",
        "previews/keep-me.txt",
        "snakemake-work/keep-me.txt",
        "keep-me.txt",
    ],
    samples.SCRATCH_BUCKET: [
        "session-1/multi_signal.dm3",
        "session-1/keep-me.txt",
        "session-2/EELS_spectrum.dm3",
        "tia/keep-me.txt",
        "keep-me.txt",
    ],
    "nexuslims_example-notebook-demo": [
        "uploads/multi_signal.dm3",
        "uploads/keep-me.txt",
        "keep-me.txt",
    ],
    "nexuslims_example-guide": ["index.html", "404.html", "keep-me.txt"],
    READERS_OWN: ["uploads/multi_signal.dm3", "session-1/multi_signal.dm3", "keep-me.txt"],
}
CHAPTERS = sorted(p for p in (BOOK / "chapters").glob("*.md") if terminal.blocks(p.read_text()))
NOTEBOOKS = [BOOK / "notebooks" / "cloud-storage.md", BOOK / "notebooks" / "thumbnail-job.md"]
# Where a page may stop, in a world where its buckets exist already: creating a bucket is refused.
MAY_STOP_AT = "gcloud storage buckets create"


@pytest.fixture
def populated(monkeypatch: pytest.MonkeyPatch):
    """A seeded emulator, with something at every name the book uses; this process pointed at it
    (the notebooks' kernels and the commands inherit it)."""
    with Emulator() as emu:
        for key, value in emu.env.items():
            monkeypatch.setenv(key, value)
        from google.cloud import storage

        client = storage.Client()
        samples.seed(client=client)
        for bucket, names in BEFORE.items():
            target = client.lookup_bucket(bucket) or client.create_bucket(bucket)
            for name in names:
                data = _png() if name.endswith(".png") else f"the reader's {name}\n".encode()
                target.blob(name).upload_from_string(data)
        yield client


def _png() -> bytes:
    """A picture a previous run could have left: a real PNG, since the pages draw what they find."""
    out = io.BytesIO()
    Image.new("L", (8, 8), 128).save(out, format="PNG")
    return out.getvalue()


def _snapshot(client) -> dict[str, dict[str, int]]:
    return {
        b.name: {o.name: o.generation for o in client.list_blobs(b.name)}
        for b in client.list_buckets()
    }


def _run_chapter(page: Path, tmp_path: Path, replace: dict[str, str]) -> terminal.Run:
    text = page.read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    found = terminal.blocks(text)
    cwd = terminal.scratch(page, found)
    try:
        result = terminal.run([b.runnable for b in found], cwd)
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
    if not result.ok:
        stopped_at = found[result.failed].code
        assert MAY_STOP_AT in stopped_at, (
            f"{page.name}: a command failed in a world where its buckets exist:\n"
            f"{stopped_at}\n{result.outputs[result.failed][-2000:]}"
        )
    return result


def _run_notebook(path: Path, replace: dict[str, str]) -> None:
    notebook = jupytext.read(path)
    for cell in notebook.cells:
        for old, new in replace.items():
            cell.source = cell.source.replace(old, new)
    NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()


READERS_OWN_BUCKETS = {
    "nexuslims_example-scratch": READERS_OWN,
    "nexuslims_example-notebook-demo": READERS_OWN,
}


def _cases() -> list:
    """Every page that runs something, in a world of the example buckets; and again, with a
    reader's own bucket named in their place, each page that names one of them (the others would
    run exactly as in the first case). One test each, so that they spread over the workers."""
    cases = []
    for world, replace in (("example-buckets", {}), ("readers-own-bucket", READERS_OWN_BUCKETS)):
        for page in [*CHAPTERS, *NOTEBOOKS]:
            if not replace or any(old in page.read_text() for old in replace):
                case_id = f"{world}-{page.parent.name}/{page.name}"
                cases.append(pytest.param(page, replace, id=case_id))
    return cases


CASES = _cases()


def test_a_reader_s_own_bucket_is_tried_in_chapters_and_notebooks() -> None:
    """The second world is not empty: chapters and notebooks name the buckets it replaces."""
    readers = {c.values[0] for c in CASES if c.values[1]}
    assert readers & set(CHAPTERS) and readers & set(NOTEBOOKS)


@pytest.mark.slow
@pytest.mark.parametrize(("page", "replace"), CASES)
def test_the_book_leaves_alone_what_it_did_not_make(
    populated, tmp_path: Path, page: Path, replace: dict[str, str]
) -> None:
    before = _snapshot(populated)
    if page in NOTEBOOKS:
        _run_notebook(page, replace)
    else:
        _run_chapter(page, tmp_path, replace)
    after = _snapshot(populated)

    assert set(before) <= set(after), f"buckets gone: {set(before) - set(after)}"
    for bucket, objects in before.items():
        for name, generation in objects.items():
            assert name in after[bucket], f"gs://{bucket}/{name} was deleted"
            assert after[bucket][name] == generation, f"gs://{bucket}/{name} was replaced"
