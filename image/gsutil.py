#!/opt/gsutil/bin/python
"""`gsutil`, signed in as `gcloud` is: the image's /usr/local/bin/gsutil.

After March 2027 gsutil no longer ships with the Google Cloud CLI
(https://cloud.google.com/storage/docs/gsutil), so the image runs the PyPI release pinned in
gsutil.txt, from a venv of its own (/opt/gsutil: it pins google-auth and httplib2 releases the
conda environment cannot share). This hands it gcloud's settings the way the CLI's own launcher
does (bin/bootstrapping/gsutil.py of google-cloud-cli): gcloud's project as the default project;
the boto file gcloud writes for the signed-in account at `gcloud auth login`, read after
/etc/boto.cfg and ~/.boto so that it wins; the VM's service account when gcloud uses it; gcloud's
own CA file. A reader's gsutil commands behave the same before and after that date.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def gcloud_properties() -> dict[str, dict[str, str]]:
    """gcloud's effective properties (its config files and CLOUDSDK_* variables); {} without it."""
    try:
        listed = subprocess.run(
            ["gcloud", "config", "list", "--format=json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return json.loads(listed.stdout or "{}") if listed.returncode == 0 else {}


def _false(value: str | None) -> bool:
    return str(value).lower() in {"false", "0", "no", "off"}


def _true(value: str | None) -> bool:
    return str(value).lower() in {"true", "1", "yes", "on"}


def hand_over(
    properties: dict, config_dir: Path, environ: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    """The boto options (-o SECTION:NAME=VALUE) and environment gsutil gets from gcloud's settings,
    as bin/bootstrapping/gsutil.py of the Google Cloud CLI builds them."""
    core, auth = properties.get("core", {}), properties.get("auth", {})
    options, env = [], dict(environ)
    if core.get("project"):
        options += ["-o", f"GSUtil:default_project_id={core['project']}"]
    account = core.get("account")
    if (
        account
        and not _false(core.get("pass_credentials_to_gsutil"))
        and not _true(auth.get("disable_credentials"))
    ):
        env["CLOUDSDK_CORE_PASS_CREDENTIALS_TO_GSUTIL"] = "1"
        signed_in = config_dir / "legacy_credentials" / account / ".boto"
        if signed_in.is_file():
            first = (
                environ.get("BOTO_CONFIG")
                or environ.get("BOTO_PATH")
                or os.pathsep.join(["/etc/boto.cfg", str(Path.home() / ".boto")])
            )
            env.pop("BOTO_CONFIG", None)
            env["BOTO_PATH"] = os.pathsep.join([first, str(signed_in)])
        else:  # gcloud writes no file for the VM's own service account: the metadata server's
            options += ["-o", "GoogleCompute:service_account=default"]
    if core.get("custom_ca_certs_file"):
        options += ["-o", f"Boto:ca_certificates_file={core['custom_ca_certs_file']}"]
    return options, env


def main() -> None:
    config_dir = Path(os.environ.get("CLOUDSDK_CONFIG") or Path.home() / ".config" / "gcloud")
    options, env = hand_over(gcloud_properties(), config_dir, dict(os.environ))
    gsutil = Path(sys.executable).parent / "gsutil"  # the venv's own, next to its python
    os.execve(gsutil, [str(gsutil), *options, *sys.argv[1:]], env)


if __name__ == "__main__":
    main()
