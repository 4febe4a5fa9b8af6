"""Misuse of the thumbnail job gets one paragraph saying what to fix, never a Python traceback:
missing buckets, no permission, malformed or overlapping configuration, and on the Google Batch
path a missing project or missing credentials (through workflow/googlebatch.py, since Snakemake's
storage plugin stops with a traceback before the workflow can speak).

tests/workflow/test_library.py already covers an output inside the input, batch_size=0 and an
unknown key; these are the rest. The runs are independent, so each test starts them all at once.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from microscopy_notebook.cloud import samples
from tests.workflow.jobrun import (
    LOCAL,
    WORKFLOW,
    Background,
    command,
    new_bucket,
    objects,
    sources_unchanged,
    wait_all,
)

pytestmark = pytest.mark.slow


def _one_paragraph(output: str, expected: str) -> None:
    """The message is there, whole, on one line of the output; no traceback anywhere."""
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if re.search(expected, line)]
    assert lines, f"{expected!r} not in the output"
    assert len(lines[0]) > 80  # a sentence saying what to do, not a bare error name


def is_listing_of(bucket: str):
    return lambda method, path: (
        method == "GET" and f"/b/{bucket}/o?" in path and "alt=media" not in path
    )


def test_local_path_misuse(emulator, gcs, storage_env, tmp_path: Path) -> None:
    bucket = new_bucket(gcs, "misuse")
    samples.seed(bucket, "raw/", gcs)
    read_only = new_bucket(gcs, "readonly")
    locked = new_bucket(gcs, "locked")
    samples.seed(locked, "raw/", gcs)
    (tmp_path / "bad.yaml").write_text("input: gs://x/raw\noutput: [unclosed\n")
    # The job's own config file, edited into something that is not YAML (a tab).
    checkout = tmp_path / "checkout"
    shutil.copytree(WORKFLOW, checkout / "workflow", ignore=shutil.ignore_patterns("__pycache__"))
    (checkout / "workflow" / "config" / "config.yaml").write_text(
        "input: gs://x/raw\n\toutput: gs://x/previews\n"
    )
    # No permission: listing one bucket and writing to another answer 403, as Cloud Storage does
    # for an account without a role on them (or a bucket of another project).
    emulator.faults.add(is_listing_of(locked), "status:403", times=10)
    emulator.faults.add(
        lambda m, p: m == "POST" and f"/upload/storage/v1/b/{read_only}/" in p,
        "status:403",
        times=10,
    )
    raw, out = f"input=gs://{bucket}/raw", f"output=gs://{bucket}/previews"
    cases = {  # name -> (config arguments, what the message must say)
        "missing input bucket": (
            ["input=gs://no-such-bucket-mnb/raw", out],
            r"the bucket `no-such-bucket-mnb` does not exist",
        ),
        "missing output bucket": (
            [raw, "output=gs://no-such-output-mnb/previews"],
            r"the bucket `no-such-output-mnb` does not exist",
        ),
        "input not allowed": (
            [f"input=gs://{locked}/raw", out],
            r"is not allowed to list gs://\S+ \(403\).*project is right",
        ),
        "output not allowed": (
            [raw, f"output=gs://{read_only}/previews"],
            r"is not allowed to write \S+ to gs://\S+ \(403\)",
        ),
        "output in the input's bucket": (
            [f"input=gs://{bucket}", out],
            r"the output \S+ lies inside the input",
        ),
        "strict is not a boolean": (
            [raw, out, "strict=perhaps"],
            r"malformed at `strict`: 'perhaps' is not of type 'boolean'",
        ),
        "empty input": (["input=", out], r"malformed at `input`"),
        "not a location": (
            ["input=s3://bucket/raw", out],
            r"only `gs://bucket/prefix` locations and local directories",
        ),
        # Snakemake reads a --configfile before the workflow: its own message, not a traceback.
        "malformed --configfile": (
            ["--configfile", str(tmp_path / "bad.yaml")],
            r"Config file is not valid JSON or YAML",
        ),
        "malformed config.yaml": (
            [raw, out],
            (
                r"config\.yaml is not valid YAML at line 2, "
                r"column 1: found character '\\t'"
            ),
        ),
    }
    with sources_unchanged(gcs, bucket, "raw/"):
        jobs = {}
        for name, (config, _) in cases.items():
            args = config if config[0] == "--configfile" else ["--config", *config]
            argv = None
            if name == "malformed config.yaml":
                argv = command(
                    "--profile", str(LOCAL), *args, snakefile=checkout / "workflow" / "Snakefile"
                )
            jobs[name] = Background(
                tmp_path / re.sub(r"\W+", "-", name),
                "--profile",
                str(LOCAL),
                *args,
                env=storage_env,
                argv=argv,
            )
        wait_all(jobs)
    for name, (_, expected) in cases.items():
        output = jobs[name].output()
        assert jobs[name].proc.returncode != 0, name
        _one_paragraph(output, expected)
    # Refused before anything was written: no preview, no report, anywhere.
    assert objects(gcs, bucket, "previews/") == {}
    assert objects(gcs, read_only) == {}


# -- the Google Batch path -----------------------------------------------------------------------
def _no_google(tmp_path: Path, storage_env: dict) -> dict:
    """No emulator, no gcloud configuration, no Application Default Credentials, no project."""
    env = {
        k: v
        for k, v in storage_env.items()
        if k
        not in (
            "STORAGE_EMULATOR_HOST",
            "GOOGLE_CLOUD_PROJECT",
            "CLOUDSDK_CORE_PROJECT",
            "GOOGLE_APPLICATION_CREDENTIALS",
        )
    }
    for folder in ("home", "gcloud"):
        (tmp_path / folder).mkdir(exist_ok=True)
    env.update(
        HOME=str(tmp_path / "home"), CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), NO_GCE_CHECK="true"
    )
    return env


def _fake_sign_in(tmp_path: Path) -> Path:
    """Application Default Credentials as `gcloud auth application-default login` writes them,
    with made-up values: enough to load, never used against Google (storage is the emulator)."""
    adc = tmp_path / "adc.json"
    adc.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "mnb-offline.example",
                "client_secret": "not-a-secret",  # pragma: allowlist secret
                "refresh_token": "not-a-token",
            }
        )
    )
    return adc


def _python_without_packages(tmp_path: Path) -> str:
    """A Python with the standard library only: the image's environment has the Batch plugin."""
    venv = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return str(venv / "bin" / "python")


def test_google_batch_path_misuse(batch_python: str, gcs, storage_env, tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"  # the launcher runs Snakemake from the checkout's root
    shutil.copytree(WORKFLOW, checkout / "workflow", ignore=shutil.ignore_patterns("__pycache__"))
    launcher = str(checkout / "workflow" / "googlebatch.py")
    bucket = new_bucket(gcs, "cloud")
    samples.seed(bucket, "raw/", gcs)
    config = [
        "--default-storage-prefix",
        f"gs://{bucket}/snakemake-work",
        "--config",
        f"input=gs://{bucket}/raw",
        f"output=gs://{bucket}/previews",
    ]
    bare = _no_google(tmp_path, storage_env)
    cases = {  # name -> (python, launcher arguments, environment, what the message must say)
        "credentials file missing": (
            batch_python,
            ["--project", "mnb-offline-check", *config],
            dict(bare, GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "missing.json")),
            (
                r"GOOGLE_APPLICATION_CREDENTIALS points at \S+missing\.json, "
                r"which does not exist\. .*gcloud auth application-default login"
            ),
        ),
        "never signed in": (
            batch_python,
            ["--project", "mnb-offline-check", *config],
            bare,
            (
                r"found no Google credentials .*run `gcloud auth application-default login "
                r"--no-launch-browser`"
            ),
        ),
        "no project": (
            batch_python,
            config,
            bare,
            r"needs the ID of the Google Cloud project .* `--project PROJECT_ID`",
        ),
        "a project name, not its ID": (
            batch_python,
            ["--project", "My Project", *config],
            bare,
            r"cannot use 'My Project' \(from --project\) as a Google Cloud project: a project ID",
        ),
        "the plugin missing": (
            _python_without_packages(tmp_path),
            ["--project", "mnb-offline-check", *config],
            bare,
            r"needs Snakemake's Google Batch plugin, which is not installed",
        ),
    }
    # Signed in (made-up credentials; storage is the emulator): the launcher hands over to
    # Snakemake with the profile and the project, and a dry run plans without a Google account.
    signed_in = dict(
        storage_env,
        GOOGLE_APPLICATION_CREDENTIALS=str(_fake_sign_in(tmp_path)),
        HOME=str(tmp_path / "home"),
        NO_GCE_CHECK="true",
    )
    jobs = {
        name: Background(
            tmp_path / re.sub(r"\W+", "-", name), env=env, argv=[python, launcher, *args]
        )
        for name, (python, args, env, _) in cases.items()
    }
    jobs["dry run"] = Background(
        tmp_path / "dry-run", env=signed_in, argv=[batch_python, launcher, "-n", *config]
    )
    with sources_unchanged(gcs, bucket, "raw/"):
        wait_all(jobs)
    for name, (_, _, _, expected) in cases.items():
        output = jobs[name].output()
        assert jobs[name].proc.returncode == 2, name
        _one_paragraph(output, expected)
        assert "running: " not in output  # refused before Snakemake started
    dry = jobs["dry run"].output()
    assert jobs["dry run"].proc.returncode == 0
    assert re.search(
        r"running: -m snakemake --snakefile workflow/Snakefile --profile "
        r"workflow/profiles/googlebatch --googlebatch-project nexuslims-example "
        r"--storage-gcs-project nexuslims-example -n",
        dry,
    )
    assert f"{len(samples.SAMPLES) - 2} new in 1 batch(es)" in dry
    assert objects(gcs, bucket, "previews/") == {}
