"""Helpers for running Snakemake through the Google Batch stand-in (batch_service.py answers,
batch_standin.py is the clients), shared by the thumbnail job's Batch tests (test_googlebatch.py)
and the rehearsal of the first job's Batch command (tests/book/test_commands.py): the same
service set-up with the same IAM, the same checks of what a run submitted and installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from microscopy_notebook.cloud import iam, samples
from microscopy_notebook.image import registry
from microscopy_notebook.paths import ROOT
from tests.workflow.batch_service import BatchService, Identity, repository_of
from tests.workflow.jobrun import WORKFLOW

STANDIN = Path(__file__).with_name("batch_standin.py")
PROJECT = "nexuslims-example"
SUBMITTER = "job-submitter"  # who the emulator's front records the submitting process as
JOBS = "batch-job"  # the render jobs' service account, as iam.yaml names its person
COORDINATOR = "coordinator"
PREVIEWABLE = [s.name for s in samples.SAMPLES if not s.name.endswith(".emi")]
ALL_DONE = f"thumbnail job: all {len(PREVIEWABLE)} done;"
# What a runnable must never do on a Batch VM: fetch an installer or install packages.
INSTALLS = re.compile(
    r"\b(wget|curl|miniconda|conda install|mamba install|apt-get|apt install|"
    r"yum|dnf|install-snek)\b",
    re.I,
)


@dataclass
class BatchRun:
    run: subprocess.CompletedProcess
    service: BatchService
    checkout: Path  # the folder Snakemake ran in
    bucket: str  # the output bucket
    raw: str = ""  # the raw-data bucket

    @property
    def out(self) -> Path:
        return self.service.out

    def jobs(self) -> list[dict]:
        return self.service.jobs()

    def installs(self) -> str:
        return self.service.installs()


def places(raw: str, output: str) -> dict[str, str]:
    """The concrete resources of a rehearsal, by iam.yaml's kinds."""
    model = iam.load()
    return {
        "project": f"projects/{PROJECT}",
        "raw-data": f"buckets/{raw}",
        "output": f"buckets/{output}",
        "jobs-account": f"serviceAccounts/{model.email('jobs-account')}",
        "coordinator-account": f"serviceAccounts/{model.email('coordinator-account')}",
        "image-repository": repository_of(registry.load().uri()),
    }


def identities(
    where: Mapping[str, str], people: Mapping[str, iam.Person] | None = None
) -> dict[str, Identity]:
    """Everyone of a rehearsal with their iam.yaml grants on ``where`` (or the grants of the
    ``people`` given instead: a person without a role, for a test)."""
    model = iam.load()
    chosen = {name: model.people[name] for name in (SUBMITTER, JOBS, COORDINATOR)}
    chosen.update(people or {})
    out = {}
    for name, person in chosen.items():
        member = model.email(person.account) if person.account else f"{name}@example.org"
        out[name] = Identity(name, member, iam.policy(model, person, where, member))
    return out


@contextmanager
def batch_service(
    emulator,
    task_python: str,
    where: Mapping[str, str],
    people: Mapping[str, iam.Person] | None = None,
    **options,
) -> Iterator[BatchService]:
    """The stand-in service for one rehearsal, everyone's grants in force (Batch's and, through
    the emulator's front, Cloud Storage's), in a fresh folder."""
    out = Path(tempfile.mkdtemp(prefix="batch-standin-"))
    with BatchService(
        out, task_python, identities(where, people), PROJECT, emulator, **options
    ) as service:
        yield service


def needs(service: BatchService, emulator, who: str, where: Mapping[str, str]) -> set:
    """(kind, permission) of everything ``who`` was allowed to do: storage calls (the emulator's
    front) and Batch, Logging, state reports and image pulls (the service)."""
    from microscopy_notebook.cloud import permissions

    concrete = permissions.recorded_needs(emulator.calls.list(), who) | service.needs(who)
    # the session's emulator has served other rehearsals too, on buckets of their own
    buckets = {r for k, r in where.items() if r.startswith("buckets/")}
    concrete = {(p, r) for p, r in concrete if not r.startswith("buckets/") or r in buckets}
    return iam.by_kind(concrete, where)


def without_credentials(env: dict, folder: Path) -> dict:
    """Storage in the emulator, no Google credentials: the Batch and Logging clients are the
    stand-in's, and nothing else may need a sign-in."""
    return {
        **env,
        "GOOGLE_APPLICATION_CREDENTIALS": str(folder / "no-credentials.json"),
        "NO_GCE_CHECK": "True",
    }


def signed_in(env: dict, folder: Path) -> dict:
    """Storage in the emulator and Application Default Credentials of the form `gcloud auth
    application-default login` writes (made up: nothing here checks them), for a program that,
    like workflow/googlebatch.py, asks for a sign-in before it starts."""
    adc = folder / "application_default_credentials.json"
    adc.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "stand-in.apps.googleusercontent.com",
                "client_secret": "stand-in",
                "refresh_token": "stand-in",
            }
        )
    )
    return {**env, "GOOGLE_APPLICATION_CREDENTIALS": str(adc), "NO_GCE_CHECK": "True"}


# -- a rehearsal of the thumbnail job, as the page starts it ---------------------------------


@dataclass
class Buckets:
    raw: str  # the raw-data bucket: the samples under raw/
    out: str  # the output bucket: previews, and the work files under snakemake-work/

    def where(self) -> dict[str, str]:
        return places(self.raw, self.out)

    def config(self, output: str = "previews") -> list[str]:
        return ["--config", f"input=gs://{self.raw}/raw", f"output=gs://{self.out}/{output}"]


def buckets(gcs) -> Buckets:
    raw, out = (f"gb-{kind}-{uuid.uuid4().hex[:10]}" for kind in ("raw", "out"))
    samples.seed(raw, "raw/", gcs)
    gcs.create_bucket(out)
    return Buckets(raw, out)


def page_commands(marker: str) -> list[str]:
    """The googlebatch.py commands of chapters/google-batch.md that contain ``marker``."""
    text = (ROOT / "book" / "chapters" / "google-batch.md").read_text()
    text = re.sub(r"\\\n\s*", "", text)  # a line ending in a backslash goes on in the next
    return [
        line
        for line in text.splitlines()
        if line.startswith("python workflow/googlebatch.py") and marker in line
    ]


def checkout(folder: Path) -> Path:
    """A git checkout of workflow/, as the repository root: Snakemake ships git-tracked files."""
    root = folder / "checkout"
    shutil.copytree(WORKFLOW, root / "workflow", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    return root


def launcher(
    service, root: Path, where: Buckets, batch_python: str, *extra: str, output="previews"
) -> list[str]:
    """The page's command, `python workflow/googlebatch.py --project ID --config ...`, with the
    work prefix in the test's output bucket."""
    return [
        batch_python,
        str(root / "workflow" / "googlebatch.py"),
        "--project",
        PROJECT,
        "--default-storage-prefix",
        f"gs://{where.out}/snakemake-work",
        *extra,
        *where.config(output),
    ]


def plain_snakemake(root: Path, where: Buckets, batch_python: str, *extra: str) -> list[str]:
    """`snakemake --profile workflow/profiles/googlebatch`, without the launcher's checks."""
    return [
        batch_python,
        str(STANDIN),
        "-s",
        "workflow/Snakefile",
        "--profile",
        "workflow/profiles/googlebatch",
        "--googlebatch-project",
        PROJECT,
        "--storage-gcs-project",
        PROJECT,
        "--default-storage-prefix",
        f"gs://{where.out}/snakemake-work",
        *extra,
        *where.config(),
    ]


def run(argv: list[str], root: Path, env: dict, timeout: float = 600):
    proc = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    print(proc.stdout[-20000:], proc.stderr[-20000:], sep="\n")  # shown when a test fails
    return proc


def submitter_env(service, storage_env: dict, folder: Path) -> dict:
    return service.env(SUBMITTER, signed_in(storage_env, folder))


def previews(gcs, bucket: str, prefix: str) -> dict[str, bytes]:
    return {
        b.name[len(prefix) :]: b.download_as_bytes()
        for b in gcs.list_blobs(bucket, prefix=prefix)
        if b.name.endswith(".png")
    }


def saved_logs(root: Path) -> str:
    """What the plugin saved of the finished jobs' Cloud Logging entries."""
    return "".join(p.read_text() for p in (root / ".snakemake" / "googlebatch_logs").rglob("*.log"))
