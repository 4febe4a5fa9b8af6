"""The emulator serves all three clients: google-cloud-storage, gcloud storage and gsutil."""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from microscopy_notebook.cloud.emulator import Emulator


def _bucket(gcs) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    gcs.create_bucket(name)
    return name


def _run(env: dict[str, str], *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def test_python_client_round_trip(gcs, tmp_path: Path) -> None:
    bucket = gcs.bucket(_bucket(gcs))
    data = uuid.uuid4().bytes * 1000
    bucket.blob("a/b.bin").upload_from_string(data)
    assert [b.name for b in gcs.list_blobs(bucket)] == ["a/b.bin"]
    assert bucket.blob("a/b.bin").download_as_bytes() == data
    bucket.blob("a/b.bin").delete()
    assert list(gcs.list_blobs(bucket)) == []


@pytest.mark.parametrize(
    "cli",
    [
        ("gcloud", "storage", "cp"),
        ("gsutil", "-q", "cp"),
    ],
    ids=["gcloud", "gsutil"],
)
def test_cli_up_list_down_delete(cli, gcs, storage_env, tmp_path: Path) -> None:
    bucket = _bucket(gcs)
    src = tmp_path / "up.dm3"
    src.write_bytes(uuid.uuid4().bytes * 4096)
    url = f"gs://{bucket}/folder/up.dm3"

    up = _run(storage_env, *cli, str(src), url)
    assert up.returncode == 0, up.stderr
    assert gcs.bucket(bucket).blob("folder/up.dm3").download_as_bytes() == src.read_bytes()

    ls = _run(
        storage_env,
        cli[0],
        *(["storage"] if cli[0] == "gcloud" else []),
        "ls",
        f"gs://{bucket}/folder/",
    )
    assert ls.returncode == 0, ls.stderr
    assert url in ls.stdout.split()

    dest = tmp_path / "down.dm3"
    down = _run(storage_env, *cli, url, str(dest))
    assert down.returncode == 0, down.stderr
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()

    rm = _run(storage_env, cli[0], *(["storage"] if cli[0] == "gcloud" else []), "rm", url)
    assert rm.returncode == 0, rm.stderr  # the front turns the emulator's 200+null into a 204
    assert list(gcs.list_blobs(bucket)) == []


def test_emulator_leaves_no_process_and_no_files() -> None:
    emu = Emulator().start()
    pid = emu._proc.pid
    tmp = Path(emu._tmp.name)
    emu.stop()
    assert not tmp.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_env_never_points_at_real_config(emulator: Emulator) -> None:
    env = emulator.env
    home = str(Path.home())
    for key in ("CLOUDSDK_CONFIG", "BOTO_CONFIG", "BOTO_PATH"):
        assert not env[key].startswith(home), key
        assert Path(env[key]).exists()
    assert env["STORAGE_EMULATOR_HOST"].startswith("http://127.0.0.1:")
