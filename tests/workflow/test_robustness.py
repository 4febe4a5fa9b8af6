"""The thumbnail job on odd and broken input, end to end: one Snakemake run over a bucket that
holds the sample files and every kind of bad file next to them.

Every bad file must get a report row naming it and saying why, and a placeholder preview where
one is expected; the good files of the same batches must all be done; the closing line and the
exit status must tell "all done" from "done with N failures". Nothing under the input may change,
and an object already at a preview's name is never overwritten. The files are made here; no
binary is committed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

import render_batch
from microscopy_notebook.cloud import pinned, samples
from tests.workflow.jobrun import (
    LOCAL,
    Background,
    MemoryLimit,
    bucket_report,
    check_previews,
    folder_report,
    new_bucket,
    objects,
    png_size,
    processes_running,
    report_of,
    snakemake,
    sources_unchanged,
    summary,
    wait_all,
    wait_until,
    write_4d_emd,
)
from thumbnails import formats, locations
from thumbnails.plan import make_plan, skipped_files, skipped_note
from thumbnails.report import summary_line

GOOD = [s.name for s in samples.SAMPLES if not s.name.endswith(".emi")]
LARGE = "large/8k float32.tif"  # 8192 x 8192 float32: 256 MiB
N_LARGE = 8192
TIA_4D = "4d/16x16-diffraction_imagel_5x5x256x256_EDS_2.ser"
# pragma: allowlist nextline secret (a file name that detect-secrets mistakes for base64)
WHEEL_4D = "hyperspy/tests/io/FEI_new/16x16-diffraction_imagel_5x5x256x256_EDS"
NON_ASCII = "Probe 1/Ångström scan µm.dm3"
# object name -> what its report row's error must say (None: it is previewed)
BAD = {
    "bad/empty.dm3": "empty file (0 bytes)",
    "Probe 1/leer ü 0 Byte.dm3": "empty file (0 bytes)",
    "bad/first KiB.dm3": "unreadable: file is truncated (has 1024 of 689992 bytes)",
    "bad/half.dm4": "unreadable: file is truncated",
    "bad/half_1.ser": "unreadable: file is truncated",  # its .emi is there
    "bad/half.tif": "unreadable: file is truncated",
    "bad/random.dm3": "unreadable: not a DigitalMicrograph file",
    "bad/random.dm4": "unreadable: not a DigitalMicrograph file",
    "bad/random_1.ser": "unreadable: not a TIA .ser file (missing companion file: bad/random.emi)",
    "bad/text.tif": "unreadable: not a TIFF file",
}
EXTRA_GOOD = {  # object name -> kind of preview
    NON_ASCII: "image",
    "lonely/alone_1.ser": "image",  # no .emi beside it: previewed, and the row says so
    LARGE: "image",
    "4d/scan.emd": "4d",
    TIA_4D: "4d",
}
UNSUPPORTED = ["notes/read me.txt", "odd/scan.xyz", "orphan/only.emi"]
KEPT = "dm3/multi_signal.dm3"  # an object already sits at its preview's name


def _write_4d_emd(path: Path, ny: int = 12, nx: int = 16, q: int = 64) -> None:
    """A small 4D-STEM scan as NCEM EMD, written with rosettasciio."""
    yy, xx = np.mgrid[0:q, 0:q]
    disk = (np.hypot(yy - q / 2, xx - q / 2) < 6).astype(np.float32)
    data = disk * (1 + np.arange(ny * nx, dtype=np.float32).reshape(ny, nx, 1, 1) / (ny * nx))
    write_4d_emd(path, data)


def _write_large_tiff(path: Path) -> None:
    """8192 x 8192 float32, uncompressed, written in bands so the test itself stays small."""
    image = tifffile.memmap(str(path), shape=(N_LARGE, N_LARGE), dtype=np.float32)
    x = np.sin(np.arange(N_LARGE, dtype=np.float32) / 300) * 1000
    for r in range(0, N_LARGE, 1024):
        image[r : r + 1024] = np.outer(np.cos(np.arange(r, r + 1024, dtype=np.float32) / 500), x)
    image.flush()
    del image


def _seed_bad_and_odd(gcs, bucket: str, sample_dir: Path, tmp_path: Path) -> None:
    raw = gcs.bucket(bucket)

    def put(name: str, data: bytes) -> None:
        raw.blob(f"raw/{name}").upload_from_string(data)

    def sample(name: str) -> bytes:
        return (sample_dir / name).read_bytes()

    rng = np.random.default_rng(6)
    dm3, dm4 = sample("dm3/multi_signal.dm3"), sample("dm4/EELS_SI.dm4")
    ser, tif = sample("tia/128x128-TEM_search_1.ser"), sample("sem/Zeiss_SEM_512pix.tif")
    put("bad/empty.dm3", b"")
    put("Probe 1/leer ü 0 Byte.dm3", b"")
    put("bad/first KiB.dm3", dm3[:1024])
    put("bad/half.dm4", dm4[: len(dm4) // 2])
    put("bad/half_1.ser", ser[: len(ser) // 2])
    put("bad/half.emi", sample("tia/128x128-TEM_search.emi"))
    put("bad/half.tif", tif[: len(tif) // 2])
    put("bad/random.dm3", rng.bytes(4096))
    put("bad/random.dm4", rng.bytes(4096))
    put("bad/random_1.ser", rng.bytes(4096))
    put("bad/text.tif", b"not an image, only text named .tif\n" * 40)
    put(NON_ASCII, dm3)
    put("lonely/alone_1.ser", ser)
    for name in UNSUPPORTED:
        put(name, b"a file of a type the job does not preview\n")

    emd = tmp_path / "scan.emd"
    _write_4d_emd(emd)
    raw.blob("raw/4d/scan.emd").upload_from_filename(str(emd))
    with zipfile.ZipFile(pinned.wheel(pinned.HYPERSPY_SAMPLES)) as zf:
        put(TIA_4D, zf.read(WHEEL_4D + "_2.ser"))
        put(TIA_4D.replace("_2.ser", ".emi"), zf.read(WHEEL_4D + ".emi"))
    large = tmp_path / "large.tif"
    _write_large_tiff(large)
    raw.blob(f"raw/{LARGE}").upload_from_filename(str(large))
    large.unlink()


@pytest.mark.slow
def test_bad_and_odd_files_in_one_run(
    emulator, gcs, storage_env, sample_dir: Path, tmp_path: Path
) -> None:
    bucket = new_bucket(gcs, "bad")
    samples.seed(bucket, "raw/", gcs)
    _seed_bad_and_odd(gcs, bucket, sample_dir, tmp_path)
    out = gcs.bucket(bucket)
    # Someone's own object where the job would put a preview: it must survive the run.
    out.blob(f"previews/{KEPT}.png").upload_from_string(b"my notes, not a preview")
    kept_before = objects(gcs, bucket, f"previews/{KEPT}.png")

    config = [
        "--config",
        f"input=gs://{bucket}/raw",
        f"output=gs://{bucket}/previews",
        "strict=True",
    ]
    uploads: list[str] = []  # every upload request the job makes, as the storage sees it
    emulator.faults.add(
        lambda m, p: m == "POST" and "/upload/" in p and uploads.append(p), "status:500"
    )  # never matches: it only records
    with sources_unchanged(gcs, bucket, "raw/"):
        run = snakemake(tmp_path, "--profile", str(LOCAL), *config, env=storage_env)
    failures = len(BAD)
    done = len(GOOD) + len(EXTRA_GOOD)
    total = failures + done

    # The exit status and the closing line tell this from "all done".
    assert run.returncode != 0  # strict=True
    assert f"{failures} file(s) could not be previewed and strict is set" in run.stderr
    closing = summary(run.stderr)
    assert closing.startswith(
        f"thumbnail job: done with {failures} failures ({done} of {total} previews made"
    )
    assert "Traceback" not in run.stdout + run.stderr

    report, rows = report_of(gcs, bucket, "previews/")
    assert sorted(rows) == sorted([*GOOD, *EXTRA_GOOD, *BAD])
    assert report["summary"] == {"files": total, "ok": done, "failed": failures}
    assert report["last_run"]["failed"] == failures
    assert {f["name"] for f in report["last_run"]["failures"]} == set(BAD)

    assert objects(gcs, bucket, f"previews/{KEPT}.png") == kept_before
    out.blob(f"previews/{KEPT}.png").delete()  # not a PNG: out of the way of the next check
    previews_made = check_previews(gcs, bucket, "previews/")
    for name, r in rows.items():
        assert r["source"] == f"gs://{bucket}/raw/{name}"
        assert r["preview"] == f"gs://{bucket}/previews/{name}.png"
        if name == KEPT:
            continue
        assert f"{name}.png" in previews_made, name
        if name in BAD:
            assert not r["ok"] and r["kind"] == "placeholder", r
            assert r["error"].startswith(BAD[name]), r
        else:
            assert r["ok"] and r["error"] is None, r
            assert r["kind"] == EXTRA_GOOD.get(name, r["kind"]) != "placeholder", r
    assert "missing companion file: lonely/alone.emi" in rows["lonely/alone_1.ser"]["shown"]
    print(json.dumps(report["last_run"], indent=1, ensure_ascii=False))

    # Every preview was sent with ifGenerationMatch=0 ("only if absent"), and fake-gcs-server,
    # which enforces it, refused the one whose name was taken: that object is unchanged (checked
    # above), and the report and the closing line say so. So were each batch's record and, on
    # this first run, report.csv and report.json: every upload carries a precondition.
    print("\n".join(uploads))
    records = len(list(gcs.list_blobs(bucket, prefix="previews/report/batches/")))
    assert records == len(report["records"]) >= 1
    assert sum("ifGenerationMatch=0" in p for p in uploads) == len(rows) + records + 2
    assert all("ifGenerationMatch" in p for p in uploads)
    assert rows[KEPT]["ok"] and rows[KEPT]["shown"].endswith(f"({render_batch.KEPT})")
    assert report["last_run"]["kept"] == [KEPT]
    assert "1 preview not written because another object already had its name" in closing
    # Files of other types are skipped: no row, no placeholder, but counted and named.
    skipped = {
        "files": 3,
        "types": {".emi": 1, ".txt": 1, ".xyz": 1},
        "examples": sorted(UNSUPPORTED),
    }
    assert report["last_run"]["skipped"] == skipped
    note = "3 files skipped: not a type the job previews (.emi 1, .txt 1, .xyz 1)"
    assert note in closing and note in run.stderr.splitlines()[2]  # the plan line says it too
    # The 8192 x 8192 float32 image (256 MiB) was previewed in bounded memory.
    peak = report["last_run"]["peak_memory_mib"]
    print(f"peak memory of the largest render process: {peak} MiB")
    assert 50 < peak < 1536
    csv_rows = list(csv.DictReader(io.StringIO(out.blob("previews/report.csv").download_as_text())))
    assert sorted(r["name"] for r in csv_rows) == sorted(rows)  # one row each: a first run
    assert png_size(previews_made[f"{NON_ASCII}.png"]) == (500, 500)


# -- the same rules, in this process --------------------------------------------------------------
def test_skipped_files_are_counted_by_type_and_companions_are_not_skipped() -> None:
    names = [
        "a/x_1.ser",
        "a/x.emi",
        "b/only.emi",
        "notes/read me.txt",
        "c/y.dm3",
        "README",
        "odd/scan.XYZ",
    ]
    skipped = skipped_files(names, formats.is_previewable, formats.companion_names)
    assert skipped == {
        "files": 4,
        "types": {".emi": 1, ".txt": 1, ".xyz": 1, "no extension": 1},
        "examples": ["README", "b/only.emi", "notes/read me.txt", "odd/scan.XYZ"],
    }
    line = summary_line({"files": 2, "failed": 0, "kept": ["c/y.dm3"], "skipped": skipped})
    assert line == (
        "thumbnail job: all 2 done; 1 preview not written because another object "
        "already had its name (kept as it was, see the report); 4 files skipped: not "
        "a type the job previews (.emi 1, .txt 1, .xyz 1, no extension 1)"
    )
    many = {"files": 9, "types": {f".x{i}": 1 for i in range(6)} | {".txt": 3}}
    assert skipped_note(many).endswith("(.txt 3, .x0 1, .x1 1, .x2 1, .x3 1 and 2 more types)")


def test_local_output_keeps_a_foreign_file_and_knows_its_own(
    sample_dir: Path, tmp_path: Path
) -> None:
    """On disk as in a bucket: a file already at a preview's name is kept and reported; a
    preview the job made before (a rerun) is recognised by its bytes and not reported."""
    source, out = tmp_path / "in", tmp_path / "out"
    for name in ("dm3/multi_signal.dm3", "eds/example1.msa"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes((sample_dir / name).read_bytes())
    (out / "dm3").mkdir(parents=True)
    (out / "dm3" / "multi_signal.dm3.png").write_bytes(b"my own file")
    src = locations.parse_location(str(source), "input")
    dst = locations.parse_location(str(out), "output")
    plan = make_plan(
        src,
        dst,
        ["dm3/multi_signal.dm3", "eds/example1.msa"],
        [],
        [],
        formats.is_previewable,
        formats.companion_names,
        batch_size=10,
    )
    (batch,) = plan.batches
    for _ in range(2):  # the second time every preview is already there
        results = render_batch.render_batch(plan.manifest(batch), progress=io.StringIO())
        rows = {r["name"]: r for r in results["rows"]}
        assert results["kept"] == ["dm3/multi_signal.dm3"]
        assert rows["dm3/multi_signal.dm3"]["shown"].endswith(f"({render_batch.KEPT})")
        assert render_batch.KEPT not in rows["eds/example1.msa"]["shown"]
        assert (out / "dm3" / "multi_signal.dm3.png").read_bytes() == b"my own file"
        assert png_size((out / "eds" / "example1.msa.png").read_bytes()) == (500, 500)
    assert results["peak_memory_mib"] > 0


# -- a file that stops the renderer ---------------------------------------------------------------
HUGE = "zz/deflated 8k.tif"  # the batch's last file: 8192 x 8192 uint16, 128 MiB when decoded


def _renderer_of(job: Background) -> int:
    """The process of the run that renders: the batch's renderer process (or, in a job without
    one, the batch's own process)."""
    for fragment in ("thumbnails.worker", "render_batch"):
        mine = [pid for pid in processes_running(fragment) if os.getpgid(pid) == job.proc.pid]
        if mine:
            return max(mine)  # the youngest: a process, not the shell that started it
    raise AssertionError("no renderer process in the run")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["out of memory", "killed"])
def test_a_file_that_stops_the_renderer_gets_a_placeholder_and_the_batch_goes_on(
    emulator, gcs, storage_env, tmp_path: Path, how: str
) -> None:
    """The renderer's process is ended while it reads a file: by the kernel's OOM killer, under a
    real memory limit (a memory cgroup, as the Batch task's container has, that the renderer is
    moved into before it reads a file that decodes to 128 MiB), or by SIGKILL (a crash). That file
    gets a placeholder saying it stopped the renderer; every other file of the batch its preview;
    every row is reported, once."""
    if how == "out of memory" and not MemoryLimit.available():
        pytest.skip("this machine lets no test make a memory cgroup; 'killed' tests the rest")
    bucket = new_bucket(gcs, "stops")
    samples.seed(bucket, "raw/", gcs)
    huge = tmp_path / "huge.tif"
    ramp = np.add.outer(np.arange(8192, dtype=np.uint16), np.arange(8192, dtype=np.uint16))
    # One compressed strip: any reader decodes all 128 MiB at once (a few MiB in the bucket).
    tifffile.imwrite(huge, ramp, compression="zlib", rowsperstrip=8192)
    del ramp
    gcs.bucket(bucket).blob(f"raw/{HUGE}").upload_from_filename(str(huge))
    gate = uuid.uuid4().hex
    emulator.faults.add(
        lambda m, p: m == "GET" and "alt=media" in p and "deflated%208k.tif" in p, f"hold:{gate}"
    )
    work = tmp_path / "work"
    config = [
        "--config",
        f"input=gs://{bucket}/raw",
        f"output=gs://{bucket}/previews",
        "batch_size=100",
    ]
    job = Background(work, "--profile", str(LOCAL), "--cores", "1", *config, env=storage_env)
    try:
        before_huge = f"{len(GOOD)}/{len(GOOD) + 1} "  # its log line of the file before HUGE

        def waiting() -> bool:
            logs = list(work.glob("results/thumbnail-job/logs/render/*.log"))
            return bool(logs) and before_huge in logs[0].read_text()

        wait_until(waiting, job, "the batch's renderer idle before the last file")
        renderer = _renderer_of(job)
        if how == "killed":
            os.kill(renderer, signal.SIGKILL)
            emulator.faults.release(gate)
            ended = wait_all({"run": job})
        else:
            with MemoryLimit(64 * 2**20) as limit:
                limit.add(renderer)  # from now on it may allocate 64 MiB more, no more
                emulator.faults.release(gate)
                ended = wait_all({"run": job})
                oom_kills = limit.oom_kills()
            assert oom_kills >= 1  # the kernel's OOM killer ended it, for real
    finally:
        job.kill_group()
    output = job.output()
    assert ended and job.proc.returncode == 0, output
    assert "done with 1 failure" in summary(output)
    _summary_doc, rows = bucket_report(gcs, bucket, "previews/")
    assert sorted(rows) == sorted([*GOOD, HUGE])
    stopped = rows.pop(HUGE)
    assert stopped["ok"] == "False" and stopped["kind"] == "placeholder"
    assert "the file stopped the renderer" in stopped["error"], stopped
    if how == "out of memory":
        assert "more memory than the machine has" in stopped["error"]
    assert all(r["ok"] == "True" for r in rows.values()), rows  # the rest of the batch
    made = check_previews(gcs, bucket, "previews/")  # the placeholder too: whole 500x500 PNGs
    assert sorted(made) == sorted(f"{n}.png" for n in [*GOOD, HUGE])


# -- names are data -------------------------------------------------------------------------------
@pytest.mark.slow
def test_names_are_data_never_paths(emulator, gcs, storage_env, sample_dir: Path, tmp_path) -> None:
    """Object names of every length and byte Cloud Storage allows, bucket to bucket and bucket to
    a local folder, and a legal 224-byte local file name: nothing is ever written outside the
    job's folders. Where a name cannot have a preview in the output folder (a leading /, '..',
    a part longer than the file system's, or an object name longer than Cloud Storage's), its
    row says why and nothing is written for it; every other file is previewed."""
    escape = Path("/tmp") / f"mnb-escape-{uuid.uuid4().hex[:8]}"  # where no file may appear
    parts = "/".join(["n" * 222] * 4) + ".msa"  # 895 bytes, parts of 222
    names = {  # name under raw/ -> why it has no preview in a local folder (None: it has one)
        parts: None,
        "m" * 892 + ".msa": "a part of the preview's file name would be 900 bytes",
        f"/{escape.relative_to('/')}/leading.msa": "the name begins with '/'",
        f"../../{escape.relative_to('/')}/dotdot.msa": "the name has a '..' part",
        "odd/a #?%+[]*.msa": None,
        "odd/\u00c5ngstr\u00f6m.msa": None,  # NFC
        "odd/A\u030angstro\u0308m.msa": None,  # the same letters, NFD: another object
        "sp ace/ü x.msa": None,
    }
    too_long = "g" * 1008 + ".msa"  # its preview's object name would pass 1,024 bytes
    bucket = new_bucket(gcs, "names")
    data = (sample_dir / "eds" / "example1.msa").read_bytes()
    for name in [*names, too_long]:
        gcs.bucket(bucket).blob(f"raw/{name}").upload_from_string(data)
    local_in = tmp_path / "in"
    local_in.mkdir()
    (local_in / ("q" * 220 + ".msa")).write_bytes(data)  # 224 bytes, legal on any Linux disk
    out = tmp_path / "previews"
    runs = {
        "to a bucket": [f"input=gs://{bucket}/raw", f"output=gs://{bucket}/previews"],
        "to a folder": [f"input=gs://{bucket}/raw", f"output={out}"],
        "folder to folder": [f"input={local_in}", f"output={tmp_path / 'local-previews'}"],
    }
    jobs = {
        what: Background(
            tmp_path / what.replace(" ", "-"),
            "--profile",
            str(LOCAL),
            "--config",
            *config,
            env=storage_env,
        )
        for what, config in runs.items()
    }
    wait_all(jobs)
    for job in jobs.values():
        assert job.proc.returncode == 0, job.output()
    assert not escape.exists()  # no download, no preview, nowhere outside

    summary_doc, rows = bucket_report(gcs, bucket, "previews/")
    assert sorted(rows) == sorted([*names, too_long])
    assert rows.pop(too_long)["error"].startswith(
        "no preview written: the preview's object name would be 1025 bytes"
    )
    assert all(r["ok"] == "True" for r in rows.values()), rows  # every other name, in a bucket
    made = check_previews(gcs, bucket, "previews/")
    assert sorted(made) == sorted(f"{n}.png" for n in names)

    summary_doc, rows = folder_report(out)
    assert sorted(rows) == sorted([*names, too_long])
    for name, why in names.items():
        if why is None:
            assert rows[name]["ok"] == "True" and (out / f"{name}.png").is_file(), rows[name]
        else:
            assert rows[name]["error"].startswith(f"no preview written: {why}"), rows[name]
            assert rows[name]["preview"] == ""
    assert summary_doc["unwritable"] == sorted([*(n for n, why in names.items() if why), too_long])
    written = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert written == {f"{n}.png" for n, why in names.items() if why is None} | {
        "report.json",
        "report.csv",
        "report/lock",
        *(f"report/batches/{b}.json" for b in summary_doc["records"]),
    }
    again = snakemake(
        tmp_path / "to-a-folder",
        "--profile",
        str(LOCAL),
        "--config",
        *runs["to a folder"],
        env=storage_env,
    )
    assert again.returncode == 0 and "Nothing to be done" in again.stderr  # reported, not redone

    summary_doc, rows = folder_report(tmp_path / "local-previews")
    assert [r["ok"] for r in rows.values()] == ["True"]
