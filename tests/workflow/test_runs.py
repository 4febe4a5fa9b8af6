"""The thumbnail job end to end, as users run it: Snakemake in a subprocess, buckets in the
emulator or folders on disk; then the Google Batch profile, as far as it goes without a login.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from microscopy_notebook.cloud import samples
from tests.workflow.jobrun import (
    GOOGLEBATCH,
    LOCAL,
    WORKFLOW,
    Background,
    bucket_report,
    check_previews,
    folder_report,
    new_bucket,
    objects,
    png_size,
    report_of,
    seed_copies,
    snakemake,
    sources_unchanged,
    wait_all,
    wait_until,
)
from thumbnails.preview import make_preview

NOTHING = "Nothing to be done"
PREVIEWABLE = [s.name for s in samples.SAMPLES if not s.name.endswith(".emi")]

pytestmark = pytest.mark.slow


def state(client, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
    """Every object under a prefix: generation and md5, i.e. whether it was ever rewritten."""
    return {b.name: (b.generation, b.md5_hash) for b in client.list_blobs(bucket, prefix=prefix)}


def summary(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("thumbnail job:")]
    return lines[-1] if lines else ""


def test_bucket_to_bucket_with_bad_files_then_incremental(
    gcs, storage_env, sample_dir: Path, tmp_path: Path
) -> None:
    bucket = f"wf-{uuid.uuid4().hex[:12]}"
    samples.seed(bucket, "raw/", gcs)
    raw = gcs.bucket(bucket)
    good = (sample_dir / "dm3" / "multi_signal.dm3").read_bytes()
    raw.blob("raw/bad/cut.dm3").upload_from_string(good[:1024])
    raw.blob("raw/bad/noise.dm4").upload_from_string(os.urandom(8192))
    sources = state(gcs, bucket, "raw/")
    config = ["--config", f"input=gs://{bucket}/raw", f"output=gs://{bucket}/previews"]

    first = snakemake(tmp_path, "--profile", str(LOCAL), *config, env=storage_env)
    assert first.returncode == 0  # failures are reported, not fatal: each has a placeholder
    assert summary(first.stderr).startswith("thumbnail job: done with 2 failures")
    assert state(gcs, bucket, "raw/") == sources  # no source object written, not even touched

    report, rows = report_of(gcs, bucket, "previews/")
    assert sorted(rows) == sorted(PREVIEWABLE + ["bad/cut.dm3", "bad/noise.dm4"])
    assert report["summary"] == {"files": len(rows), "ok": len(rows) - 2, "failed": 2}
    for name, r in rows.items():
        assert r["source"] == f"gs://{bucket}/raw/{name}"
        assert r["preview"] == f"gs://{bucket}/previews/{name}.png"
        png = raw.blob(f"previews/{name}.png").download_as_bytes()
        assert png_size(png) == (500, 500)
        if name.startswith("bad/"):
            assert not r["ok"] and r["kind"] == "placeholder" and r["error"], r
        else:
            assert r["ok"] and r["error"] is None and r["kind"] != "placeholder", r
    csv_rows = raw.blob("previews/report.csv").download_as_text().splitlines()
    assert len(csv_rows) == len(rows) + 1

    # From a fresh working folder: what is done is read from the buckets, not Snakemake's state.
    outputs = state(gcs, bucket, "previews/")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    second = snakemake(elsewhere, "--profile", str(LOCAL), *config, env=storage_env)
    assert second.returncode == 0 and NOTHING in second.stderr
    assert state(gcs, bucket, "previews/") == outputs  # nothing rewritten, the report neither

    raw.blob("raw/dm3/added later.dm3").upload_from_string(good)
    third = snakemake(tmp_path, "--profile", str(LOCAL), *config, env=storage_env)
    assert third.returncode == 0
    assert summary(third.stderr).startswith("thumbnail job: all 1 done")
    after = state(gcs, bucket, "previews/")
    report, rows_after = report_of(gcs, bucket, "previews/")
    # What the run added: the new file's preview and its batch's record; the report's CSV and
    # summary changed; every old preview and record is untouched.
    added = set(after) - set(outputs)
    (record,) = added - {"previews/dm3/added later.dm3.png"}
    assert len(added) == 2 and record.startswith("previews/report/batches/")
    assert (
        record.removeprefix("previews/report/batches/").removesuffix(".json") in report["records"]
    )
    assert {
        k: v
        for k, v in after.items()
        if k in outputs and not k.endswith(("report.csv", "report.json"))
    } == {k: v for k, v in outputs.items() if not k.endswith(("report.csv", "report.json"))}
    assert len(rows_after) == len(rows) + 1 and rows_after["dm3/added later.dm3"]["ok"]
    assert report["last_run"]["files"] == 1 and report["summary"] == {
        "files": len(rows) + 1,
        "ok": len(rows) - 1,
        "failed": 2,
    }
    assert len(raw.blob("previews/report.csv").download_as_text().splitlines()) == len(rows) + 2
    sources["raw/dm3/added later.dm3"] = state(gcs, bucket, "raw/")["raw/dm3/added later.dm3"]
    assert state(gcs, bucket, "raw/") == sources


def test_local_folders_with_one_command(sample_dir: Path, tmp_path: Path) -> None:
    """The documented command on folders, no cloud: every sample gets its preview, once."""
    shutil.copytree(sample_dir, tmp_path / "in")
    before = {
        p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in (tmp_path / "in").rglob("*")
        if p.is_file()
    }
    env = {k: v for k, v in os.environ.items() if k != "STORAGE_EMULATOR_HOST"}
    config = [
        "--config",
        f"input={tmp_path / 'in'}",
        f"output={tmp_path / 'previews'}",
        "strict=True",
    ]
    first = snakemake(tmp_path, "--profile", str(LOCAL), *config, env=env)
    assert first.returncode == 0
    assert summary(first.stderr).startswith(f"thumbnail job: all {len(PREVIEWABLE)} done")
    made = sorted(
        str(p.relative_to(tmp_path / "previews")) for p in (tmp_path / "previews").rglob("*.png")
    )
    assert made == sorted(f"{name}.png" for name in PREVIEWABLE)
    assert not list((tmp_path / "previews").rglob("*.part"))  # no temp file left behind
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "previews").rglob("*")}

    second = snakemake(tmp_path, "--profile", str(LOCAL), *config, env=env)
    assert second.returncode == 0 and NOTHING in second.stderr
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "previews").rglob("*")} == mtimes
    assert {
        p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in (tmp_path / "in").rglob("*")
        if p.is_file()
    } == before

    (tmp_path / "in" / "broken.dm3").write_bytes(b"\0" * 100)
    strict = snakemake(tmp_path, "--profile", str(LOCAL), *config, env=env)
    assert strict.returncode != 0  # strict=True: a file that could not be previewed fails the run
    assert "1 file(s) could not be previewed and strict is set" in strict.stderr
    assert (tmp_path / "previews" / "broken.dm3.png").exists()  # its placeholder all the same


def test_two_runs_at_once_with_other_batches_report_each_file_once(
    emulator, gcs, storage_env, tmp_path: Path
) -> None:
    """Two people start the job on the same buckets at the same moment, from their own folders,
    one with batch_size=10 and one with 23: both plan all 45 files (their listings of the input
    are held up until both have asked), cut into other batches, and both render them. Every CSV
    append is slowed down (2 s), so that both read the report before either adds to it. Each file
    is reported once; report.json and report.csv agree; a third run finds nothing to do and
    changes nothing."""
    bucket = new_bucket(gcs, "overlap")
    names = seed_copies(gcs, bucket, 5)
    config = ["--config", f"input=gs://{bucket}/raw", f"output=gs://{bucket}/previews"]
    slow = emulator.faults.add(
        lambda m, p: m == "POST" and f"/b/{bucket}/o/" in p and "/compose" in p,
        "delay:2",
        times=10**6,
    )
    gate = uuid.uuid4().hex

    def lists_input(method: str, path: str) -> bool:
        return method == "GET" and f"/b/{bucket}/o?" in path and "prefix=raw" in path

    with sources_unchanged(gcs, bucket, "raw/"):
        emulator.faults.add(lists_input, f"hold:{gate}", times=10**6)
        jobs = {
            size: Background(
                tmp_path / f"batch_size-{size}",
                "--profile",
                str(LOCAL),
                "--cores",
                "2",
                *config,
                f"batch_size={size}",
                # calls recorded as this run's (the front strips the /as/ part)
                env={**storage_env, "STORAGE_EMULATOR_HOST": emulator.endpoint_as(f"size{size}")},
            )
            for size in (10, 23)
        }
        try:
            for size, job in jobs.items():
                wait_until(
                    lambda size=size: any(
                        c.who == f"size{size}" and lists_input(c.method, c.path)
                        for c in emulator.calls.list()
                    ),
                    job,
                    "its listing of the input",
                )
        finally:
            emulator.faults.release(gate)
        wait_all(jobs)
    outputs = {size: job.output() for size, job in jobs.items()}
    emulator.faults.clear()
    print(f"appends slowed down: {slow.hits}")
    for size, job in jobs.items():
        assert job.proc.returncode == 0, outputs[size]
        assert "45 new in" in outputs[size]  # both planned every file: they truly overlapped
    made = check_previews(gcs, bucket, "previews/")
    assert sorted(made) == sorted(f"{name}.png" for name in names)
    summary, rows = bucket_report(gcs, bucket, "previews/")  # each file once, and they agree
    assert sorted(rows) == names
    records = {
        b.name.rsplit("/", 1)[1][:-5]
        for b in gcs.list_blobs(bucket, prefix="previews/report/batches/")
    }
    assert len(records) == 6 + 2 and set(summary["records"]) == records  # both runs' batches

    before = objects(gcs, bucket, "previews/")
    third = snakemake(tmp_path / "batch_size-10", "--profile", str(LOCAL), *config, env=storage_env)
    assert third.returncode == 0 and NOTHING in third.stderr
    assert objects(gcs, bucket, "previews/") == before


def _older_job(tmp_path: Path) -> Path:
    """A copy of the workflow as an older release would be: the same drawing, an older version
    number recorded with each preview."""
    root = tmp_path / "older"
    shutil.copytree(WORKFLOW, root / "workflow", ignore=shutil.ignore_patterns("__pycache__"))
    init = root / "workflow" / "scripts" / "thumbnails" / "__init__.py"
    text = init.read_text()
    assert 'RENDERER = "' in text
    init.write_text(re.sub(r'RENDERER = "[^"]*"', 'RENDERER = "2026.1"', text))
    return root / "workflow" / "Snakefile"


def test_redo_replaces_only_the_job_s_own_previews(
    gcs, storage_env, sample_dir: Path, tmp_path: Path
) -> None:
    """A placeholder is redone once its file can be read, under a generation precondition; an
    object someone else put at a preview's name, or wrote over one of the job's (even a copy of
    another preview of the job, metadata and all), is never replaced; `older-than` redoes what an
    older renderer drew; the report says what was redone and still agrees with its summary."""
    bucket = new_bucket(gcs, "redo")
    samples.seed(bucket, "raw/", gcs)
    raw = gcs.bucket(bucket)
    good = (sample_dir / "dm3" / "multi_signal.dm3").read_bytes()
    for name in ("fixme", "theirs", "copied"):  # unreadable for now: placeholders
        raw.blob(f"raw/bad/{name}.dm3").upload_from_string(good[:1024])
    raw.blob("previews/bad/before.dm3.png").upload_from_string(b"someone's picture")
    raw.blob("raw/bad/before.dm3").upload_from_string(good[:1024])
    config = ["--config", f"input=gs://{bucket}/raw", f"output=gs://{bucket}/previews"]
    older = _older_job(tmp_path)
    first = snakemake(tmp_path, "--profile", str(LOCAL), *config, env=storage_env, snakefile=older)
    assert first.returncode == 0
    # Someone writes over two of the job's placeholders: a picture of their own, and a copy of
    # the job's placeholder of fixme (its metadata and all, as `gcloud storage cp` copies it).
    raw.blob("previews/bad/theirs.dm3.png").upload_from_string(b"their own picture")
    raw.copy_blob(raw.blob("previews/bad/fixme.dm3.png"), raw, "previews/bad/copied.dm3.png")
    for name in ("fixme", "theirs", "copied", "before"):  # now every one is readable
        raw.blob(f"raw/bad/{name}.dm3").upload_from_string(good)
    foreign = {
        n: objects(gcs, bucket, f"previews/bad/{n}.dm3.png") for n in ("theirs", "copied", "before")
    }
    before = objects(gcs, bucket, "previews/")

    redo = snakemake(
        tmp_path, "--profile", str(LOCAL), *config, "redo=placeholders", env=storage_env
    )
    assert redo.returncode == 0
    assert "1 to redo" in redo.stderr and "1 preview redone" in redo.stderr
    after = objects(gcs, bucket, "previews/")
    fixed = "previews/bad/fixme.dm3.png"
    assert after[fixed][0] != before[fixed][0]  # a new generation: the redone preview
    assert (
        raw.blob(fixed).download_as_bytes()
        == make_preview(sample_dir / "dm3" / "multi_signal.dm3", "bad/fixme.dm3").png
    )
    for n, state in foreign.items():  # never replaced
        assert objects(gcs, bucket, f"previews/bad/{n}.dm3.png") == state, n
    unchanged = {k: v for k, v in before.items() if k.endswith(".png") and k != fixed}
    assert {k: after[k] for k in unchanged} == unchanged
    summary_doc, rows = bucket_report(gcs, bucket, "previews/", once=False)
    assert (
        rows["bad/fixme.dm3"]["ok"] == "True" and rows["bad/fixme.dm3"]["redone"] == "placeholder"
    )
    assert summary_doc["last_run"]["redone"] == ["bad/fixme.dm3"]
    assert "was kept" in rows["bad/before.dm3"]["shown"]
    assert "was kept" in rows["bad/theirs.dm3"]["shown"]  # reported as kept, not redrawn
    assert rows["bad/copied.dm3"]["kind"] == "placeholder"  # the job's row; the object is theirs

    # What the older release drew: redone by this one (the same pictures here, so only the
    # version the objects record changes); what this release drew is left alone.
    again = snakemake(
        tmp_path, "--profile", str(LOCAL), *config, "redo=older-than=2026.12", env=storage_env
    )
    assert again.returncode == 0
    summary_doc, rows = bucket_report(gcs, bucket, "previews/", once=False)
    redone = sorted(summary_doc["last_run"]["redone"])
    assert redone == sorted(n for n in PREVIEWABLE)  # the samples, drawn by 2026.1
    assert all(
        rows[n]["renderer"] == "2026.12" and rows[n]["redone"] == "renderer 2026.1" for n in redone
    )
    for n, state in foreign.items():
        assert objects(gcs, bucket, f"previews/bad/{n}.dm3.png") == state, n
    assert (
        snakemake(
            tmp_path, "--profile", str(LOCAL), *config, "redo=older-than=2026.12", env=storage_env
        ).returncode
        == 0
    )
    assert (
        bucket_report(gcs, bucket, "previews/", once=False)[0]["csv_rows"]
        == summary_doc["csv_rows"]
    )  # nothing left to redo


def test_redo_in_a_local_folder(sample_dir: Path, tmp_path: Path) -> None:
    """The same in a folder: the placeholder of a file that became readable is redone; a file
    someone wrote over a placeholder of the job's is left as it is."""
    source, out = tmp_path / "in", tmp_path / "previews"
    source.mkdir()
    good = (sample_dir / "dm3" / "multi_signal.dm3").read_bytes()
    for name in ("fixme", "theirs"):
        (source / f"{name}.dm3").write_bytes(good[:1024])
    env = {k: v for k, v in os.environ.items() if k != "STORAGE_EMULATOR_HOST"}
    config = ["--config", f"input={source}", f"output={out}"]
    assert snakemake(tmp_path, "--profile", str(LOCAL), *config, env=env).returncode == 0
    (out / "theirs.dm3.png").write_bytes(b"their own picture")
    for name in ("fixme", "theirs"):
        (source / f"{name}.dm3").write_bytes(good)
    redo = snakemake(tmp_path, "--profile", str(LOCAL), *config, "redo=placeholders", env=env)
    assert redo.returncode == 0 and "1 preview redone" in redo.stderr
    assert (out / "fixme.dm3.png").read_bytes() == make_preview(
        source / "fixme.dm3", "fixme.dm3"
    ).png
    assert (out / "theirs.dm3.png").read_bytes() == b"their own picture"
    _summary_doc, rows = folder_report(out, once=False)
    assert (rows["fixme.dm3"]["ok"], rows["fixme.dm3"]["redone"]) == ("True", "placeholder")
    assert rows["theirs.dm3"]["ok"] == "False"  # its row as it was: the job redid nothing there
    assert not [p for p in out.rglob("*") if p.name.startswith(".thumbnail-job-")]


# -- the cloud path, offline ----------------------------------------------------------------------


def test_googlebatch_profile_flags_exist(batch_python: str) -> None:
    profile = yaml.safe_load((GOOGLEBATCH / "config.yaml").read_text())
    usage = subprocess.run(
        [batch_python, "-m", "snakemake", "--help"], capture_output=True, text=True, timeout=120
    ).stdout
    flags = set(re.findall(r"--[a-z][a-z0-9-]+", usage))
    assert {f"--{key}" for key in profile} <= flags, {f"--{k}" for k in profile} - flags
    assert profile["executor"] == "googlebatch" and profile["default-storage-provider"] == "gcs"
    assert profile["preemptible-rules"] == ["render"]


@pytest.fixture
def cloud_env(storage_env: dict, tmp_path: Path) -> dict:
    """The emulator for storage, and certainly no Google credentials: nothing can be submitted."""
    env = dict(storage_env)
    env["GOOGLE_APPLICATION_CREDENTIALS"] = str(tmp_path / "no-credentials.json")
    env["HOME"] = str(tmp_path / "home")
    env["NO_GCE_CHECK"] = "True"
    return env


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the workflow folder, run from its parent as the book says (the repository root):
    Snakemake ships sources to the Batch VMs relative to the working directory."""
    root = tmp_path / "checkout"
    shutil.copytree(WORKFLOW, root / "workflow", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_googlebatch_dry_run_and_submission_stops_at_credentials(
    batch_python: str, gcs, cloud_env: dict, checkout: Path
) -> None:
    bucket = f"wf-{uuid.uuid4().hex[:12]}"
    samples.seed(bucket, "raw/", gcs)
    args = [
        "-s",
        "workflow/Snakefile",
        "--profile",
        "workflow/profiles/googlebatch",
        "--googlebatch-project",
        "mnb-offline-check",
        "--storage-gcs-project",
        "mnb-offline-check",
        "--default-storage-prefix",
        f"gs://{bucket}/snakemake-work",
        "--config",
        f"input=gs://{bucket}/raw",
        f"output=gs://{bucket}/previews",
    ]
    dry = subprocess.run(
        [batch_python, "-m", "snakemake", *args, "-n"],
        cwd=checkout,
        env=cloud_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(dry.stdout, dry.stderr)
    assert dry.returncode == 0
    assert f"{len(PREVIEWABLE)} new in 1 batch(es)" in dry.stdout  # a dry run logs to stdout
    assert re.search(
        r"rule render:\n\s+input: gs://\S+/snakemake-work/results/thumbnail-job/"
        r"manifests/[0-9a-f]{16}\.json \(retrieve from storage\)",
        dry.stdout,
    )

    real = subprocess.run(
        [batch_python, "-m", "snakemake", *args],
        cwd=checkout,
        env=cloud_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(real.stdout, real.stderr)
    assert real.returncode != 0
    assert "Unable to connect to Google Batch" in real.stderr  # the first thing that needs a login
    assert "Ignoring source file" not in real.stderr  # every workflow file reaches the VMs
    assert [b.name for b in gcs.list_blobs(bucket, prefix="previews/")] == []


def test_cloud_path_refuses_local_folders(
    batch_python: str, cloud_env: dict, checkout: Path
) -> None:
    (checkout / "in").mkdir()
    run = subprocess.run(
        [
            batch_python,
            "-m",
            "snakemake",
            "-s",
            "workflow/Snakefile",
            "--profile",
            "workflow/profiles/googlebatch",
            "--googlebatch-project",
            "mnb-offline-check",
            "--storage-gcs-project",
            "mnb-offline-check",
            "-n",
            "--config",
            "input=in",
            "output=gs://somewhere/previews",
        ],
        cwd=checkout,
        env=cloud_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode != 0
    assert "cannot run on cloud machines with a local folder" in run.stdout + run.stderr
    assert not (checkout / "results").exists()  # refused before planning
