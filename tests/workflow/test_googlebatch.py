"""The thumbnail job on Google Batch, rehearsed: the real profile, executor plugin and Snakefile,
storage in the emulator, and only the Batch service answered by tests/workflow/batch_standin.py,
which runs every submitted Job's runnables (scripts as root, the container's commands as the
image's user) and records the Job as it received it.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from microscopy_notebook.book import roles_table
from microscopy_notebook.cloud import samples
from microscopy_notebook.image import registry
from microscopy_notebook.paths import ROOT
from tests.workflow.batchrun import (
    INSTALLS,
    STANDIN,
    SUBMITTER,
    BatchRun,
    standin_env,
    standin_folder,
    without_credentials,
)
from tests.workflow.jobrun import GOOGLEBATCH, LOCAL, WORKFLOW, snakemake, summary

PROFILE = yaml.safe_load((GOOGLEBATCH / "config.yaml").read_text())
# The first job's Batch profile (book/chapters/first-job.md), which runs its task as this one does.
FIRST_JOB = ROOT / "book" / "examples" / "first-job" / "googlebatch" / "config.yaml"
PROJECT = "nexuslims-example"
PREVIEWABLE = [s.name for s in samples.SAMPLES if not s.name.endswith(".emi")]
ALL_DONE = f"thumbnail job: all {len(PREVIEWABLE)} done;"

pytestmark = pytest.mark.slow


def batch_run(
    gcs,
    env: dict,
    batch_python: str,
    task_python: str,
    *extra: str,
    bucket: str | None = None,
    standin: dict | None = None,
) -> BatchRun:
    """Seed a bucket, then run the job through the stand-in from a git checkout of workflow/ (as
    from the repository root: Snakemake ships the git-tracked files to the VMs)."""
    argv, env, out, checkout, bucket = batch_command(
        gcs, env, batch_python, task_python, *extra, bucket=bucket, standin=standin
    )
    run = subprocess.run(argv, cwd=checkout, env=env, capture_output=True, text=True, timeout=600)
    print(run.stdout[-20000:], run.stderr[-20000:], sep="\n")  # shown when a test fails
    return BatchRun(run, out, checkout, bucket)


def batch_command(
    gcs,
    env: dict,
    batch_python: str,
    task_python: str,
    *extra: str,
    bucket: str | None = None,
    standin: dict | None = None,
):
    if bucket is None:
        bucket = f"gb-{uuid.uuid4().hex[:12]}"
        samples.seed(bucket, "raw/", gcs)
    out = standin_folder()
    checkout = out / "checkout"
    shutil.copytree(WORKFLOW, checkout / "workflow", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "init", "-q"], cwd=checkout, check=True)
    subprocess.run(["git", "add", "-A"], cwd=checkout, check=True)
    env = standin_env(env, out, task_python, standin)
    args = [
        "-s",
        "workflow/Snakefile",
        "--profile",
        "workflow/profiles/googlebatch",
        "--googlebatch-project",
        PROJECT,
        "--storage-gcs-project",
        PROJECT,
        "--default-storage-prefix",
        f"gs://{bucket}/snakemake-work",
        *extra,
        "--config",
        f"input=gs://{bucket}/raw",
        f"output=gs://{bucket}/previews",
    ]
    return [batch_python, str(STANDIN), *args], env, out, checkout, bucket


@pytest.fixture
def batch_env(storage_env: dict, tmp_path: Path) -> dict:
    """Storage in the emulator, no Google credentials (batchrun.without_credentials)."""
    return without_credentials(storage_env, tmp_path)


@pytest.fixture(scope="module")
def finished(
    emulator, batch_python: str, task_python: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BatchRun]:
    """One successful run for the module's checks (a run takes half a minute)."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in emulator.env.items():
            patch.setenv(key, value)
        from google.cloud import storage

        env = without_credentials(emulator.apply(), tmp_path_factory.mktemp("none"))
        result = batch_run(storage.Client(), env, batch_python, task_python)
        yield result
    shutil.rmtree(result.out, ignore_errors=True)


def previews(gcs, bucket: str, prefix: str) -> dict[str, bytes]:
    return {
        b.name[len(prefix) :]: b.download_as_bytes()
        for b in gcs.list_blobs(bucket, prefix=prefix)
        if b.name.endswith(".png")
    }


# -- end to end -----------------------------------------------------------------------------------


def test_batch_run_lands_every_preview_byte_for_byte_as_the_local_run(
    finished: BatchRun, gcs, storage_env: dict, tmp_path: Path
) -> None:
    assert finished.run.returncode == 0
    assert summary(finished.run.stderr).startswith(ALL_DONE)
    on_batch = previews(gcs, finished.bucket, "previews/")
    assert sorted(on_batch) == sorted(f"{name}.png" for name in PREVIEWABLE)
    # The same files, run here with the local profile into another prefix of the same bucket.
    local = snakemake(
        tmp_path,
        "--profile",
        str(LOCAL),
        "--config",
        f"input=gs://{finished.bucket}/raw",
        f"output=gs://{finished.bucket}/local",
        env=storage_env,
    )
    assert local.returncode == 0, local.stderr[-3000:]
    assert previews(gcs, finished.bucket, "local/") == on_batch
    # Every task ran in the image's user's Python with nothing installed at run time.
    assert finished.installs() == ""
    rendered = [j for j in finished.jobs() if j["job"]["labels"]["snakemake-job"] == "render"]
    assert len(rendered) == len(finished.jobs()) == 1  # plan and report are local rules


def test_the_plugins_workdir_is_not_writable_by_the_images_user(finished: BatchRun) -> None:
    """Why the profile's precommand moves the task to a folder of its own: the plugin's set-up
    runnables (as root) leave /tmp/workdir owned by root, mode 755; the image runs as NB_UID."""
    vm = next(finished.out.glob("vm-render-*"))
    workdir = vm / "tmp-workdir"
    assert (workdir.stat().st_uid, workdir.stat().st_mode & 0o777) == (0, 0o755)
    probe = subprocess.run(
        ["touch", str(workdir / "probe")], user=1000, group=100, capture_output=True, text=True
    )
    assert probe.returncode != 0 and "Permission denied" in probe.stderr
    log = "\n".join(p.read_text() for p in vm.glob("container-*.log"))
    assert "not installed at run time, the image has it: pip install --target" in log
    assert "not installed at run time: python3 -m pip install boto3" in log


def test_a_finished_run_leaves_only_its_logs_in_the_work_prefix(finished: BatchRun, gcs) -> None:
    """What book/chapters/google-batch.md tells users to clean up: the logs, and nothing else is
    left (the shipped sources, manifests and batch results are removed by Snakemake)."""
    left = [b.name for b in gcs.list_blobs(finished.bucket, prefix="snakemake-work/")]
    logs = [n for n in left if n.startswith("snakemake-work/results/thumbnail-job/logs/")]
    assert logs and logs == left


def test_each_new_file_costs_the_render_task_one_download_and_one_upload(
    finished: BatchRun, emulator
) -> None:
    """The chapter's cost section: per file, one Class B download and one Class A upload by the
    machines; the rest is per batch (sources, manifest, result, log, and their checks)."""
    mine = [
        c
        for c in emulator.calls.list()
        if c.who == "batch-job" and f"/b/{finished.bucket}/" in c.path
    ]
    downloads = [
        c for c in mine if c.method == "GET" and "alt=media" in c.path and "/o/raw%2F" in c.path
    ]
    uploads = [c for c in mine if c.method == "POST" and c.path.startswith("/upload/")]
    # one per preview, and a few per batch (its result, its log, its report record)
    assert len(PREVIEWABLE) < len(uploads) <= len(PREVIEWABLE) + 3
    downloaded = {c.path.split("/o/", 1)[1].split("?", 1)[0] for c in downloads}
    assert len(downloads) == len(downloaded) >= len(PREVIEWABLE)  # each source (and companion) once
    per_batch = len(mine) - len(downloads) - len(uploads)
    print(
        f"batch-job calls: {len(downloads)} downloads, {len(uploads)} uploads, "
        f"{per_batch} for the one batch"
    )
    assert per_batch <= 40


# -- the Job specs as submitted ---------------------------------------------------------------


def test_render_job_spec_runs_the_image_on_cos_with_the_profiles_resources(
    finished: BatchRun,
) -> None:
    image = registry.load()
    (received,) = finished.jobs()
    assert received["parent"] == f"projects/{PROJECT}/locations/{PROFILE['googlebatch-region']}"
    job = received["job"]
    (group,) = job["taskGroups"]
    task = group["taskSpec"]
    (instances,) = job["allocationPolicy"]["instances"]
    policy = instances["policy"]
    assert policy["bootDisk"]["image"] == (
        f"projects/{PROFILE['googlebatch-image-project']}/"
        f"global/images/family/batch-cos-stable-official"
    )
    assert policy["bootDisk"]["sizeGb"] == "0"  # nothing overrides the family's boot disk
    assert policy["machineType"] == PROFILE["googlebatch-machine-type"] == "e2-standard-2"
    # render is preemptible: the plugin asks for PREEMPTIBLE (3), the older kind of Spot VM
    assert policy["provisioningModel"] == 3
    assert task["computeResource"]["cpuMilli"] == str(PROFILE["googlebatch-cpu-milli"])
    assert task["computeResource"]["memoryMib"] == str(PROFILE["googlebatch-memory"])
    assert task["maxRetryCount"] == PROFILE["googlebatch-retry-count"]
    assert task["maxRunDuration"] == PROFILE["googlebatch-max-run-duration"]
    assert group["taskCount"] == group["taskCountPerNode"] == "1"
    assert job["labels"] == {"snakemake-job": "render", "app": "microscopy-notebook"}
    assert job["allocationPolicy"]["serviceAccount"]["email"] == ""  # the default one
    kinds = [
        next(k for k in ("script", "barrier", "container") if k in r) for r in task["runnables"]
    ]
    assert kinds == ["script", "script", "barrier", "container"]
    container = task["runnables"][-1]["container"]
    assert container["imageUri"] == image.uri() == PROFILE["googlebatch-container"]
    assert container["entrypoint"] == "/bin/bash"
    assert container["commands"] == ["/tmp/workdir/entrypoint.sh"]
    for runnable in task["runnables"]:
        text = json.dumps(runnable)
        assert not INSTALLS.search(text), INSTALLS.search(text)


def test_service_account_and_failing_task_fail_the_run_with_the_tasks_log(
    gcs, emulator, batch_env: dict, batch_python: str, task_python: str
) -> None:
    """A task whose service account may not read the work files (403 on every download of a
    manifest): Batch reports FAILED, the run fails, and the task's own log is what the user sees."""
    bucket = f"gb-{uuid.uuid4().hex[:12]}"
    samples.seed(bucket, "raw/", gcs)
    emulator.faults.add(
        lambda method, path: method == "GET" and "manifests" in path and "alt=media" in path,
        "status:403",
        times=1000,
    )
    account = f"thumbnails@{PROJECT}.iam.gserviceaccount.com"
    # The profile would resubmit the failing render three times (preemptible-retries), each
    # failing alike; one submission shows what the user sees. Retries: the preemption test.
    failed = batch_run(
        gcs,
        batch_env,
        batch_python,
        task_python,
        "--googlebatch-service-account",
        account,
        "--preemptible-retries",
        "0",
        bucket=bucket,
    )
    try:
        assert failed.run.returncode != 0
        jobs = failed.jobs()
        assert {j["job"]["allocationPolicy"]["serviceAccount"]["email"] for j in jobs} == {account}
        assert "has state FAILED" in failed.run.stderr
        logs = list((failed.checkout / ".snakemake" / "googlebatch_logs").rglob("*.log"))
        assert logs and "403" in logs[0].read_text()
        assert [b.name for b in gcs.list_blobs(bucket, prefix="previews/")] == []
    finally:
        emulator.faults.clear()
        shutil.rmtree(failed.out, ignore_errors=True)


def test_a_preempted_task_is_retried_and_the_run_completes(
    gcs, batch_env: dict, batch_python: str, task_python: str
) -> None:
    preempted = batch_run(
        gcs, batch_env, batch_python, task_python, standin={"MNB_BATCH_STANDIN_PREEMPT": "render"}
    )
    try:
        assert preempted.run.returncode == 0
        assert summary(preempted.run.stderr).startswith(ALL_DONE)
        # The retry is Batch's, in the same Job: its task log, which the plugin saves when the Job
        # ends, has the killed attempt. (The plugin's own event lines are no witness: 0.5.1 prints
        # an event only if the sub-second part of its time exceeds the last one's.)
        saved = "".join(
            p.read_text()
            for p in (preempted.checkout / ".snakemake" / "googlebatch_logs").rglob("*.log")
        )
        assert "attempt 0 exited with code 50001" in saved
        assert len(preempted.jobs()) == 1
        assert len(list(preempted.out.glob("vm-render-*"))) == 2  # the killed VM and its retry
        assert len(previews(gcs, preempted.bucket, "previews/")) == len(PREVIEWABLE)
    finally:
        shutil.rmtree(preempted.out, ignore_errors=True)


def test_ctrl_c_in_the_submitting_terminal_deletes_the_running_batch_job(
    gcs, batch_env: dict, batch_python: str, task_python: str
) -> None:
    """What the chapter says about stopping a run: one Ctrl-C (SIGINT to Snakemake, not to the
    machines) makes the plugin delete the Batch jobs it started.

    The render task holds (its precommand says so in its log, then sleeps until its VM goes), and
    Ctrl-C comes once Snakemake has asked Batch about the job: it is running and Snakemake knows
    it, however slow the machine."""
    holding = "render task running: waiting for Ctrl-C"
    hold = f"{PROFILE['precommand']} && echo '{holding}' && sleep 600"
    argv, env, out, checkout, bucket = batch_command(
        gcs, batch_env, batch_python, task_python, "--precommand", hold
    )

    def ready() -> bool:
        logs = out.glob("vm-*/container-*.log")
        permissions = out / "api-permissions.log"
        return any(holding in log.read_text() for log in logs) and (
            permissions.exists() and "batch.jobs.get" in permissions.read_text().split()
        )

    with (out / "snakemake.log").open("w") as log:
        proc = subprocess.Popen(argv, cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300  # only a guard against a hang, never the condition
            while not ready():
                assert time.monotonic() < deadline and proc.poll() is None, "no task running"
                time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = (out / "snakemake.log").read_text()
    print(text[-5000:])
    try:
        assert proc.returncode != 0
        assert "batch.jobs.delete" in (out / "api-permissions.log").read_text().split()
        _, people = roles_table.load()
        assert "batch.jobs.delete" in people[SUBMITTER].needs  # measured here, so listed
        assert re.search(r"Waiting for job projects/\S+/jobs/render-\S+ to cancel", text)
        # (previews the task wrote before it was stopped stay, as the chapter says)
    finally:
        shutil.rmtree(out, ignore_errors=True)


# -- one name for the image -----------------------------------------------------------------------


def test_the_image_name_is_written_once_and_every_reader_agrees() -> None:
    image = registry.load()
    cloudbuild = yaml.safe_load((ROOT / "image" / "cloudbuild.yaml").read_text())
    subs = cloudbuild["substitutions"]
    assert (subs["_REGION"], subs["_REPOSITORY"]) == (image.region, image.repository)
    pushed = f"${{_REGION}}-docker.pkg.dev/$PROJECT_ID/${{_REPOSITORY}}/{image.name}"
    assert f"{pushed}:{image.tag}" in cloudbuild["images"]
    from microscopy_notebook.image import build

    assert image.name == build.NAME
    assert all(tag.startswith(f"{image.name}:") for tag in build.tags())
    assert PROFILE["googlebatch-container"] == image.uri()
    assert PROFILE["googlebatch-region"] == image.region  # pulls stay inside the region
    first_job = yaml.safe_load(FIRST_JOB.read_text())
    assert first_job["googlebatch-container"] == image.uri()
    assert first_job["googlebatch-region"] == image.region
    # No VM-family path is left: every family but COS installs software on each VM.
    assert "batch-cos" in PROFILE["googlebatch-image-family"]
    assert "software-deployment-method" not in PROFILE
    assert not any(key.startswith("googlebatch-boot-disk") for key in PROFILE)


def test_the_first_jobs_profile_runs_its_task_as_this_profile_does() -> None:
    """The same image on the same system, made to work with the plugin by the same precommand,
    in the same region: what this module rehearses for the thumbnail job holds for the first job
    (whose own rehearsal, in tests/book/test_commands.py, runs one small task)."""
    first_job = yaml.safe_load(FIRST_JOB.read_text())
    shared = (
        "googlebatch-container",
        "googlebatch-image-family",
        "googlebatch-image-project",
        "precommand",
        "googlebatch-region",
    )
    assert {k: first_job[k] for k in shared} == {k: PROFILE[k] for k in shared}
    assert first_job["executor"] == PROFILE["executor"] == "googlebatch"
    assert "software-deployment-method" not in first_job  # it would install at run time


def test_what_a_task_runs_with_is_in_the_image_list_at_versions_it_allows(task_python: str) -> None:
    """The stand-in's tasks run with the batch-task group: each of its packages must be in
    image/packages.txt and installed here at a version the list allows, so a task on Batch gets
    what the tests ran (jsonschema comes with Snakemake, in the image as here)."""
    import tomllib

    from packaging.requirements import Requirement

    from microscopy_notebook.image import packages

    listed = {p.pypi.lower(): p for p in packages.load()}
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]

    def expand(name: str) -> list[str]:
        return [
            r
            for item in groups[name]
            for r in (expand(item["include-group"]) if isinstance(item, dict) else [item])
        ]

    group = expand("batch-task")
    names = [Requirement(r).name.lower() for r in group]
    script = (
        "import importlib.metadata as m, json, sys; "
        "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    )
    versions = json.loads(
        subprocess.run(
            [task_python, "-c", script, *names, "snakemake"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert "jsonschema" in [Requirement(r).name for r in _requires(task_python, "snakemake")]
    for name in names:
        if name == "jsonschema":
            continue
        assert name in listed, f"{name} runs in Batch tasks but is not in image/packages.txt"
        assert listed[name].specifier.contains(versions[name], prereleases=True), (
            f"{name} {versions[name]} is outside the image list's {listed[name].spec}"
        )


def _requires(python: str, dist: str) -> list[str]:
    script = f"import importlib.metadata as m, json; print(json.dumps(m.requires({dist!r})))"
    return json.loads(
        subprocess.run([python, "-c", script], capture_output=True, text=True, check=True).stdout
    )


# -- roles from measurement (last: every run of this module has been recorded) --------------------


def test_recorded_calls_are_the_permissions_iam_yaml_lists_and_its_roles_grant(
    emulator, finished: BatchRun
) -> None:
    from microscopy_notebook.cloud import permissions

    roles, people = roles_table.load()
    calls = emulator.calls.list()
    api = set((finished.out / "api-permissions.log").read_text().split())
    recorded = {
        SUBMITTER: permissions.recorded(calls, SUBMITTER) | api,
        "batch-job": permissions.recorded(calls, "batch-job"),
    }
    print(json.dumps({k: sorted(v) for k, v in recorded.items()}, indent=1))
    for name, seen in recorded.items():
        measured = {p for p, why in people[name].needs.items() if why == "measured"}
        # batch.jobs.delete is measured by the Ctrl-C test, which a successful run never needs
        assert seen == measured - {"batch.jobs.delete"}, (
            f"{name}: recorded {sorted(seen)}, iam.yaml {sorted(measured)}"
        )
        assert roles_table.ungranted(roles, people[name]) == []
    # The check can fail: without Storage Bucket Viewer, bucket.exists() of the storage plugin
    # (storage.buckets.get) is granted by nothing, which is what the old table said.
    person = people["batch-job"]
    without = roles_table.Person(
        person.name,
        person.title,
        [r for r in person.roles if r != "roles/storage.bucketViewer"],
        person.needs,
    )
    assert roles_table.ungranted(roles, without) == ["storage.buckets.get"]
