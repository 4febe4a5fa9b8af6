"""Run the thumbnail job on Google Batch, after the checks whose failure Snakemake would report as a
Python traceback.

    python workflow/googlebatch.py [--project PROJECT_ID] --config input=gs://... output=gs://...

It is ``snakemake --snakefile workflow/Snakefile --profile workflow/profiles/googlebatch
--googlebatch-project ID --storage-gcs-project ID``, run from the repository root, with every
other argument passed on to Snakemake (``-n`` for a dry run, ``--config ...``). First it checks
what the Google Batch path needs before Snakemake starts: the executor plugin, a project ID and
Google credentials. Without credentials Snakemake's Cloud Storage plugin stops while Snakemake
starts, with a traceback and before the workflow can say anything; here it is one paragraph that
says what to do. Start it with the Python of the environment that holds Snakemake and
``snakemake-executor-plugin-googlebatch``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # Snakemake ships the workflow relative to it
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


def snakemake_command(project: str, rest: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
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
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run the thumbnail job on Google Batch; other arguments go to Snakemake.",
        allow_abbrev=False,
    )  # --p... is Snakemake's, not an abbreviation of --project
    parser.add_argument("--project", help="Google Cloud project ID (default: gcloud's)")
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
        check_credentials()
    except Refusal as refusal:
        print(refusal, file=sys.stderr)
        return 2
    os.chdir(ROOT)
    command = snakemake_command(project, rest)
    print("running:", " ".join(command[1:]), file=sys.stderr, flush=True)
    os.execv(command[0], command)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
