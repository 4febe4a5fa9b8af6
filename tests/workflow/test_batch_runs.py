"""Runs on Google Batch that do not trip over each other or over the hub, rehearsed through the
stand-in (batch_service.py) with everyone's iam.yaml grants in force: two runs at once from one
checkout, a run left to Batch (`--detach`) and watched, a terminal run whose Snakemake the hub
kills, and Cloud Logging's read quota. (The job's own Batch rehearsal: test_googlebatch.py.)
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from microscopy_notebook.cloud import iam, samples
from microscopy_notebook.image import registry
from tests.workflow.batchrun import (
    ALL_DONE,
    COORDINATOR,
    JOBS,
    PREVIEWABLE,
    SUBMITTER,
    batch_service,
    buckets,
    checkout,
    launcher,
    needs,
    page_commands,
    previews,
    run,
    submitter_env,
)
from tests.workflow.jobrun import summary

pytestmark = pytest.mark.slow


def test_a_killed_submitter_leaves_its_running_job_to_finish_and_starts_nothing_more(
    gcs, emulator, storage_env: dict, batch_python: str, task_python: str, tmp_path: Path
) -> None:
    """What the chapter says of a hub that stops the server a terminal run lives in: the
    coordinating Snakemake is killed (its whole process group, as a stopped container's are),
    the render job already on Batch runs to its end and writes its previews, nothing else is
    submitted, and no report is written."""
    where = buckets(gcs)
    root = checkout(tmp_path)
    with batch_service(emulator, task_python, where.where()) as service:
        proc = subprocess.Popen(
            launcher(service, root, where, batch_python),
            cwd=root,
            env=submitter_env(service, storage_env, tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while not list((service.out / "jobs").glob("render-*.json")):
            assert time.monotonic() < deadline and proc.poll() is None, "nothing submitted"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        (job,) = service.jobs()
        name = f"{job['parent']}/jobs/{job['job_id']}"
        while service.state(name) not in ("SUCCEEDED", "FAILED"):
            assert time.monotonic() < deadline + 120, service.state(name)
            time.sleep(0.5)
        state = service.state(name)
    assert state == "SUCCEEDED"
    assert len(service.jobs()) == 1  # nothing submitted after the kill
    assert len(previews(gcs, where.out, "previews/")) == len(PREVIEWABLE)
    assert not gcs.bucket(where.out).blob("previews/report.json").exists()


# -- runs that do not trip over each other ----------------------------------------------------


def test_two_runs_from_one_checkout_at_once_each_keep_their_own_work_files(
    gcs, emulator, storage_env: dict, batch_python: str, task_python: str, tmp_path: Path
) -> None:
    """Two runs from the same checkout, started together, with the same work prefix in the
    profile: one quick (one batch), one slow (a batch per file, one at a time), so that the quick
    one ends while the slow one's batches still start. Each gets a prefix of its own (the
    launcher's runs/<run id>/), every batch of the slow run fetches the workflow's sources from
    its own, and both complete. PYTHONHASHSEED is the same for both, so that Snakemake packs the
    same sources into the same archive, named by its content: in one shared prefix, the quick
    run's clean-up would delete it under the slow one."""
    where = buckets(gcs)
    root = checkout(tmp_path)
    with batch_service(emulator, task_python, where.where()) as service:
        env = dict(submitter_env(service, storage_env, tmp_path), PYTHONHASHSEED="0")
        quick = launcher(service, root, where, batch_python, output="quick")
        slow = launcher(service, root, where, batch_python, "--jobs", "1", output="slow")
        slow += ["batch_size=5"]  # batches one after the other
        procs = [
            subprocess.Popen(
                argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for argv in (quick, slow)
        ]
        outputs = [p.communicate(timeout=900) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        print(out[-5000:], err[-10000:], sep="\n")
        assert proc.returncode == 0
        assert summary(err).startswith(ALL_DONE)
    prefixes = [re.findall(r"this run's work files: (gs://\S+)/", err)[0] for _, err in outputs]
    assert prefixes[0] != prefixes[1]
    for output in ("quick", "slow"):
        assert len(previews(gcs, where.out, f"{output}/")) == len(PREVIEWABLE)
    slow_prefix = prefixes[1].removeprefix(f"gs://{where.out}/")
    fetched = [
        c.path
        for c in emulator.calls.list()
        if c.who == JOBS
        and c.resource == f"buckets/{where.out}"
        and "snakemake-workflow-sources" in c.path
        and "alt=media" in c.path
    ]
    (batches,) = map(int, re.findall(r"new in (\d+) batch", outputs[1][1]))
    assert batches >= 2 and len(service.jobs()) == 1 + batches
    mine = [p for p in fetched if slow_prefix.replace("/", "%2F") in p]
    assert len(mine) == batches  # every batch of the slow run fetched its own run's sources


# -- submit and walk away ----------------------------------------------------------------------


def test_a_detached_run_is_left_to_batch_and_watched_to_the_end(
    gcs, emulator, storage_env: dict, batch_python: str, task_python: str, tmp_path: Path
) -> None:
    """`googlebatch.py --detach`: the submitter uploads this checkout's workflow/, submits one
    coordinator job and returns at once, leaving nothing running. The coordinator's job runs as
    Batch runs it (the pinned image on COS, a standard VM, its own service account), its
    Snakemake submits the render job, which runs as the jobs' account; the printed watch command
    follows it to the end. Everyone's grants are iam.yaml's, and they suffice."""
    where = buckets(gcs)
    root = checkout(tmp_path)
    model = iam.load()
    (detach,) = page_commands("--detach")
    # The page's command, on the test's buckets, with its work files in the test's bucket.
    detach = detach.replace(
        f"gs://{samples.BUCKET}/{samples.PREFIX.rstrip('/')}", f"gs://{where.raw}/raw"
    ).replace(f"gs://{samples.OUTPUT_BUCKET}/previews", f"gs://{where.out}/previews")
    argv = [batch_python, str(root / "workflow" / "googlebatch.py"), *shlex.split(detach)[2:]]
    argv[2:2] = ["--default-storage-prefix", f"gs://{where.out}/snakemake-work"]
    with batch_service(emulator, task_python, where.where()) as service:
        env = submitter_env(service, storage_env, tmp_path)
        started = time.monotonic()
        submitted = run(argv, root, env)
        returned = time.monotonic() - started
        assert submitted.returncode == 0
        (watch,) = re.findall(r"watch it: +python (\S+) (watch .*)", submitted.stdout)
        (shown,) = page_commands(" watch ")  # the page's form of it
        assert shlex.split(shown)[1:3] == [watch[0], "watch"]
        coordinator = service.jobs()[0]
        assert coordinator["job_id"].startswith("thumbnails-")
        state = service.state(f"{coordinator['parent']}/jobs/{coordinator['job_id']}")
        watched = run(
            [batch_python, str(root / watch[0]), *watch[1].split(), "--every", "1"],
            root,
            env,
        )
    print(f"the submitting process returned after {returned:.1f} s; the coordinator was {state}")
    assert state in ("QUEUED", "SCHEDULED", "RUNNING")  # it returned before the run ended
    assert watched.returncode == 0
    assert re.search(r"thumbnails-\S+: SUCCEEDED", watched.stdout)
    assert "coordinator: Snakemake exited with 0" in watched.stdout
    assert ALL_DONE in watched.stdout  # the run's closing line, from the coordinator's log
    assert len(previews(gcs, where.out, "previews/")) == len(PREVIEWABLE)
    assert gcs.bucket(where.out).blob("previews/report.json").exists()
    # The coordinator's job: the pinned image on COS, a standard VM, its own account.
    job = coordinator["job"]
    (instances,) = job["allocationPolicy"]["instances"]
    assert instances["policy"]["provisioningModel"] == 1  # STANDARD: the run is never preempted
    assert "batch-cos" in instances["policy"]["bootDisk"]["image"]
    assert job["allocationPolicy"]["serviceAccount"]["email"] == model.email("coordinator-account")
    assert job["taskGroups"][0]["taskSpec"]["runnables"][0]["container"]["imageUri"] == (
        registry.load().uri()
    )
    renders = [j for j in service.jobs() if j["job"]["labels"].get("snakemake-job") == "render"]
    assert renders and all(
        j["job"]["allocationPolicy"]["serviceAccount"]["email"] == model.email("jobs-account")
        for j in renders
    )
    assert service.installs() == ""
    (prefix,) = re.findall(r"its work files: gs://[^/]+/(\S+)/", submitted.stdout)
    names = [b.name for b in gcs.list_blobs(where.out, prefix=prefix)]
    assert f"{prefix}/coordinator/snakemake.log" in names
    # What each did, on which resource: within iam.yaml's measured needs, which it grants.
    for who in (SUBMITTER, COORDINATOR, JOBS):
        seen = needs(service, emulator, who, where.where())
        assert seen <= model.people[who].measured(), (who, seen - model.people[who].measured())
    assert needs(service, emulator, COORDINATOR, where.where()) == (
        model.people[COORDINATOR].measured()
    )
    assert ("coordinator-account", "iam.serviceAccounts.actAs") in needs(
        service, emulator, SUBMITTER, where.where()
    )


# -- Cloud Logging's read quota ---------------------------------------------------------------


def test_the_logging_read_quota_costs_the_run_a_minute_per_refused_read_and_nothing_else(
    gcs, emulator, storage_env: dict, batch_python: str, task_python: str, tmp_path: Path
) -> None:
    """Four batches that end together, and a read quota of one log read a minute: the plugin
    reads each finished job's log once; each read past the quota is refused (ResourceExhausted),
    the plugin waits 60 s, during which it checks no job, and reads again. The run finishes with
    every preview, the report and every log; what the quota cost is exactly its waits."""
    where = buckets(gcs)
    root = checkout(tmp_path)
    with batch_service(emulator, task_python, where.where(), log_quota=1) as service:
        proc = run(
            launcher(service, root, where, batch_python, output="previews") + ["batch_size=3"],
            root,
            submitter_env(service, storage_env, tmp_path),
        )
    (batches,) = map(int, re.findall(r"new in (\d+) batch", proc.stderr))
    waited = sum(seconds for _, seconds in service.slept)
    print(
        f"{batches} batches, a quota of 1 log read a minute: {service.refused_reads} reads "
        f"refused, the plugin waited {waited:.0f} s"
    )
    assert proc.returncode == 0
    assert summary(proc.stderr).startswith(ALL_DONE)
    assert len(previews(gcs, where.out, "previews/")) == len(PREVIEWABLE)
    assert batches >= 3
    assert service.refused_reads == batches - 1  # the first read of each minute is served
    assert waited == 60 * service.refused_reads
    assert "Too many requests to Google Logging API" in proc.stderr
    assert "might be incomplete" not in proc.stderr  # each second try was served
    logs = list((root / ".snakemake" / "googlebatch_logs").rglob("*.log"))
    assert len(logs) == batches and all(p.stat().st_size > 0 for p in logs)
