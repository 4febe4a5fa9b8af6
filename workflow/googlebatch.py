"""Run the thumbnail job on Google Batch, after the checks whose failure Snakemake would report as a
Python traceback.

    python workflow/googlebatch.py [--project PROJECT_ID] [--detach] --config input=gs://... output=gs://...
    python workflow/googlebatch.py watch JOB_ID [--project PROJECT_ID]

It is ``snakemake --snakefile workflow/Snakefile --profile workflow/profiles/googlebatch
--googlebatch-project ID --storage-gcs-project ID``, run from the repository root, with every
other argument passed on to Snakemake (``-n`` for a dry run, ``--config ...``). First it checks
what the Google Batch path needs before Snakemake starts: the executor plugin, a project ID, the
jobs' own service account and Google credentials. Without credentials Snakemake's Cloud Storage
plugin stops while Snakemake starts, with a traceback and before the workflow can say anything;
here it is one paragraph that says what to do. Start it with the Python of the environment that
holds Snakemake and ``snakemake-executor-plugin-googlebatch``.

Each run gets work files of its own: ``runs/<run id>/`` below the profile's
``default-storage-prefix`` (or below the one given). Snakemake names its copy of the workflow's
sources by their content, so two runs from one checkout would otherwise share it, and the first to
end would delete it while the other's batches still need it.

``--detach`` leaves the whole run to Google Batch: the coordinating Snakemake itself runs as a
small Batch job (standard VM, the environment's image, its own service account), which submits
the render jobs as this process would; nothing is left running here, and the hub may cull the
server. It prints the job's name and the command that watches it: ``watch`` prints the job's
state and its log (Cloud Logging) as they come, until it ends.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # Snakemake ships the workflow relative to it
PROFILE = ROOT / "workflow" / "profiles" / "googlebatch" / "config.yaml"
# The coordinator of a detached run: a small standard VM (never preempted: it is the run), as
# its own service account, which may submit render jobs as the jobs' account (iam.yaml's
# `coordinator`; chapters/maintainers-setup.md makes it).
COORDINATOR_ACCOUNT = "batch-coordinator@{project}.iam.gserviceaccount.com"
COORDINATOR_MACHINE = "e2-medium"  # 2 shared vCPUs, 4 GB: planning holds the listings in memory
# A project ID as Google Cloud spells it: 6-30 lower-case letters, digits and hyphens, starting
# with a letter (the project's name, or its number, will not do).
PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
SIGN_IN = "gcloud auth application-default login --no-launch-browser"


class Refusal(Exception):
    """What the user must fix, in one paragraph."""


def find_project(given: str | None) -> str:
    """--project, else the environment's project, else gcloud's; refused if none or malformed."""
    project, source = given, "--project"
    for var in ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"):
        if project is None and os.environ.get(var):
            project, source = os.environ[var], var
    if project is None and shutil.which("gcloud"):
        try:
            found = subprocess.run(
                ["gcloud", "config", "get-value", "project"],
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            found = ""
        if found:
            project, source = found, "gcloud config"
    if not project:
        raise Refusal(
            "The thumbnail job needs the ID of the Google Cloud project to run the Batch jobs in, "
            "and none is set. Give it with `--project PROJECT_ID`, or set it once with `gcloud "
            "config set project PROJECT_ID` (`gcloud projects list` shows the IDs you can use)."
        )
    if not PROJECT_ID.match(project):
        raise Refusal(
            f"The thumbnail job cannot use {project!r} (from {source}) as a Google Cloud project: "
            "a project ID is 6 to 30 lower-case letters, digits and hyphens, starting with a "
            "letter, such as `nexuslims-example`; the project's display name or number will not "
            "do. `gcloud projects list` shows the IDs you can use; give one with `--project`."
        )
    return project


def check_credentials() -> None:
    """Application Default Credentials must exist and be usable: the Batch API and Cloud Storage
    both need them, and Snakemake's storage plugin reads them first of all."""
    import google.auth
    from google.auth import exceptions

    explicit = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if explicit and not Path(explicit).is_file():
        raise Refusal(
            f"The thumbnail job found no Google credentials: GOOGLE_APPLICATION_CREDENTIALS points "
            f"at {explicit}, which does not exist. Point it at the key file you meant, or unset it "
            f"(`unset GOOGLE_APPLICATION_CREDENTIALS`) and sign in with `{SIGN_IN}`, then run the "
            f"job again."
        )
    try:
        credentials, _ = google.auth.default()
    except exceptions.DefaultCredentialsError as exc:
        raise Refusal(
            f"The thumbnail job found no Google credentials for Google Batch and Cloud Storage. "
            f"In your JupyterLab terminal run `{SIGN_IN}`, then run the job again "
            f"(details: {' '.join(str(exc).split())})."
        ) from None
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return  # storage is an emulator (tests): the credentials are not checked against Google
    from google.auth.transport.requests import Request

    try:
        credentials.refresh(Request())
    except exceptions.RefreshError as exc:
        raise Refusal(
            f"The thumbnail job's Google credentials were refused ({' '.join(str(exc).split())}). "
            f"Your sign-in has probably expired: run `{SIGN_IN}` again, then run the job again."
        ) from None
    except exceptions.TransportError as exc:
        raise Refusal(
            f"The thumbnail job could not reach Google to check your sign-in "
            f"({' '.join(str(exc).split())}). Check the network connection, then try again."
        ) from None


def profile() -> dict:
    import yaml

    return yaml.safe_load(PROFILE.read_text())


def take_option(rest: list[str], name: str) -> str | None:
    """Remove ``name VALUE`` (or ``name=VALUE``) from Snakemake's arguments; return VALUE."""
    for i, arg in enumerate(rest):
        if arg == name and i + 1 < len(rest):
            value = rest[i + 1]
            del rest[i : i + 2]
            return value
        if arg.startswith(name + "="):
            del rest[i]
            return arg.split("=", 1)[1]
    return None


def option(rest: list[str], name: str) -> str | None:
    """The value of ``name`` among Snakemake's arguments, left in place."""
    copy = list(rest)
    return take_option(copy, name)


def check_service_account(rest: list[str], settings: dict) -> str:
    """The jobs must run as their own service account: refused if neither the profile nor the
    command names one."""
    account = option(rest, "--googlebatch-service-account") or settings.get(
        "googlebatch-service-account"
    )
    if not account:
        raise Refusal(
            f"The thumbnail job's Batch jobs must run as the jobs' own service account, and "
            f"neither {PROFILE.relative_to(ROOT)} nor the command names one "
            f"(googlebatch-service-account). Without it Batch runs them as the project's Compute "
            f"Engine default service account, which this guide grants nothing: where that "
            f"account has no roles, the jobs stay SCHEDULED and never run. Set "
            f"googlebatch-service-account in the profile to the account your admin made "
            f"(batch-jobs@PROJECT_ID.iam.gserviceaccount.com), or add "
            f"--googlebatch-service-account EMAIL to the command."
        )
    return account


def run_id() -> str:
    """A name of this run's own: its start (UTC) and a random part."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


def work_prefix(rest: list[str], settings: dict, run: str) -> str:
    """The run's own work prefix below the one given (or the profile's); removes it from rest."""
    base = take_option(rest, "--default-storage-prefix") or settings["default-storage-prefix"]
    return f"{base.rstrip('/')}/runs/{run}"


def snakemake_command(project: str, rest: list[str], prefix: str | None = None) -> list[str]:
    return [
        sys.executable,
        "-m",
        *snakemake_arguments(project, rest, prefix),
    ]


def snakemake_arguments(project: str, rest: list[str], prefix: str | None = None) -> list[str]:
    return [
        "snakemake",
        "--snakefile",
        "workflow/Snakefile",
        "--profile",
        "workflow/profiles/googlebatch",
        "--googlebatch-project",
        project,
        "--storage-gcs-project",
        project,
        *rest,
        *(["--default-storage-prefix", prefix] if prefix else []),
    ]


# -- a run left to Google Batch ---------------------------------------------------------------

# What the coordinator's container runs (python3 -c): fetch this checkout's workflow/ from the
# run's work prefix, run Snakemake on it, keep Snakemake's log beside it, exit with its status.
COORDINATOR_SCRIPT = """\
import io, pathlib, subprocess, sys, tarfile
from google.cloud import storage
project, archive, log, *command = sys.argv[1:]
client = storage.Client(project=project)
def blob(url):
    bucket, _, name = url.removeprefix("gs://").partition("/")
    return client.bucket(bucket).blob(name)
run = pathlib.Path("/tmp/run")
run.mkdir(parents=True, exist_ok=True)
safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python 3.11.4 and later
tarfile.open(fileobj=io.BytesIO(blob(archive).download_as_bytes())).extractall(run, **safe)
# Snakemake ships the git-tracked files to the render machines (the image's base has git).
subprocess.run(["git", "init", "-q"], cwd=run, check=True)
subprocess.run(["git", "add", "-A"], cwd=run, check=True)
print("coordinator: running", " ".join(command), flush=True)
code = subprocess.call([sys.executable, "-m", *command], cwd=run)
logs = sorted((run / ".snakemake" / "log").glob("*.snakemake.log"))
if logs:
    blob(log).upload_from_filename(logs[-1], if_generation_match=0)
print(f"coordinator: Snakemake exited with {code}; its log: {log}", flush=True)
sys.exit(code)
"""


def workflow_archive() -> bytes:
    """workflow/ as Snakemake would ship it from here: its git-tracked files, or every file."""
    try:
        names = subprocess.run(
            ["git", "ls-files", "workflow"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        names = []
    if not names:
        names = [
            str(p.relative_to(ROOT))
            for p in sorted((ROOT / "workflow").rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts
        ]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name in names:
            tar.add(ROOT / name, arcname=name)
    return out.getvalue()


def coordinator_job(project: str, settings: dict, account: str, command: list[str], urls):
    from google.cloud import batch_v1

    archive, log = urls
    container = batch_v1.Runnable.Container(
        image_uri=settings["googlebatch-container"],
        entrypoint="python3",
        commands=["-c", COORDINATOR_SCRIPT, project, archive, log, *command],
    )
    task = batch_v1.TaskSpec(
        runnables=[batch_v1.Runnable(container=container)],
        compute_resource=batch_v1.ComputeResource(cpu_milli=1000, memory_mib=3000),
        max_retry_count=0,  # a rerun is safe, but a failure should be seen, not hidden
    )
    group = batch_v1.TaskGroup(task_count=1, task_spec=task)
    policy = batch_v1.AllocationPolicy.InstancePolicy(
        machine_type=COORDINATOR_MACHINE,
        provisioning_model=batch_v1.AllocationPolicy.ProvisioningModel.STANDARD,
        boot_disk=batch_v1.AllocationPolicy.Disk(
            image=f"projects/{settings['googlebatch-image-project']}/global/images/family/"
            f"{settings['googlebatch-image-family']}"
        ),
    )
    allocation = batch_v1.AllocationPolicy(
        instances=[batch_v1.AllocationPolicy.InstancePolicyOrTemplate(policy=policy)],
        service_account=batch_v1.ServiceAccount(email=account),
    )
    labels = dict(item.split("=", 1) for item in settings["googlebatch-labels"].split(","))
    return batch_v1.Job(
        task_groups=[group],
        allocation_policy=allocation,
        labels={**labels, "role": "coordinator"},
        logs_policy=batch_v1.LogsPolicy(destination=batch_v1.LogsPolicy.Destination.CLOUD_LOGGING),
    )


def detach(project: str, rest: list[str], settings: dict, account: str) -> int:
    """Submit the run as a coordinator job of its own, print how to watch it, and return."""
    from google.cloud import batch_v1, storage

    run = run_id()
    prefix = work_prefix(rest, settings, run)
    archive, log = f"{prefix}/coordinator/workflow.tar.gz", f"{prefix}/coordinator/snakemake.log"
    bucket, _, name = archive.removeprefix("gs://").partition("/")
    blob = storage.Client(project=project).bucket(bucket).blob(name)
    blob.upload_from_string(workflow_archive(), if_generation_match=0)
    command = snakemake_arguments(project, rest, prefix)
    job = coordinator_job(project, settings, account, command, (archive, log))
    region = settings["googlebatch-region"]
    created = batch_v1.BatchServiceClient().create_job(
        parent=f"projects/{project}/locations/{region}", job=job, job_id=f"thumbnails-{run}"
    )
    me = "workflow/googlebatch.py"  # from the repository root, as it was started
    print(
        f"submitted {created.name}\n"
        f"  the run is left to Google Batch: you may close this terminal and the hub.\n"
        f"  its work files: {prefix}/\n"
        f"  watch it:  python {me} watch thumbnails-{run} --project {project}\n"
        f"  its log:   gcloud logging read 'labels.job_uid={created.uid}' --freshness=7d "
        f"--project={project}\n"
        f"  stop it:   gcloud batch jobs delete thumbnails-{run} --location={region} "
        f"--project={project}",
        flush=True,
    )
    return 0


def watch(argv: list[str]) -> int:
    """Print a job's state and new log lines until it ends; exit 0 if it succeeded."""
    parser = argparse.ArgumentParser(prog="googlebatch.py watch", description=watch.__doc__)
    parser.add_argument("job", help="the job's ID (thumbnails-...) or its full name")
    parser.add_argument("--project", help="Google Cloud project ID (default: gcloud's)")
    parser.add_argument("--region", default=None, help="the jobs' region (default: the profile's)")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between looks")
    args = parser.parse_args(argv)
    try:
        project = find_project(args.project)
        check_credentials()
    except Refusal as refusal:
        print(refusal, file=sys.stderr)
        return 2
    from google.cloud import batch_v1, logging

    region = args.region or profile()["googlebatch-region"]
    name = (
        args.job
        if args.job.startswith("projects/")
        else f"projects/{project}/locations/{region}/jobs/{args.job}"
    )
    batch = batch_v1.BatchServiceClient()
    logs = logging.Client(project=project).logger("batch_task_logs")
    printed, state = 0, None
    while True:
        job = batch.get_job(name=name)
        if job.status.state.name != state:
            state = job.status.state.name
            print(f"{time.strftime('%H:%M:%S')} {args.job}: {state}", flush=True)
        # Its whole log each look, 1,000 entries a read (the API's default page is 50): Cloud
        # Logging's read quota is per project, shared with the render jobs' logs the coordinator
        # reads (chapters/google-batch.md).
        entries = logs.list_entries(filter_=f"labels.job_uid={job.uid}", page_size=1000)
        lines = [str(e.payload) for e in entries]
        for line in lines[printed:]:
            print(f"  {line}", flush=True)
        printed = max(printed, len(lines))
        if state in ("SUCCEEDED", "FAILED", "DELETION_IN_PROGRESS"):
            return 0 if state == "SUCCEEDED" else 1
        time.sleep(args.every)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["watch"]:
        return watch(argv[1:])
    parser = argparse.ArgumentParser(
        description="Run the thumbnail job on Google Batch; other arguments go to Snakemake.",
        allow_abbrev=False,
    )  # --p... is Snakemake's, not an abbreviation of --project
    parser.add_argument("--project", help="Google Cloud project ID (default: gcloud's)")
    parser.add_argument(
        "--detach",
        action="store_true",
        help="leave the whole run to Google Batch (a coordinator job) and return at once",
    )
    parser.add_argument(
        "--coordinator-account",
        help="the coordinator job's service account (default: batch-coordinator@PROJECT...)",
    )
    args, rest = parser.parse_known_args(argv)
    try:
        if importlib.util.find_spec("snakemake_executor_plugin_googlebatch") is None:
            raise Refusal(
                f"The thumbnail job needs Snakemake's Google Batch plugin, which is not installed "
                f"for {sys.executable}. Start this script with the Python of the environment "
                f"that has it, or install it there: `pip install 'snakemake>=9,<10' "
                f"snakemake-storage-plugin-gcs snakemake-executor-plugin-googlebatch==0.5.1`."
            )
        project = find_project(args.project)
        settings = profile()
        check_service_account(rest, settings)
        check_credentials()
    except Refusal as refusal:
        print(refusal, file=sys.stderr)
        return 2
    os.chdir(ROOT)
    if args.detach:
        account = args.coordinator_account or COORDINATOR_ACCOUNT.format(project=project)
        return detach(project, rest, settings, account)
    prefix = work_prefix(rest, settings, run_id())
    command = snakemake_command(project, rest, prefix)
    print("running:", shlex.join(command[1:]), file=sys.stderr, flush=True)
    print(f"this run's work files: {prefix}/", file=sys.stderr, flush=True)
    os.execv(command[0], command)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
