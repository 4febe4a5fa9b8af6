"""The error messages the chapters quote are the ones the tools print.

A chapter quotes a message in a ```` ```{code-block} text ```` with ``:class: tool-message`` and a
``:name:``. For each name, `PROVOKED` holds a function that makes the tool print it, here and
offline: the installed ``gcloud`` with a sign-in or a project missing, the Python client with no
credentials, Snakemake with a lock a killed run left, the installed JupyterLab's own text. The
page's text must appear in what the tool printed, as it is (test_commands.py checks that every
quoted message is provoked here, or carries its source).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.book.test_commands import CHAPTERS, MESSAGE_CLASS, blocks

GCLOUD = "gcloud"


def _clean_env(tmp: Path) -> dict[str, str]:
    """A user with nothing set up: a new gcloud configuration, no credentials anywhere, and no
    way to reach Google's metadata server (this is no Compute Engine machine)."""
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "CLOUDSDK_CONFIG": str(tmp / "gcloud"),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "1",
        "NO_GCE_CHECK": "true",
        "GCE_METADATA_HOST": "127.0.0.1:9",
        "GCE_METADATA_IP": "127.0.0.1:9",
        "PYTHONWARNINGS": "always",
    }


def _run(command: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    proc = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    return proc.stdout + proc.stderr


def no_account(tmp: Path) -> str:
    return _run([GCLOUD, "storage", "ls", "gs://nexuslims_example-datafiles"], _clean_env(tmp))


def no_project(tmp: Path) -> str:
    # Signed in (credentials turned off stands for any sign-in), but no project set.
    env = dict(_clean_env(tmp), CLOUDSDK_AUTH_DISABLE_CREDENTIALS="1")
    return _run([GCLOUD, "storage", "ls"], env)


def empty_project(tmp: Path) -> str:
    return _run([GCLOUD, "config", "set", "project", ""], _clean_env(tmp))


CLIENT = "from google.cloud import storage; storage.Client()"


def no_adc(tmp: Path) -> str:
    return _run([sys.executable, "-c", CLIENT], _clean_env(tmp))


def quota_project(tmp: Path) -> str:
    """User credentials from `gcloud auth application-default login`, with no quota project:
    the file that command writes, as google-auth reads it (nothing is sent anywhere)."""
    from google.auth import _cloud_sdk

    env = _clean_env(tmp)
    config = Path(env["CLOUDSDK_CONFIG"])
    config.mkdir(parents=True, exist_ok=True)
    (config / "application_default_credentials.json").write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": _cloud_sdk.CLOUD_SDK_CLIENT_ID,  # gcloud's, as the login writes
                "client_secret": "not-a-secret",
                "refresh_token": "not-a-token",
            }
        )
    )
    return _run([sys.executable, "-c", "import google.auth; google.auth.default()"], env)


def snakemake_locked(tmp: Path) -> str:
    """A run killed while it worked leaves its lock; the next run in that folder is refused."""
    job = tmp / "first-job"
    job.mkdir()
    (job / "Snakefile").write_text(
        'rule slow:\n    output: "done.txt"\n'
        '    shell: "touch started; while [ ! -e go ]; do sleep 0.1; done; touch {output}"\n'
    )
    command = [sys.executable, "-m", "snakemake", "--cores", "1"]
    run = subprocess.Popen(
        command,
        cwd=job,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (job / "started").exists():  # the rule runs: the folder is locked
            assert run.poll() is None, "snakemake ended before its rule started"
            assert time.monotonic() < deadline, "the rule never started"
            time.sleep(0.1)
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # as a kill signal or a power loss would
        run.wait()
    printed = _run(command, dict(os.environ), cwd=job)
    # The page names the folder as a reader's JupyterLab has it.
    return printed.replace(str(job.resolve()), "/home/jovyan/first-job").replace(
        str(job), "/home/jovyan/first-job"
    )


def snakemake_job_failed(tmp: Path) -> str:
    job = tmp / "job"
    job.mkdir()
    (job / "Snakefile").write_text('rule fails:\n    output: "x.txt"\n    shell: "exit 1"\n')
    return _run([sys.executable, "-m", "snakemake", "--cores", "1"], dict(os.environ), cwd=job)


def kernel_died(tmp: Path) -> str:
    """JupyterLab's own dialog text, from the installed JupyterLab (the image's is 4.x too),
    for the storage tutorial."""
    static = Path(sys.prefix) / "share" / "jupyter" / "lab" / "static"
    texts = set()
    for bundle in static.glob("*.js"):
        texts |= set(
            re.findall(r"The kernel for %1 appears to have died\.[^\"'`]*", bundle.read_text())
        )
    assert len(texts) == 1, texts
    return texts.pop().replace("%1", "book/notebooks/cloud-storage.md")


def parallel_composite(tmp: Path, emulator_env: dict[str, str]) -> str:
    """An upload over the threshold (lowered here, so that a small file crosses it)."""
    big = tmp / "big.bin"
    big.write_bytes(os.urandom(3 * 1024 * 1024))
    env = dict(
        emulator_env,
        CLOUDSDK_STORAGE_PARALLEL_COMPOSITE_UPLOAD_THRESHOLD="1M",
        CLOUDSDK_STORAGE_PARALLEL_COMPOSITE_UPLOAD_COMPONENT_SIZE="1M",
    )
    target = f"gs://nexuslims_example-scratch/test-messages/{os.getpid()}-{time.time_ns()}.bin"
    try:
        return _run([GCLOUD, "storage", "cp", str(big), target], env)
    finally:
        _run([GCLOUD, "storage", "rm", target], env)


PROVOKED: dict[str, Callable[..., str]] = {
    "msg-no-account": no_account,
    "msg-no-project": no_project,
    "msg-empty-project": empty_project,
    "msg-no-adc": no_adc,
    "msg-quota-project": quota_project,
    "msg-snakemake-locked": snakemake_locked,
    "msg-snakemake-job-failed": snakemake_job_failed,
    "msg-kernel-died": kernel_died,
    "msg-parallel-composite": parallel_composite,
}
NEEDS_STORAGE = {"msg-parallel-composite"}

QUOTED = [b for p in CHAPTERS for b in blocks(p) if b.options.get("class") == MESSAGE_CLASS]


def _lines(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


@pytest.mark.parametrize("block", QUOTED, ids=lambda b: b.options.get("name", "?"))
def test_the_tool_prints_the_quoted_message(block, tmp_path: Path, request) -> None:
    provoke = PROVOKED[block.options["name"]]
    if block.options["name"] in NEEDS_STORAGE:
        emulator_env = request.getfixturevalue("storage_env")
        request.getfixturevalue("gcs").lookup_bucket("nexuslims_example-scratch") or (
            request.getfixturevalue("gcs").create_bucket("nexuslims_example-scratch")
        )
        printed = provoke(tmp_path, emulator_env)
    else:
        printed = provoke(tmp_path)
    assert _lines(block.code) in _lines(printed), (
        f"{block.page.name}: the page quotes\n{block.code}\n\nthe tool printed\n{printed}"
    )


def test_a_message_the_tool_does_not_print_is_caught(tmp_path: Path) -> None:
    printed = no_account(tmp_path)
    assert _lines("ERROR: (gcloud.storage.ls) You are not signed in.") not in _lines(printed)
    assert "You do not currently have an active account selected." in printed
