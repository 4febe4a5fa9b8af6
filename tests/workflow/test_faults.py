"""Storage faults during thumbnail job runs, injected by the emulator front's fault table between
the job's processes and fake-gcs-server (tests/cloud/test_storage_faults.py does the same for
the CLIs).

Transient 503/429 answers and a lost upload response must leave exactly the outputs of a clean
run; a storage that cannot be reached, or stops answering, must be a clear message within 60 s
(a bound on the retries the job configures, not a speed target); a run killed halfway must leave
only whole objects, and the next run must finish the job. No source object ever changes.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest

import render_batch
from microscopy_notebook.cloud import samples
from tests.workflow.jobrun import (
    LOCAL,
    Background,
    alive_in_group,
    bucket_report,
    check_previews,
    folder_report,
    new_bucket,
    objects,
    report_of,
    seed_copies,
    snakemake,
    sources_unchanged,
    summary,
    wait_all,
    wait_until,
)
from thumbnails import store
from thumbnails.locations import parse_location
from thumbnails.preview import make_preview

GOOD = [s.name for s in samples.SAMPLES if not s.name.endswith(".emi")]
UNREACHABLE = "could not reach Cloud Storage"


def is_listing(method: str, path: str) -> bool:
    return method == "GET" and "/o?" in path and "alt=media" not in path


def is_download(method: str, path: str) -> bool:
    return method == "GET" and "alt=media" in path


def is_upload(method: str, path: str) -> bool:
    return method in ("POST", "PUT") and "/upload/" in path


def wait_for_previews(
    gcs, bucket: str, prefix: str, at_least: int, job: Background, timeout: float = 120
) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert job.proc.poll() is None, "the run ended before the test could interfere"
        n = sum(1 for b in gcs.list_blobs(bucket, prefix=prefix) if b.name.endswith(".png"))
        if n >= at_least:
            return n
        time.sleep(0.05)
    raise AssertionError(f"no {at_least} previews under gs://{bucket}/{prefix} in {timeout} s")


# -- transient errors and a lost answer ----------------------------------------------------------
def test_a_lost_upload_answer_is_checked_then_taken_as_done(
    emulator, gcs, storage_env, monkeypatch: pytest.MonkeyPatch, sample_dir: Path
) -> None:
    """The server commits a preview and the answer is lost: the client retries with
    ifGenerationMatch=0 and gets 412. The job then finds its own bytes there: done, one object.
    Another object at that name would be kept and reported instead."""
    store.client.cache_clear()  # a client made under the emulator's settings
    bucket = new_bucket(gcs, "lost")
    target = parse_location(f"gs://{bucket}/previews", "output")
    png = make_preview(sample_dir / "eds/example1.msa", "eds/example1.msa").png
    created: list[bool] = []
    real_create = store.create
    monkeypatch.setattr(
        store, "create", lambda *a, **k: created.append(real_create(*a, **k)) or created[-1]
    )
    lost = emulator.faults.add(is_upload, "drop-after", times=1)
    assert render_batch.write(target, "eds/example1.msa", png, "1" * 16)  # in place: done
    assert lost.hits == 1 and created == [False]  # the retry met the committed object: 412
    (blob,) = gcs.list_blobs(bucket)
    assert (blob.name, blob.metageneration, blob.download_as_bytes()) == (
        "previews/eds/example1.msa.png",
        1,
        png,
    )
    assert blob.metadata[store.BATCH_KEY] == "1" * 16  # and known as this job's
    assert not render_batch.write(target, "eds/example1.msa", b"other bytes", "1" * 16)  # kept
    assert objects(gcs, bucket) == {blob.name: (blob.generation, blob.md5_hash, blob.crc32c)}


@pytest.mark.slow
def test_transient_errors_and_a_lost_upload_answer_change_nothing(
    emulator, gcs, storage_env, sample_dir: Path, tmp_path: Path
) -> None:
    bucket = new_bucket(gcs, "flaky")
    samples.seed(bucket, "raw/", gcs)
    faults = {
        "listing 503": emulator.faults.add(is_listing, "status:503", times=2),
        "download 503": emulator.faults.add(is_download, "status:503", times=3),
        "download 429": emulator.faults.add(is_download, "status:429", times=2),
        # The first upload is a preview: the server stores it, the answer never arrives. The
        # client's retry carries ifGenerationMatch=0 and gets 412; the job must take that as done
        # once the object there is found to hold the same bytes, not as someone else's object.
        "upload answer lost": emulator.faults.add(is_upload, "drop-after", times=1),
        "upload 429": emulator.faults.add(is_upload, "status:429", times=2),
        "upload 503": emulator.faults.add(is_upload, "status:503", times=2),
    }
    config = [
        "--config",
        f"input=gs://{bucket}/raw",
        f"output=gs://{bucket}/previews",
        "strict=True",
    ]
    with sources_unchanged(gcs, bucket, "raw/"):
        run = snakemake(tmp_path, "--profile", str(LOCAL), *config, env=storage_env)
    print({name: fault.hits for name, fault in faults.items()})
    assert {name: fault.remaining for name, fault in faults.items()} == dict.fromkeys(faults, 0)
    assert run.returncode == 0
    assert summary(run.stderr).startswith(f"thumbnail job: all {len(GOOD)} done")

    made = check_previews(gcs, bucket, "previews/")  # whole PNGs, md5 as stored, nothing else
    assert sorted(made) == sorted(f"{name}.png" for name in GOOD)
    for name in GOOD:  # byte for byte what a clean render of the same file gives
        assert made[f"{name}.png"] == make_preview(sample_dir / name, name).png, name
    report, rows = report_of(gcs, bucket, "previews/")
    assert sorted(rows) == sorted(GOOD)
    assert all(r["ok"] for r in rows.values())
    assert report["last_run"]["kept"] == []  # the lost answer's object was recognised as ours


# -- unreachable ---------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_unreachable_storage_is_a_clear_error_within_a_minute(
    emulator, gcs, storage_env, tmp_path: Path
) -> None:
    """Three runs at once: one pointed at a port nobody listens on, one at a server that accepts
    connections and never answers, and one whose storage goes away while a batch is running."""
    dead = dict(storage_env, STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{_free_port()}")
    silent_server = socket.create_server(("127.0.0.1", 0), backlog=64)  # never accept()s
    silent = dict(
        storage_env, STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{silent_server.getsockname()[1]}"
    )
    config = [
        "--config",
        "input=gs://nexuslims_example-datafiles/MockDataFiles",
        "output=gs://nexuslims_example-joboutput/unreachable",
    ]

    bucket = new_bucket(gcs, "outage")
    names = seed_copies(gcs, bucket, 2)
    outage_config = [
        "--config",
        f"input=gs://{bucket}/raw",
        f"output=gs://{bucket}/previews",
        "batch_size=100",
    ]
    try:
        with sources_unchanged(gcs, bucket, "raw/"):
            jobs = {
                "dead port": Background(
                    tmp_path / "dead", "--profile", str(LOCAL), *config, env=dead
                ),
                "no answer": Background(
                    tmp_path / "silent", "--profile", str(LOCAL), *config, env=silent
                ),
                "outage": Background(
                    tmp_path / "outage",
                    "--profile",
                    str(LOCAL),
                    "--cores",
                    "1",
                    *outage_config,
                    env=storage_env,
                ),
            }
            wait_for_previews(gcs, bucket, "previews/", 2, jobs["outage"])
            outage = emulator.faults.add(lambda m, p: f"/b/{bucket}/" in p, "reset", times=10**6)
            went_away = time.monotonic()
            ended = wait_all(jobs)
            emulator.faults.clear()
    finally:
        emulator.faults.clear()
        silent_server.close()
        for job in locals().get("jobs", {}).values():
            job.kill_group()

    outputs = {name: job.output() for name, job in jobs.items()}
    for name, job in jobs.items():
        # From the start of the run, or for the outage from the moment the storage went away.
        took = ended[name] - (went_away if name == "outage" else job.started)
        output = outputs[name]
        print(f"{name}: exit status {job.proc.returncode}, reported after {took:.1f} s")
        assert job.proc.returncode != 0, name
        assert UNREACHABLE in output, name
        assert "Traceback" not in output, name
        assert took < 60, name  # a bound on retries, not a speed target
    assert outage.hits > 0
    stopped = (
        r"batch [0-9a-f]{16} stopped: The thumbnail job could not reach Cloud Storage to "
        rf"(download|write) \S+ (from|to) gs://{bucket}/"
    )
    assert re.search(stopped, outputs["outage"])

    # The next run, with the storage back, finishes the job; nothing was written twice.
    before = objects(gcs, bucket, "previews/")
    with sources_unchanged(gcs, bucket, "raw/"):
        rerun = snakemake(
            tmp_path / "outage", "--profile", str(LOCAL), *outage_config, env=storage_env
        )
    assert rerun.returncode == 0
    assert summary(rerun.stderr).startswith(f"thumbnail job: all {len(names)} done")
    after = objects(gcs, bucket, "previews/")
    assert {k: v for k, v in after.items() if k in before} == before  # kept, not rewritten
    made = check_previews(gcs, bucket, "previews/")
    assert sorted(made) == sorted(f"{name}.png" for name in names)


# -- killed halfway ------------------------------------------------------------------------------
def pngs(gcs, bucket: str) -> list[str]:
    return [b.name for b in gcs.list_blobs(bucket, prefix="previews/") if b.name.endswith(".png")]


def is_listing_of(bucket: str, prefix: str):
    return lambda m, p: m == "GET" and f"/b/{bucket}/o?" in p and f"prefix={prefix}" in p


def is_download_of(bucket: str, name: str):
    quoted = name.replace("/", "%2F")
    return lambda m, p: m == "GET" and "alt=media" in p and f"/b/{bucket}/o/{quoted}?" in p


def is_part_removal(bucket: str):
    """The last call of a CSV append: the part object's removal, after the compose."""
    return lambda m, p: m == "DELETE" and f"/b/{bucket}/o/previews%2Freport%2Fparts%2F" in p


def held_flock_waiters(path: Path) -> int:
    """How many processes wait for an flock on ``path`` (/proc/locks lists waiters with ->)."""
    inode = path.stat().st_ino
    waiting = 0
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and "FLOCK" in fields:
            device_inode = fields[fields.index("->") + 5]
            waiting += int(device_inode.rsplit(":", 1)[1]) == inode
    return waiting


@pytest.mark.slow
@pytest.mark.parametrize("step", ["planning", "rendering", "report"])
def test_a_run_killed_at_any_step_blocks_nothing_and_the_next_completes_it(
    emulator, gcs, storage_env, tmp_path: Path, step: str
) -> None:
    """SIGKILL of the whole run while it plans (its listing of the input held up), while it renders
    (a download held up half-way through the batch) or in its report step (after its CSV append,
    before its summary: the part object's removal held up). The same command again, in the same
    folder, completes the work and the report: no `--unlock`, no file reported twice, report.json
    and report.csv agree, no preview rewritten. While the rendering run was alive, a second run in
    its folder, on the same files, was refused and changed nothing."""
    bucket = new_bucket(gcs, "killed")
    names = seed_copies(gcs, bucket, 2)  # 18 files
    config = [
        "--config",
        f"input=gs://{bucket}/raw",
        f"output=gs://{bucket}/previews",
        "batch_size=100",
    ]
    again = ["--profile", str(LOCAL), "--cores", "1", *config]
    if step == "report":  # a report to append to: the first half, done before
        first = snakemake(tmp_path, *again, "max_files=9", env=storage_env)
        assert first.returncode == 0
    hold = {
        "planning": is_listing_of(bucket, "raw"),
        "rendering": is_download_of(bucket, f"raw/{names[12]}"),
        "report": is_part_removal(bucket),
    }[step]
    with sources_unchanged(gcs, bucket, "raw/"):
        # Held up, each retry too (after this test's own listing of the input).
        held = emulator.faults.add(hold, "delay:600", times=10**6)
        job = Background(tmp_path, *again, env=storage_env)
        try:
            wait_until(lambda: held.hits >= 1, job, f"the run held up in its {step} step")
            if step == "rendering":  # the batch waits for its 13th file: 12 previews come
                wait_until(lambda: len(pngs(gcs, bucket)) == 12, job, "12 previews")
            # Stopped where it is, before its storage client gives up on the held call: alive
            # (it holds its locks) but not moving, whatever the machine's load.
            os.killpg(job.proc.pid, signal.SIGSTOP)
            if step == "rendering":  # a live run on the same files: this one is refused, safely
                busy = snakemake(tmp_path, *again, env=storage_env)
                assert busy.returncode != 0
                assert "Another run of the thumbnail job in this folder is working on the same" in (
                    busy.stderr
                )
                assert f"process {job.proc.pid}," in busy.stderr
                assert "Traceback" not in busy.stdout + busy.stderr
            before = objects(gcs, bucket, "previews/")
        finally:
            job.kill_group()
        assert not alive_in_group(job.proc.pid)  # nothing of the run is left running
        # What the bucket shows after the kill: only whole previews, each matching its stored
        # md5; no temporary or partial object.
        made = check_previews(gcs, bucket, "previews/")
        print(f"killed in {step} with {len(made)} of {len(names)} previews written")
        if step == "rendering":
            assert len(made) == 12
        emulator.faults.clear()
        # Snakemake's locks of the killed run, once it had got as far as taking them
        assert bool(list((tmp_path / ".snakemake").glob("locks/*.lock"))) == (step != "planning")
        rerun = snakemake(tmp_path, *again, env=storage_env)  # no --unlock
    assert rerun.returncode == 0
    assert "removed .snakemake/locks/" in rerun.stderr or step == "planning"
    after = objects(gcs, bucket, "previews/")
    previews = {k: v for k, v in before.items() if k.endswith(".png")}
    assert {k: v for k, v in after.items() if k in previews} == previews  # none rewritten
    made = check_previews(gcs, bucket, "previews/")
    assert sorted(made) == sorted(f"{name}.png" for name in names)
    _report, rows = bucket_report(gcs, bucket, "previews/")
    assert sorted(rows) == names
    if step == "report":  # every batch was done: the rerun only repaired the report
        assert "nothing new to preview; added to the report the rows of 1 batch" in rerun.stderr
    assert not list(gcs.list_blobs(bucket, prefix="previews/report/parts/"))  # cleaned up


@pytest.mark.slow
@pytest.mark.parametrize("step", ["rendering", "report"])
def test_a_run_killed_into_a_local_folder_blocks_nothing(
    emulator, gcs, storage_env, tmp_path: Path, step: str
) -> None:
    """The same into a local output folder: killed while a download is held up, or while its
    report step waits for the report's lock (held here, as a run of another folder would)."""
    import fcntl

    bucket = new_bucket(gcs, "killedlocal")
    names = seed_copies(gcs, bucket, 2)
    out = tmp_path / "previews"
    again = [
        "--profile",
        str(LOCAL),
        "--cores",
        "1",
        "--config",
        f"input=gs://{bucket}/raw",
        f"output={out}",
        "batch_size=100",
    ]
    lock = out / "report" / "lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "a") as held_lock:
        if step == "report":
            fcntl.flock(held_lock, fcntl.LOCK_EX)
        else:
            emulator.faults.add(is_download_of(bucket, f"raw/{names[12]}"), "delay:600", 10**6)
        job = Background(tmp_path / "work", *again, env=storage_env)
        try:
            if step == "report":
                wait_until(lambda: held_flock_waiters(lock) == 1, job, "its report step waiting")
            else:  # the batch waits for its 13th file: 12 previews come
                wait_until(lambda: len(list(out.rglob("*.png"))) == 12, job, "12 previews")
            os.killpg(job.proc.pid, signal.SIGSTOP)  # not moving on, whatever the load
        finally:
            job.kill_group()
    emulator.faults.clear()
    made = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert len(made) == (len(names) if step == "report" else 12)
    assert not (out / "report.csv").exists()  # killed before any report
    rerun = snakemake(tmp_path / "work", *again, env=storage_env)  # no --unlock
    assert rerun.returncode == 0
    summary, rows = folder_report(out)
    assert sorted(rows) == names and summary["summary"]["failed"] == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == [
        f"{n}.png" for n in names
    ]
    assert not [p for p in out.rglob("*") if p.name.startswith(store.TEMPORARY)]
