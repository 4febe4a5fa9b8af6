"""Helpers for running Snakemake through the Google Batch stand-in (batch_service.py answers,
batch_standin.py is the clients), shared by the thumbnail job's Batch tests (test_googlebatch.py)
and the rehearsal of the first job's Batch command (tests/book/test_commands.py): the same
service set-up with the same IAM, the same checks of what a run submitted and installed."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from microscopy_notebook.cloud import iam
from microscopy_notebook.image import registry
from tests.workflow.batch_service import BatchService, Identity, repository_of

STANDIN = Path(__file__).with_name("batch_standin.py")
PROJECT = "nexuslims-example"
SUBMITTER = "job-submitter"  # who the emulator's front records the submitting process as
JOBS = "batch-job"  # the render jobs' service account, as iam.yaml names its person
COORDINATOR = "coordinator"
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
