"""The thumbnail job's parts: planning (pure), storage I/O, one batch rendered in-process, the
Snakefile's lint and its refusals. End-to-end runs are in test_runs.py and beside it."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import render_batch
import write_manifests
from tests.workflow.jobrun import SNAKEFILE, WORKFLOW, png_size, snakemake
from thumbnails import formats, locations, redo, report, runlock, store
from thumbnails.locations import JobConfigError, Location, parse_location
from thumbnails.plan import make_plan, split, what_is_new


# -- locations and refusals -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("gs://bucket-1/raw", Location("gs", "bucket-1", "raw")),
        ("gs://bucket-1/raw/", Location("gs", "bucket-1", "raw")),
        ("gs://bucket-1//raw//2024/", Location("gs", "bucket-1", "raw/2024")),
        ("gs://bucket-1", Location("gs", "bucket-1", "")),
    ],
)
def test_gs_locations_normalise(text: str, expected: Location) -> None:
    assert parse_location(text, "input") == expected


def test_local_locations_resolve_relative_to_base(tmp_path: Path) -> None:
    assert parse_location("in/../in/", "input", base=tmp_path).path == (tmp_path / "in").as_posix()


@pytest.mark.parametrize("text", ["gs://UPPER/x", "gs://a/../b", "s3://bucket/x", "", 3, None])
def test_bad_locations_are_refused(text) -> None:
    with pytest.raises(JobConfigError, match="thumbnail job"):
        parse_location(text, "input")


@pytest.mark.parametrize(
    "source, target, refused",
    [
        ("gs://bkt/raw", "gs://bkt/raw", True),
        ("gs://bkt/raw", "gs://bkt/raw/previews", True),
        ("gs://bkt/raw/2024", "gs://bkt/raw", True),
        ("gs://bkt", "gs://bkt/previews", True),  # a whole bucket holds every prefix in it
        ("gs://bkt/raw", "gs://bkt/raw-previews", False),  # a sibling that only shares the spelling
        ("gs://bkt/raw", "gs://cat/raw", False),
        ("/data/raw", "/data/raw/previews", True),
        ("/data/raw", "/data/previews", False),
        ("gs://bkt/raw", "/data/raw", False),
    ],
)
def test_overlapping_locations_are_refused(source: str, target: str, refused: bool) -> None:
    src, dst = parse_location(source, "input"), parse_location(target, "output")
    if refused:
        with pytest.raises(JobConfigError, match="does not overlap the input"):
            locations.check_locations(src, dst)
    else:
        locations.check_locations(src, dst)


def test_symlinked_output_into_input_is_refused(tmp_path: Path) -> None:
    (tmp_path / "raw" / "previews").mkdir(parents=True)
    (tmp_path / "out").symlink_to(tmp_path / "raw" / "previews")
    with pytest.raises(JobConfigError):
        locations.check_locations(
            parse_location(str(tmp_path / "raw"), "input"),
            parse_location(str(tmp_path / "out"), "output"),
        )


def test_work_prefix_under_input_is_refused() -> None:
    source = parse_location("gs://bkt/raw", "input")
    with pytest.raises(JobConfigError, match="default-storage-prefix"):
        locations.check_work_prefix(source, "bkt/raw/work")
    locations.check_work_prefix(source, "gs://bkt/work")
    locations.check_work_prefix(source, None)


# -- naming, what is new, batches -----------------------------------------------------------------
def test_preview_names_keep_the_extension() -> None:
    assert locations.preview_name("a/x.dm3") == "a/x.dm3.png"
    assert locations.preview_name("a/x.dm3") != locations.preview_name("a/x.dm4")
    assert locations.source_of("a/x.dm3.png") == "a/x.dm3"
    assert locations.source_of("report.json") is None


def test_what_is_new_needs_a_preview_and_a_report_row() -> None:
    sources = ["b.dm3", "a.dm4", "a.emi", "a_1.ser", "notes.txt", "c.tif"]
    outputs = ["a.dm4.png", "b.dm3.png", "report.json", "c.tif.png.1234.part"]
    new, names, done = what_is_new(sources, outputs, ["a.dm4"], formats.is_previewable)
    # b.dm3 has a preview but no row (an interrupted run): redone; c.tif has only a temp file.
    assert new == ["a_1.ser", "b.dm3", "c.tif"]
    assert done == 1
    assert names == set(sources)


def test_plan_knows_companions_and_missing_ones() -> None:
    src, dst = parse_location("gs://bkt/raw", "input"), parse_location("gs://bkt/out", "output")
    plan = make_plan(
        src,
        dst,
        ["t/x_1.ser", "t/x.emi", "t/y_1.ser"],
        [],
        [],
        formats.is_previewable,
        formats.companion_names,
        batch_size=10,
    )
    items = {i.name: i for b in plan.batches.values() for i in b}
    assert items["t/x_1.ser"].companions == ("t/x.emi",) and items["t/x_1.ser"].missing == ()
    assert items["t/y_1.ser"].missing == ("t/y.emi",)


def test_a_ser_s_companion_of_other_case_is_its_companion() -> None:
    """TIA writes .emi and .EMI alike: Case.EMI beside Case_1.ser is the file it needs (not a
    "missing companion file: Case.emi" while it is there), and not a file skipped."""
    src, dst = parse_location("gs://bkt/raw", "input"), parse_location("gs://bkt/out", "output")
    listed = ["t/Case_1.ser", "t/Case.EMI", "t/other_1.SER", "t/other.emi"]
    plan = make_plan(
        src, dst, listed, [], [], formats.is_previewable, formats.companion_names, batch_size=10
    )
    items = {i.name: i for b in plan.batches.values() for i in b}
    assert (items["t/Case_1.ser"].companions, items["t/Case_1.ser"].missing) == (
        ("t/Case.EMI",),
        (),
    )
    assert (items["t/other_1.SER"].companions, items["t/other_1.SER"].missing) == (
        ("t/other.emi",),
        (),
    )
    assert plan.skipped["files"] == 0


@pytest.mark.parametrize(
    "n, size, workers, expected",
    [
        (0, 200, 1, []),
        (9, 200, 1, [9]),
        (201, 200, 1, [101, 100]),
        (9, 200, 2, [5, 4]),
        (1000, 200, 4, [125] * 8),
        (3, 200, 8, [1, 1, 1]),
    ],
)
def test_batches_are_even_and_bounded(n: int, size: int, workers: int, expected: list) -> None:
    assert [len(b) for b in split(list(range(n)), size, workers)] == expected


def test_batch_ids_follow_content_and_locations() -> None:
    src, dst = parse_location("gs://bkt/raw", "input"), parse_location("gs://bkt/out", "output")
    other = parse_location("gs://bkt/out2", "output")
    names = [f"f{i:03}.dm3" for i in range(10)]

    def plan(target, listing):
        return make_plan(
            src,
            target,
            listing,
            [],
            [],
            formats.is_previewable,
            formats.companion_names,
            batch_size=4,
        )

    first = plan(dst, names)
    assert [len(b) for b in first.batches.values()] == [4, 3, 3]
    assert plan(dst, reversed(names)).batches.keys() == first.batches.keys()  # order-free
    assert plan(other, names).batches.keys().isdisjoint(first.batches.keys())
    assert plan(dst, names[:-1]).id != first.id


def test_max_files_limits_the_run_not_the_count() -> None:
    src, dst = parse_location("gs://bkt/raw", "input"), parse_location("gs://bkt/out", "output")
    plan = make_plan(
        src,
        dst,
        [f"f{i}.dm3" for i in range(10)],
        [],
        [],
        formats.is_previewable,
        formats.companion_names,
        batch_size=4,
        max_files=3,
    )
    assert plan.files == 3 and plan.previewable == 10


# -- the report -----------------------------------------------------------------------------------
def test_a_row_is_added_once_and_the_summary_is_counted_from_the_csv() -> None:
    src, dst = parse_location("gs://bkt/raw", "input"), parse_location("gs://bkt/out", "output")
    kept = report.row(src, dst, "c.dm3", ok=True, kind="image", shown=report.KEPT)
    first = {
        "batch": "a" * 16,
        "rows": [
            report.row(src, dst, "a.dm3", ok=False, kind="placeholder", error="truncated"),
            report.row(src, dst, "b.dm3", ok=True, kind="image", renderer="1"),
            kept,
        ],
    }
    # Another run's batch of b.dm3 (its batches were cut otherwise): the same row, and a new file.
    other = {
        "batch": "b" * 16,
        "rows": [
            report.row(src, dst, "b.dm3", ok=True, kind="image", renderer="1"),
            report.row(src, dst, "d.dm3", ok=True, kind="spectrum", renderer="1"),
        ],
    }
    last: dict = {}
    added = report.rows_to_add(last, [first, other])
    assert [r["name"] for r in added] == ["a.dm3", "b.dm3", "c.dm3", "d.dm3"]
    document = report.report_csv(added)
    assert report.csv_columns(document) == report.REPORT_COLUMNS
    assert report.scan_csv(document)[0] == len(added)
    # A killed run's records merged again, after their rows were appended: nothing to add.
    assert report.rows_to_add(report.scan_csv(document)[1], [first, other]) == []
    redone = report.row(
        src, dst, "a.dm3", ok=True, kind="image", renderer="1", redone="placeholder"
    )
    assert report.rows_to_add(last, [{"batch": "c" * 16, "rows": [redone]}]) == [redone]
    summary = report.make_summary(src, dst, last, 5, ["b" * 16, "a" * 16], {"plan": "p"}, "t")
    assert summary["summary"] == {"files": 4, "ok": 4, "failed": 0}  # a.dm3's later row counts
    assert (summary["records"], summary["kept"], summary["csv_rows"]) == (
        ["a" * 16, "b" * 16],
        ["c.dm3"],
        5,
    )
    assert report.parse_summary(b"not json")["records"] == []  # a damaged summary: start again
    lines = report.csv_rows(first["rows"]).decode().splitlines()
    assert len(lines) == 3 and lines[0].startswith("a.dm3,gs://bkt/raw/a.dm3,gs://bkt/out/a.dm3")
    assert report.csv_header().decode().strip() == ",".join(report.REPORT_COLUMNS)
    assert report.summary_line(report.summarize(first["rows"])).startswith(
        "thumbnail job: done with 1 failure"
    )
    # A report.csv of an older job, without the newer columns: read with them empty.
    old = b"name,source,preview,ok,kind,title,signals,shown,error\nx.dm3,s,p,True,image,x,1,x,\n"
    (row,) = report.read_csv(old)
    assert len(report.csv_columns(old)) == 9
    assert row == ("x.dm3", "s", "p", "True", "image", "x", "1", "x", "", "", "")


def test_reported_means_a_preview_written_by_a_recorded_batch_or_kept() -> None:
    listing = {
        "a.dm3.png": "1" * 16,
        "b.dm3.png": "2" * 16,
        "c.dm3.png": None,
        "d.dm3.png": None,
        f"report/batches/{'1' * 16}.json": None,
        "report.json": None,
    }
    # b's batch left no record (killed): redone; c is someone else's object, reported as kept.
    assert report.reported_names(listing, ["c.dm3"]) == {"a.dm3", "c.dm3"}
    # a local folder: no metadata, the records name their files
    local = {k: None for k in listing}
    assert report.reported_names(local, [], lambda batch: ["a.dm3", "b.dm3", "z.dm3"]) == {
        "a.dm3",
        "b.dm3",
    }
    assert report.names_in_record(b"{broken") == []
    assert report.batch_of_record(f"report/batches/{'1' * 16}.json") == "1" * 16
    assert report.batch_of_record("x/report/batches/1.json") is None


def test_manifests_are_written_per_batch(tmp_path: Path) -> None:
    src, dst = parse_location("gs://bkt/raw", "input"), parse_location("gs://bkt/out", "output")
    plan = make_plan(
        src,
        dst,
        ["a.dm3", "b.dm3", "c.dm3"],
        [],
        [],
        formats.is_previewable,
        formats.companion_names,
        batch_size=2,
    )
    write_manifests.write_plan(plan, tmp_path)
    assert json.loads(write_manifests.plan_file(plan, tmp_path).read_text()) == plan.as_dict()
    for batch in plan.batches:
        manifest = write_manifests.manifest_file(batch, tmp_path)
        assert json.loads(manifest.read_text()) == plan.manifest(batch)
    assert not list(tmp_path.rglob("*.part"))  # each written aside, then renamed


def test_names_without_a_place_in_a_folder_are_refused_and_others_are_not(tmp_path) -> None:
    folder = parse_location(str(tmp_path / "out"), "output")
    bucket = parse_location("gs://bkt/out", "output")
    for name in ("a/b.dm3", "Ångström #?%+[]*.dm3", "sp ace/x.dm3", "n" * 240 + ".dm3"):
        assert locations.preview_place(folder, name) is None, name
    for name, why in {
        "/tmp/x.dm3": "begins with '/'",
        "a/../../x.dm3": "a '..' part",
        "a/./x.dm3": "a '.' part",
        "a//x.dm3": "an empty part",
        "n" * 252 + ".dm3": "would be 260 bytes, more than the 255",
    }.items():
        assert why in locations.preview_place(folder, name), name
        assert locations.preview_place(bucket, name) is None, name  # a bucket takes them all
    assert "1025 bytes" in locations.preview_place(bucket, "g" * (1024 - len("out/.png") + 1))


def test_a_dead_run_s_locks_go_and_a_live_run_s_stay(tmp_path: Path) -> None:
    work, smk = tmp_path / "results" / "thumbnail-job", tmp_path / ".snakemake"
    (smk / "locks").mkdir(parents=True)
    (smk / "locks" / "0.output.lock").write_text("results/thumbnail-job/batches/dead.json\n")
    (smk / "locks" / "1.output.lock").write_text("elsewhere/other-workflow.txt\n")
    holder = subprocess.Popen(  # a live run working on batch "live": alive until it reads a line
        [
            sys.executable,
            "-c",
            (
                "import sys; from pathlib import Path; from thumbnails import runlock; "
                f"work, smk = Path({str(work)!r}), Path({str(smk)!r}); runlock.join(work); "
                "runlock.hold(work, smk, 'results/thumbnail-job', ['live']); "
                "(smk / 'locks' / '2.output.lock')"
                ".write_text('results/thumbnail-job/batches/live.json'); "
                "print('held', flush=True); sys.stdin.readline()"
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(WORKFLOW / "scripts")},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        locks = sorted(p.name for p in (smk / "locks").iterdir())
        assert locks == ["1.output.lock", "2.output.lock"]  # the dead run's went, no other
        runlock.join(work)  # this process, another run in the same folder, on other files: fine
        assert runlock.hold(work, smk, "results/thumbnail-job", ["other"]) == []
        with pytest.raises(runlock.Busy, match=f"process {holder.pid},"):  # on the same: refused
            runlock.hold(work, smk, "results/thumbnail-job", ["live"])
    finally:
        holder.communicate("\n", timeout=30)
    # The holder is gone (however it ended): its lock is a dead run's now.
    assert [p.name for p in runlock.hold(work, smk, "results/thumbnail-job", ["x"])] == [
        "2.output.lock"
    ]


def test_redo_settings_and_versions() -> None:
    assert redo.version("2026.12") > redo.version("2026.1") > redo.version(None)
    placeholders = redo.reason("placeholders")
    assert placeholders({"kind": "placeholder"}) == "placeholder"
    assert placeholders({"kind": "image"}) is None
    older = redo.reason("older-than=2026.12")
    assert older({"kind": "image", "renderer": "2026.1"}) == "renderer 2026.1"
    assert older({"kind": "image", "renderer": ""}) == "renderer unknown"
    assert older({"kind": "image", "renderer": "2026.12"}) is None
    with pytest.raises(JobConfigError, match="placeholders"):
        redo.reason("everything")


def test_a_local_redo_replaces_only_the_version_it_listed(tmp_path: Path) -> None:
    loc = parse_location(str(tmp_path / "out"), "output")
    assert store.create(loc, "x.dm3.png", b"old", "image/png")
    old = store.md5_of(b"old")
    assert store.swap(loc, "x.dm3.png", b"new", "image/png", 0, old, "1" * 16, "9", "image")
    assert (tmp_path / "out" / "x.dm3.png").read_bytes() == b"new"
    (tmp_path / "out" / "x.dm3.png").write_bytes(b"theirs")  # someone wrote over it
    assert not store.swap(loc, "x.dm3.png", b"newer", "image/png", 0, old, "1" * 16, "9", "image")
    assert (tmp_path / "out" / "x.dm3.png").read_bytes() == b"theirs"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x.dm3.png"]  # nothing aside


# -- storage --------------------------------------------------------------------------------------
def test_local_create_never_overwrites(tmp_path: Path) -> None:
    loc = parse_location(str(tmp_path / "out"), "output")
    assert store.create(loc, "a/x.dm3.png", b"first", "image/png")
    assert not store.create(loc, "a/x.dm3.png", b"second", "image/png")
    assert (tmp_path / "out" / "a" / "x.dm3.png").read_bytes() == b"first"
    assert list(store.list_names(loc)) == ["a/x.dm3.png"]  # no temp file left behind
    assert (
        list(store.list_names(parse_location(str(tmp_path / "none"), "output"), missing_ok=True))
        == []
    )


@pytest.fixture
def bucket(gcs) -> str:
    name = f"wf-{uuid.uuid4().hex[:12]}"
    gcs.create_bucket(name)
    return name


def test_gcs_create_never_overwrites_and_lists_relative(gcs, bucket: str) -> None:
    store.client.cache_clear()  # the client must be made under the emulator's settings
    loc = parse_location(f"gs://{bucket}/out", "output")
    assert store.create(loc, "a/x.dm3.png", b"first", "image/png")
    generation = gcs.bucket(bucket).get_blob("out/a/x.dm3.png").generation
    assert not store.create(loc, "a/x.dm3.png", b"second", "image/png")
    blob = gcs.bucket(bucket).get_blob("out/a/x.dm3.png")
    assert (blob.generation, blob.download_as_bytes()) == (generation, b"first")
    assert list(store.list_names(loc)) == ["a/x.dm3.png"]
    assert store.read(loc, "missing.json") == (None, 0)


def test_gcs_lost_upload_response_is_not_a_duplicate(emulator, gcs, bucket: str) -> None:
    """The server commits the preview, the answer is lost; the retry meets it (412): done."""
    store.client.cache_clear()
    loc = parse_location(f"gs://{bucket}/out", "output")
    fault = emulator.faults.add(lambda m, p: m == "POST" and "/upload/" in p, "drop-after")
    assert store.create(loc, "x.dm3.png", b"preview", "image/png") in (True, False)
    assert fault.hits == 1
    assert [b.name for b in gcs.list_blobs(bucket)] == ["out/x.dm3.png"]
    assert gcs.bucket(bucket).blob("out/x.dm3.png").download_as_bytes() == b"preview"


def test_gcs_previews_carry_their_batch_and_a_killed_batch_s_are_relabelled(
    gcs, bucket: str
) -> None:
    store.client.cache_clear()
    loc = parse_location(f"gs://{bucket}/out", "output")
    assert store.create(loc, "x.dm3.png", b"png", "image/png", batch="1" * 16)
    gcs.bucket(bucket).blob("out/y.dm3.png").upload_from_string(b"png")  # same bytes, not ours
    assert {n: listed.batch for n, listed in store.list_output(loc)} == {
        "x.dm3.png": "1" * 16,
        "y.dm3.png": None,
    }
    generation = gcs.bucket(bucket).get_blob("out/x.dm3.png").generation
    assert store.matches(loc, "x.dm3.png", b"png", batch="2" * 16)  # ours: the new batch reports it
    blob = gcs.bucket(bucket).get_blob("out/x.dm3.png")
    assert (blob.generation, blob.metadata) == (generation, {store.BATCH_KEY: "2" * 16})
    assert not store.matches(loc, "x.dm3.png", b"other", batch="2" * 16)
    assert not store.matches(loc, "y.dm3.png", b"png", batch="2" * 16)  # someone else's: kept
    assert gcs.bucket(bucket).get_blob("out/y.dm3.png").metadata is None


@pytest.mark.parametrize("where", ["gs", "file"])
def test_append_writes_only_what_it_adds(gcs, bucket: str, tmp_path: Path, where: str) -> None:
    store.client.cache_clear()
    loc = parse_location(f"gs://{bucket}/out" if where == "gs" else str(tmp_path / "out"), "output")
    assert store.append(loc, "report.csv", b"1\n", b"head\n", "text/csv", 0)
    assert store.append(
        loc, "report.csv", b"2\n3\n", b"", "text/csv", store.read(loc, "report.csv")[1]
    )
    assert store.read(loc, "report.csv")[0] == b"head\n1\n2\n3\n"
    assert list(store.list_names(loc)) == ["report.csv"]  # no part object or temp file left
    if where == "gs":  # over a generation that is no longer the CSV's: nothing is added
        stale = gcs.bucket(bucket).get_blob("out/report.csv").generation
        assert store.append(loc, "report.csv", b"4\n", b"", "text/csv", stale)
        assert not store.append(loc, "report.csv", b"5\n", b"", "text/csv", stale)
        assert not store.append(loc, "report.csv", b"5\n", b"", "text/csv", 0)
        assert store.read(loc, "report.csv")[0] == b"head\n1\n2\n3\n4\n"
        assert list(store.list_names(loc)) == ["report.csv"]


def test_missing_bucket_is_a_clear_message(storage_env) -> None:
    store.client.cache_clear()
    with pytest.raises(store.StoreError, match="does not exist"):
        list(store.list_names(parse_location("gs://no-such-bucket-here/raw", "input")))


# -- one batch, in this process -------------------------------------------------------------------
def test_a_bad_file_gets_a_placeholder_and_the_batch_goes_on(
    sample_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in"
    (source / "dm3").mkdir(parents=True)
    good = sample_dir / "dm3" / "multi_signal.dm3"
    (source / "dm3" / "good.dm3").write_bytes(good.read_bytes())
    (source / "dm3" / "cut.dm3").write_bytes(good.read_bytes()[:1024])
    (source / "dm3" / "noise.dm3").write_bytes(os.urandom(4096))
    (source / "tia").mkdir()
    (source / "tia" / "lonely_1.ser").write_bytes(
        (sample_dir / "tia" / "128x128-TEM_search_1.ser").read_bytes()
    )
    src, dst = parse_location(str(source), "input"), parse_location(str(tmp_path / "out"), "output")
    plan = make_plan(
        src,
        dst,
        store.list_names(src),
        [],
        [],
        formats.is_previewable,
        formats.companion_names,
        batch_size=10,
    )
    (batch,) = plan.batches
    log = io.StringIO()
    results = render_batch.render_batch(plan.manifest(batch), log=log, progress=io.StringIO())
    rows = {r["name"]: r for r in results["rows"]}
    assert rows["dm3/good.dm3"]["ok"] and rows["dm3/good.dm3"]["error"] is None
    for bad in ("dm3/cut.dm3", "dm3/noise.dm3"):
        assert not rows[bad]["ok"] and rows[bad]["error"], rows[bad]
        assert bad in log.getvalue() and "FAILED" in log.getvalue()
    lonely = rows["tia/lonely_1.ser"]  # readable without its .emi, and the report says so
    assert "missing companion file: tia/lonely.emi" in f"{lonely['shown']} {lonely['error']}"
    assert results["failed"] == sum(not r["ok"] for r in rows.values()) >= 2
    for name in rows:  # every file has its 500x500 preview, placeholders included
        assert png_size((tmp_path / "out" / f"{name}.png").read_bytes()) == (500, 500)


def test_a_batch_rides_out_transient_storage_errors(
    emulator, gcs, bucket: str, sample_dir: Path
) -> None:
    """503s on downloads and uploads, from the threads that fetch ahead and write behind: retried,
    and every preview is made exactly once."""
    store.client.cache_clear()
    names = [
        "dm3/multi_signal.dm3",
        "sem/Zeiss_SEM_512pix.tif",
        "tia/128x128-TEM_search_1.ser",
        "tia/128x128-TEM_search.emi",
        "eds/example1.msa",
    ]
    for name in names:
        gcs.bucket(bucket).blob(f"raw/{name}").upload_from_filename(str(sample_dir / name))
    src = parse_location(f"gs://{bucket}/raw", "input")
    dst = parse_location(f"gs://{bucket}/out", "output")
    plan = make_plan(
        src,
        dst,
        store.list_names(src),
        [],
        [],
        formats.is_previewable,
        formats.companion_names,
        batch_size=10,
    )
    downloads = emulator.faults.add(lambda m, p: m == "GET" and "alt=media" in p, "status:503", 3)
    uploads = emulator.faults.add(lambda m, p: m == "POST" and "/upload/" in p, "status:503", 2)
    (batch,) = plan.batches
    results = render_batch.render_batch(plan.manifest(batch), progress=io.StringIO())
    assert (downloads.hits, uploads.hits) == (3, 2)
    assert results["failed"] == 0 and results["files"] == 4
    made = sorted(b.name for b in gcs.list_blobs(bucket, prefix="out/"))
    assert made == sorted(
        [
            *(f"out/{n}.png" for n in names if not n.endswith(".emi")),
            f"out/report/batches/{batch}.json",
        ]
    )  # and the batch's record


# -- the Snakefile --------------------------------------------------------------------------------
def test_planning_imports_neither_numpy_nor_pillow() -> None:
    """The Snakefile's own imports of the job's library, run alone: planning (while Snakemake reads
    the Snakefile) must not pay for the renderer's numpy and Pillow."""
    imports = re.findall(r"^(from thumbnails\S* import [^#\n]+?)\s+#", SNAKEFILE.read_text(), re.M)
    assert any("thumbnails.plan" in line for line in imports), imports
    code = "\n".join(
        [*imports, "import sys", "print(sorted(m for m in ('numpy', 'PIL') if m in sys.modules))"]
    )
    # started in the scripts folder, as Snakemake's scripts are: `python -c` imports from there
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=WORKFLOW / "scripts",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", f"planning imported {proc.stdout.strip()}"


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    (tmp_path / "in" / "a").mkdir(parents=True)
    (tmp_path / "in" / "a" / "x.dm3").write_bytes(b"not really a dm3")
    return tmp_path


def test_lint_is_clean(folders: Path) -> None:
    run = snakemake(folders, "--lint", "--config", "input=in", "output=out")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Congratulations, your workflow is in a good condition" in run.stdout + run.stderr
    assert not (folders / "out").exists()  # linting plans but writes no preview


@pytest.mark.parametrize(
    "config, message",
    [
        (["input=in", "output=in/previews"], "the output .* lies inside the input"),
        (["input=in", "output=out", "batch_size=0"], "malformed at `batch_size`"),
        (["input=in", "output=out", "ouput=elsewhere"], "'ouput' was unexpected"),
    ],
)
def test_bad_config_is_refused_before_anything_runs(
    folders: Path, config: list, message: str
) -> None:
    run = snakemake(folders, "--cores", "1", "--config", *config)
    assert run.returncode != 0
    assert "thumbnail job" in run.stderr
    assert re.search(message, run.stderr), run.stderr
    assert "Traceback" not in run.stderr
    # Nothing written but Snakemake's own state folder: no output, no work files.
    assert sorted(p.name for p in folders.iterdir()) == [".snakemake", "in"]
    assert [p.name for p in (folders / "in").rglob("*")] == ["a", "x.dm3"]
