"""Storage faults, injected by the emulator's front: the CLIs and the Python client cope or say so.

Transient 503/429 answers must be retried to success; an upload whose response is lost after the
server committed it must leave exactly the right object; a storage that cannot be reached must be
reported within 60 s (every retry setting the project configures is bounded).
"""

from __future__ import annotations

import hashlib
import re
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

SRC = "gs://{bucket}/in/sample.bin"


def _is_download(method: str, path: str) -> bool:
    return method == "GET" and "alt=media" in path


def _is_upload(method: str, path: str) -> bool:
    return method in ("POST", "PUT") and "/upload/" in path


def _cli(tool: str, verb: str) -> list[str]:
    return ["gcloud", "storage", verb] if tool == "gcloud" else ["gsutil", "-q", verb]


@pytest.fixture
def bucket(gcs) -> str:
    name = f"faults-{uuid.uuid4().hex[:10]}"
    gcs.create_bucket(name)
    return name


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "payload.bin"
    path.write_bytes(uuid.uuid4().bytes * 20_000)  # 320 kB: one request each way
    return path


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.mark.parametrize("tool", ["gcloud", "gsutil"])
@pytest.mark.parametrize("status", [503, 429])
def test_transient_errors_are_retried(
    tool, status, emulator, storage_env, gcs, bucket, payload, tmp_path: Path
) -> None:
    url = SRC.format(bucket=bucket)
    up = emulator.faults.add(_is_upload, f"status:{status}", times=2)
    proc = subprocess.run(
        [*_cli(tool, "cp"), str(payload), url],
        env=storage_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if tool == "gcloud" and status == 429:
        # gcloud storage (SDK 528) does not retry a 429 on a one-shot upload: it stops with the
        # error, and nothing is left behind. Uploading again is the user's retry.
        for _ in range(up.remaining + 1):
            if proc.returncode == 0:
                break
            assert "429" in proc.stderr
            assert list(gcs.list_blobs(bucket)) == []
            proc = subprocess.run(
                [*_cli(tool, "cp"), str(payload), url],
                env=storage_env,
                capture_output=True,
                text=True,
                timeout=120,
            )
    assert proc.returncode == 0, proc.stderr
    assert up.hits == 2
    assert gcs.bucket(bucket).blob("in/sample.bin").download_as_bytes() == payload.read_bytes()

    down = emulator.faults.add(_is_download, f"status:{status}", times=2)
    dest = tmp_path / "back.bin"
    proc = subprocess.run(
        [*_cli(tool, "cp"), url, str(dest)],
        env=storage_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert down.hits == 2
    assert _md5(dest.read_bytes()) == _md5(payload.read_bytes())


def test_python_client_retries_transient_errors(emulator, gcs, bucket, payload) -> None:
    blob = gcs.bucket(bucket).blob("in/sample.bin")
    up = emulator.faults.add(_is_upload, "status:503", times=2)
    # Uploads are retried by the client only when they are idempotent: a generation precondition
    # makes them so (here: "only if absent").
    blob.upload_from_filename(str(payload), if_generation_match=0)
    assert up.hits == 2
    down = emulator.faults.add(_is_download, "status:429", times=2)
    assert blob.download_as_bytes() == payload.read_bytes()
    assert down.hits == 2


@pytest.mark.parametrize("tool", ["gcloud", "gsutil"])
def test_lost_response_after_commit_leaves_one_correct_object(
    tool, emulator, storage_env, gcs, bucket, payload
) -> None:
    fault = emulator.faults.add(_is_upload, "drop-after", times=1)
    url = SRC.format(bucket=bucket)
    proc = subprocess.run(
        [*_cli(tool, "cp"), str(payload), url],
        env=storage_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert fault.hits == 1
    assert proc.returncode == 0, proc.stderr
    blobs = list(gcs.list_blobs(bucket))
    assert [b.name for b in blobs] == ["in/sample.bin"]
    assert blobs[0].download_as_bytes() == payload.read_bytes()


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("tool", ["gcloud", "gsutil"])
def test_unreachable_storage_is_reported_within_a_minute(tool, storage_env, tmp_path) -> None:
    port = _dead_port()
    env = dict(storage_env)
    env["CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE"] = f"http://127.0.0.1:{port}/"
    boto = tmp_path / "dead-boto.cfg"
    boto.write_text(
        re.sub(
            r"(gs_json_port|gs_port) = \d+",
            rf"\1 = {port}",
            Path(storage_env["BOTO_CONFIG"]).read_text(),
        )
    )
    env["BOTO_CONFIG"] = env["BOTO_PATH"] = str(boto)
    start = time.monotonic()
    proc = subprocess.run(
        [*_cli(tool, "ls"), "gs://nexuslims_example-datafiles/"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    took = time.monotonic() - start
    assert proc.returncode != 0
    assert "refused" in proc.stderr.lower(), proc.stderr[-2000:]
    print(f"{tool}: unreachable storage reported after {took:.1f} s")
    assert took < 60  # a bound on retries, not a speed target: unbounded gsutil takes ~10 min
