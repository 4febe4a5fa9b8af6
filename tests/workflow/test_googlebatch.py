"""The thumbnail job on Google Batch, rehearsed: the real profile, executor plugin and Snakefile,
started as the page says (``python workflow/googlebatch.py``), storage in the emulator, and only
Batch and Logging answered by the stand-in (batch_service.py), with everyone's iam.yaml grants in
force: the submitter's, the render jobs' service account's, the coordinator's.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from microscopy_notebook.cloud import iam
from microscopy_notebook.image import registry
from microscopy_notebook.paths import ROOT
from tests.workflow.batchrun import (
    ALL_DONE,
    INSTALLS,
    JOBS,
    PREVIEWABLE,
    PROJECT,
    SUBMITTER,
    BatchRun,
    Buckets,
    batch_service,
    buckets,
    checkout,
    launcher,
    needs,
    plain_snakemake,
    previews,
    run,
    saved_logs,
    submitter_env,
)
from tests.workflow.jobrun import GOOGLEBATCH, LOCAL, snakemake, summary

PROFILE = yaml.safe_load((GOOGLEBATCH / "config.yaml").read_text())
# The first job's Batch profile (book/chapters/first-job.md), which runs its task as this one does.
FIRST_JOB = ROOT / "book" / "examples" / "first-job" / "googlebatch" / "config.yaml"
MAINTAINERS = ROOT / "book" / "chapters" / "maintainers-setup.md"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(
    emulator, batch_python: str, task_python: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[BatchRun, Buckets]]:
    """One successful run for the module's checks (a run takes half a minute)."""
    folder = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in emulator.env.items():
            patch.setenv(key, value)
        from google.cloud import storage

        where = buckets(storage.Client())
        root = checkout(folder)
        with batch_service(emulator, task_python, where.where()) as service:
            env = submitter_env(service, emulator.apply(), folder)
            proc = run(launcher(service, root, where, batch_python), root, env)
        yield BatchRun(proc, service, root, where.out, where.raw), where
    shutil.rmtree(service.out, ignore_errors=True)


# -- end to end -----------------------------------------------------------------------------------


def test_batch_run_lands_every_preview_byte_for_byte_as_the_local_run(
    finished, gcs, storage_env: dict, tmp_path: Path
) -> None:
    done, where = finished
    assert done.run.returncode == 0
    assert summary(done.run.stderr).startswith(ALL_DONE)
    on_batch = previews(gcs, where.out, "previews/")
    assert sorted(on_batch) == sorted(f"{name}.png" for name in PREVIEWABLE)
    # The same files, run here with the local profile into another prefix of the output bucket.
    local = snakemake(
        tmp_path,
        "--profile",
        str(LOCAL),
        *where.config("local"),
        env=storage_env,
    )
    assert local.returncode == 0, local.stderr[-3000:]
    assert previews(gcs, where.out, "local/") == on_batch
    # Every task ran in the image's user's Python with nothing installed at run time.
    assert done.installs() == ""
    rendered = [j for j in done.jobs() if j["job"]["labels"]["snakemake-job"] == "render"]
    assert len(rendered) == len(done.jobs()) == 1  # plan and report are local rules


def test_the_plugins_workdir_is_not_writable_by_the_images_user(finished) -> None:
    """Why the profile's precommand moves the task to a folder of its own: the plugin's set-up
    runnables (as root) leave /tmp/workdir owned by root, mode 755; the image runs as NB_UID."""
    done, _ = finished
    vm = next(done.out.glob("vm-render-*"))
    workdir = vm / "tmp" / "workdir"
    assert (workdir.stat().st_uid, workdir.stat().st_mode & 0o777) == (0, 0o755)
    probe = subprocess.run(
        ["touch", str(workdir / "probe")], user=1000, group=100, capture_output=True, text=True
    )
    assert probe.returncode != 0 and "Permission denied" in probe.stderr
    log = "\n".join(p.read_text() for p in vm.glob("container-*.log"))
    assert "not installed at run time, the image has it: pip install --target" in log
    assert "not installed at run time: python3 -m pip install boto3" in log


def test_a_run_keeps_its_work_files_under_a_prefix_of_its_own_and_leaves_only_its_logs(
    finished, gcs
) -> None:
    """What book/chapters/google-batch.md tells users to clean up: one folder per run, in which
    only the logs are left (the shipped sources, manifests and batch results are removed)."""
    done, where = finished
    (said,) = re.findall(r"this run's work files: (gs://\S+)/", done.run.stderr)
    prefix = said.removeprefix(f"gs://{where.out}/")
    assert re.fullmatch(r"snakemake-work/runs/\d{8}-\d{6}-[0-9a-f]{4}", prefix)
    left = [b.name for b in gcs.list_blobs(where.out, prefix="snakemake-work/")]
    logs = [n for n in left if n.startswith(f"{prefix}/results/thumbnail-job/logs/")]
    assert logs and logs == left


def test_each_new_file_costs_the_render_task_one_download_and_one_upload(
    finished, emulator
) -> None:
    """The chapter's cost section: per file, one Class B download and one Class A upload by the
    machines; the rest is per batch (sources, manifest, result, log, and their checks)."""
    _, where = finished
    mine = [c for c in emulator.calls.list() if c.who == JOBS and not c.refused]
    downloads = [c for c in mine if c.resource == f"buckets/{where.raw}" and "alt=media" in c.path]
    uploads = [
        c
        for c in mine
        if c.resource == f"buckets/{where.out}"
        and c.method == "POST"
        and c.path.startswith("/upload/")
    ]
    # one per preview, and a few per batch (its result, its log, its report record)
    assert len(PREVIEWABLE) < len(uploads) <= len(PREVIEWABLE) + 3
    downloaded = {c.path.split("/o/", 1)[1].split("?", 1)[0] for c in downloads}
    assert len(downloads) == len(downloaded) >= len(PREVIEWABLE)  # each source (and companion) once
    ours = [c for c in mine if c.resource in (f"buckets/{where.raw}", f"buckets/{where.out}")]
    per_batch = len(ours) - len(downloads) - len(uploads)
    print(f"{JOBS} calls: {len(downloads)} downloads, {len(uploads)} uploads, {per_batch} other")
    assert per_batch <= 40


# -- the Job specs as submitted ---------------------------------------------------------------


def test_render_job_spec_runs_the_pinned_image_on_cos_as_the_jobs_account(finished) -> None:
    done, _ = finished
    (received,) = done.jobs()
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
    assert policy["machineType"] == PROFILE["googlebatch-machine-type"]
    # render is preemptible: the plugin asks for PREEMPTIBLE (3), the older kind of Spot VM
    assert policy["provisioningModel"] == 3
    assert task["computeResource"]["cpuMilli"] == str(PROFILE["googlebatch-cpu-milli"])
    assert task["computeResource"]["memoryMib"] == str(PROFILE["googlebatch-memory"])
    assert task["maxRetryCount"] == PROFILE["googlebatch-retry-count"]
    assert task["maxRunDuration"] == PROFILE["googlebatch-max-run-duration"]
    assert group["taskCount"] == group["taskCountPerNode"] == "1"
    assert job["labels"] == {"snakemake-job": "render", "app": "microscopy-notebook"}
    account = iam.load().email("jobs-account")
    assert job["allocationPolicy"]["serviceAccount"]["email"] == account
    kinds = [
        next(k for k in ("script", "barrier", "container") if k in r) for r in task["runnables"]
    ]
    assert kinds == ["script", "script", "barrier", "container"]
    container = task["runnables"][-1]["container"]
    assert container["imageUri"] == registry.load().uri() == PROFILE["googlebatch-container"]
    assert container["entrypoint"] == "/bin/bash"
    assert container["commands"] == ["/tmp/workdir/entrypoint.sh"]
    for runnable in task["runnables"]:
        text = json.dumps(runnable)
        assert not INSTALLS.search(text), INSTALLS.search(text)


# -- the jobs' own service account, enforced -----------------------------------------------------


def test_a_job_that_names_no_service_account_never_runs(
    gcs, emulator, storage_env: dict, batch_python: str, task_python: str, tmp_path: Path
) -> None:
    """A profile without googlebatch-service-account: the launcher refuses before anything
    starts, and plain Snakemake fails at the submission with Batch's words (the submitter may act
    as the jobs' account only). Where the submitter may act as the Compute Engine default account
    (the old guide granted Service Account User project-wide), the job is accepted and never
    runs: that account has no roles, its VMs cannot report."""
    where = buckets(gcs)
    root = checkout(tmp_path)
    profile = root / "workflow" / "profiles" / "googlebatch" / "config.yaml"
    profile.write_text(
        "\n".join(
            line
            for line in profile.read_text().splitlines()
            if not line.startswith("googlebatch-service-account:")
        )
    )
    model = iam.load()
    submitter = model.people[SUBMITTER]
    default = "123456789012-compute@developer.gserviceaccount.com"
    wide = iam.Person(  # Service Account User on the project, as the old guide had it
        submitter.name,
        submitter.title,
        (*submitter.grants, iam.Grant("project", "roles/iam.serviceAccountUser")),
        submitter.needs,
    )
    with batch_service(emulator, task_python, where.where()) as service:
        env = submitter_env(service, storage_env, tmp_path)
        refused = run(launcher(service, root, where, batch_python), root, env)
        plain = run(plain_snakemake(root, where, batch_python), root, env)
    with batch_service(emulator, task_python, where.where(), {SUBMITTER: wide}) as stuck:
        accepted = run(
            plain_snakemake(root, where, batch_python, "--preemptible-retries", "0"),
            root,
            submitter_env(stuck, storage_env, tmp_path),
        )
    assert refused.returncode == 2
    assert "must run as the jobs' own service account" in refused.stderr
    assert "running:" not in refused.stderr
    assert plain.returncode != 0
    assert (
        f'caller does not have access to act as the specified service account: "{default}"'
        in plain.stderr
    )
    assert accepted.returncode != 0
    (job,) = stuck.jobs()
    assert job["job"]["allocationPolicy"]["serviceAccount"].get("email", "") == ""
    (why,) = stuck.problems
    assert f"run as {default}, which may not report to Batch" in why
    assert "stays SCHEDULED" in why
    assert [b.name for b in gcs.list_blobs(where.out, prefix="previews/")] == []


def test_a_jobs_account_missing_a_role_fails_the_run_with_googles_message(
    gcs, emulator, storage_env: dict, batch_python: str, task_python: str, tmp_path: Path
) -> None:
    """The jobs' account without Storage Object User on the output bucket: Cloud Storage refuses
    its first read of a work file there, the task fails, Batch reports FAILED, and the job's log,
    which the plugin saves and Snakemake names, says who lacks which permission.

    And how often a batch that always fails is tried: Batch retries its task in the same Job
    (`googlebatch-retry-count`), and Snakemake submits a new Job `preemptible-retries` times (one
    here, three in the profile: the Batch chapter's eight tries of a failing batch)."""
    where = buckets(gcs)
    root = checkout(tmp_path)
    short = iam.load().people[JOBS].without("roles/storage.objectUser", "output")
    with batch_service(emulator, task_python, where.where(), {JOBS: short}) as service:
        failed = run(
            launcher(service, root, where, batch_python, "--preemptible-retries", "1"),
            root,
            submitter_env(service, storage_env, tmp_path),
        )
    account = iam.load().email("jobs-account")
    assert failed.returncode != 0
    jobs = service.jobs()
    assert len(jobs) == 2  # the first Job, and Snakemake's one new submission
    tries = 1 + PROFILE["googlebatch-retry-count"]
    assert {j["job"]["taskGroups"][0]["taskSpec"]["maxRetryCount"] for j in jobs} == {tries - 1}
    assert len(list(service.out.glob("vm-render-*"))) == 2 * tries  # every try a machine
    assert "has state FAILED" in failed.stderr
    assert re.search(r"\.snakemake/googlebatch_logs/render/\S+\.log", failed.stderr)
    assert (
        f"{account} does not have storage.objects.get access to the Google Cloud Storage object"
        in saved_logs(root)
    )
    assert [b.name for b in gcs.list_blobs(where.out, prefix="previews/")] == []


def test_a_preempted_task_is_retried_and_the_run_completes(
    gcs, emulator, storage_env: dict, batch_python: str, task_python: str, tmp_path: Path
) -> None:
    where = buckets(gcs)
    root = checkout(tmp_path)
    with batch_service(emulator, task_python, where.where(), preempt="render") as service:
        proc = run(
            launcher(service, root, where, batch_python),
            root,
            submitter_env(service, storage_env, tmp_path),
        )
    assert proc.returncode == 0
    assert summary(proc.stderr).startswith(ALL_DONE)
    # The retry is Batch's, in the same Job: its task log, which the plugin saves when the Job
    # ends, has the killed attempt. (The plugin's own event lines are no witness: 0.5.1 prints
    # an event only if the sub-second part of its time exceeds the last one's.)
    assert "attempt 0 exited with code 50001" in saved_logs(root)
    assert len(service.jobs()) == 1
    assert len(list(service.out.glob("vm-render-*"))) == 2  # the killed VM and its retry
    assert len(previews(gcs, where.out, "previews/")) == len(PREVIEWABLE)


def test_ctrl_c_in_the_submitting_terminal_deletes_the_running_batch_job(
    gcs, emulator, storage_env: dict, batch_python: str, task_python: str, tmp_path: Path
) -> None:
    """What the chapter says about stopping a run: one Ctrl-C (SIGINT to Snakemake, not to the
    machines) makes the plugin delete the Batch jobs it started.

    The render task holds (its precommand says so in its log, then sleeps until its VM goes), and
    Ctrl-C comes once Snakemake has asked Batch about the job: it is running and Snakemake knows
    it, however slow the machine."""
    holding = "render task running: waiting for Ctrl-C"
    hold = f"{PROFILE['precommand']} && echo '{holding}' && sleep 600"
    where = buckets(gcs)
    root = checkout(tmp_path)
    with batch_service(emulator, task_python, where.where()) as service:

        def ready() -> bool:
            logs = service.out.glob("vm-*/container-*.log")
            asked = ("batch.jobs.get", f"projects/{PROJECT}") in service.needs(SUBMITTER)
            return asked and any(holding in log.read_text() for log in logs)

        env = submitter_env(service, storage_env, tmp_path)
        with (tmp_path / "snakemake.log").open("w") as log:
            proc = subprocess.Popen(
                launcher(service, root, where, batch_python, "--precommand", hold),
                cwd=root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                deadline = (
                    time.monotonic() + 300
                )  # only a guard against a hang, never the condition
                while not ready():
                    assert time.monotonic() < deadline and proc.poll() is None, "no task running"
                    time.sleep(0.2)
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=120)
            finally:
                if proc.poll() is None:
                    proc.kill()
    text = (tmp_path / "snakemake.log").read_text()
    print(text[-5000:])
    assert proc.returncode != 0
    assert ("batch.jobs.delete", f"projects/{PROJECT}") in service.needs(SUBMITTER)
    assert ("project", "batch.jobs.delete") in iam.load().people[SUBMITTER].measured()
    assert re.search(r"Waiting for job projects/\S+/jobs/render-\S+ to cancel", text)
    # (previews the task wrote before it was stopped stay, as the chapter says)


# -- one pinned image, one account, written once ------------------------------------------------


def _hub_settings() -> dict:
    """The hub's image settings (image/hub.yaml), which chapters/maintainers-setup.md shows."""
    assert "```{literalinclude} ../../image/hub.yaml" in MAINTAINERS.read_text()
    return yaml.safe_load((ROOT / "image" / "hub.yaml").read_text())["singleuser"]["image"]


def test_the_image_and_the_jobs_account_are_written_once_and_every_reader_agrees() -> None:
    image = registry.load()
    cloudbuild = yaml.safe_load((ROOT / "image" / "cloudbuild.yaml").read_text())
    subs = cloudbuild["substitutions"]
    assert (subs["_REGION"], subs["_REPOSITORY"]) == (image.region, image.repository)
    pushed = f"${{_REGION}}-docker.pkg.dev/$PROJECT_ID/${{_REPOSITORY}}/{image.name}"
    assert cloudbuild["images"] == [f"{pushed}:$SHORT_SHA"]  # the commit: a tag never moved
    from microscopy_notebook.image import build

    assert image.name == build.NAME
    first_job = yaml.safe_load(FIRST_JOB.read_text())
    hub = _hub_settings()
    assert (
        PROFILE["googlebatch-container"]
        == first_job["googlebatch-container"]
        == f"{hub['name']}:{hub['tag']}"
        == image.uri()
    )
    assert image.tag not in ("latest", "") and not re.fullmatch(r"\d{4}-\d\d-\d\d", image.tag)
    assert PROFILE["googlebatch-region"] == first_job["googlebatch-region"] == image.region
    account = iam.load().email("jobs-account")
    assert PROFILE["googlebatch-service-account"] == account
    assert first_job["googlebatch-service-account"] == account
    # No VM-family path is left: every family but COS installs software on each VM.
    assert "batch-cos" in PROFILE["googlebatch-image-family"]
    assert "software-deployment-method" not in PROFILE
    assert not any(key.startswith("googlebatch-boot-disk") for key in PROFILE)


def test_the_first_jobs_profile_runs_its_task_as_this_profile_does() -> None:
    """The same image on the same system, made to work with the plugin by the same precommand,
    in the same region, as the same account: what this module rehearses for the thumbnail job
    holds for the first job (whose own rehearsal, in tests/book/test_commands.py, runs one small
    task)."""
    first_job = yaml.safe_load(FIRST_JOB.read_text())
    shared = (
        "googlebatch-container",
        "googlebatch-image-family",
        "googlebatch-image-project",
        "googlebatch-service-account",
        "precommand",
        "googlebatch-region",
    )
    assert {k: first_job[k] for k in shared} == {k: PROFILE[k] for k in shared}
    assert first_job["executor"] == PROFILE["executor"] == "googlebatch"
    assert "software-deployment-method" not in first_job  # it would install at run time


def test_what_a_task_runs_with_is_in_the_image_list_at_versions_it_allows(task_python: str) -> None:
    """The stand-in's tasks run with the image's lines for what a task runs (nox installs them into
    their venv): each must be installed there at a version the list allows, so a task on Batch
    gets what the tests ran (jsonschema comes with Snakemake, in the image as here)."""
    from packaging.requirements import Requirement

    from microscopy_notebook.image import job_env, packages

    listed = {p.pypi.lower(): p for p in packages.load() if p.name in job_env.TASK_PACKAGES}
    names = list(listed)
    script = (
        "import importlib.metadata as m, json, sys; "
        "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    )
    versions = json.loads(
        subprocess.run(
            [task_python, "-c", script, *names],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert "jsonschema" in [Requirement(r).name for r in _requires(task_python, "snakemake")]
    for name in names:
        assert listed[name].specifier.contains(versions[name], prereleases=True), (
            f"{name} {versions[name]} is outside the image list's {listed[name].spec}"
        )


def _requires(python: str, dist: str) -> list[str]:
    script = f"import importlib.metadata as m, json; print(json.dumps(m.requires({dist!r})))"
    return json.loads(
        subprocess.run([python, "-c", script], capture_output=True, text=True, check=True).stdout
    )


# -- roles from measurement ---------------------------------------------------------------------


def test_what_each_identity_did_is_what_iam_yaml_measured_and_grants(finished, emulator) -> None:
    """Every call of the run, as the submitter and as the jobs' account, on each resource, with
    exactly iam.yaml's grants in force: the same needs iam.yaml lists as measured (whatever is
    only used by other rehearsals, named here), all granted, no grant wider than it says."""
    done, where = finished
    model = iam.load()
    elsewhere = {  # measured by the other rehearsals
        SUBMITTER: {
            ("project", "batch.jobs.delete"),  # Ctrl-C
            ("coordinator-account", "iam.serviceAccounts.actAs"),  # a run left to Batch
            ("raw-data", "storage.buckets.get"),  # the first job: Snakemake's storage inputs
            ("raw-data", "storage.objects.get"),  # (it asks for the input file)
        },
        # the first job's, on its machine: Snakemake's checks of its storage input
        JOBS: {("raw-data", "storage.buckets.get"), ("raw-data", "storage.objects.list")},
    }
    for who in (SUBMITTER, JOBS):
        seen = needs(done.service, emulator, who, where.where())
        measured = model.people[who].measured()
        print(who, sorted(seen))
        assert seen <= measured, f"{who}: not in iam.yaml: {sorted(seen - measured)}"
        missing = measured - seen - elsewhere[who]
        assert not missing, f"{who}: iam.yaml lists what this run never did: {sorted(missing)}"
        assert iam.problems(model, model.people[who]) == []
