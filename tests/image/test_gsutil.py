"""The image's gsutil: the PyPI release pinned in image/gsutil.txt, in a venv of its own, behind
image/gsutil.py, which hands it gcloud's sign-in as the Google Cloud CLI's own launcher does.

`nox -s tests` puts the same lock and wrapper first on PATH (noxfile `_use_images_gsutil`), so
every gsutil command of the book and of these tests is the image's. The sign-in is checked end to
end: a service account activated in gcloud against a local token endpoint, then a gsutil call to
the storage emulator, whose front records the bearer token the call carried.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from microscopy_notebook.image import gsutil

ACCOUNT = "reader@nexuslims-example.iam.gserviceaccount.com"


def _wrapper():
    spec = importlib.util.spec_from_file_location("gsutil_wrapper", gsutil.WRAPPER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the lock and the Dockerfile ------------------------------------------------------------------
def test_the_lock_pins_every_package_with_hashes_and_says_how_it_was_made() -> None:
    text = gsutil.LOCK.read_text()
    assert text.startswith(gsutil.HEADER.format(version=gsutil.version()))
    pins = gsutil.pins()
    assert "gsutil" in pins and {"google-auth", "httplib2", "crcmod"} <= set(pins)
    lines = text.splitlines()
    requirements = [i for i, line in enumerate(lines) if line and line[0] not in "# "]
    assert len(requirements) == len(pins)  # every requirement is a == pin
    for i in requirements:
        assert lines[i + 1].startswith("    --hash=sha256:"), f"{lines[i]}: no hash"


def test_the_wrapper_runs_the_images_venv_and_is_executable() -> None:
    """The image copies the wrapper to /usr/local/bin/gsutil as it is: its interpreter line
    names the venv the image builds the lock into, and COPY keeps the mode."""
    assert gsutil.WRAPPER.read_text().startswith("#!/opt/gsutil/bin/python\n")
    assert os.access(gsutil.WRAPPER, os.X_OK), "COPY keeps the mode: it must be executable"


def test_problems_name_a_wrong_release_the_clis_own_gsutil_and_a_slow_crcmod() -> None:
    good = "gsutil version: 5.38\nusing cloud sdk: False\ncompiled crcmod: True\n"
    assert gsutil.problems(good, "5.38") == []
    assert len(gsutil.problems(good, "5.3")) == 1
    bad = "gsutil version: 5.38\nusing cloud sdk: True\ncompiled crcmod: False\n"
    assert len(gsutil.problems(bad, "5.38")) == 2


# -- the gsutil these tests and the book run ------------------------------------------------------
def test_the_gsutil_on_path_is_the_images(storage_env: dict) -> None:
    found = shutil.which("gsutil", path=storage_env["PATH"])
    assert found and Path(found).read_text().count(str(gsutil.WRAPPER)) == 1, found
    version = subprocess.run(
        ["gsutil", "version", "-l"], capture_output=True, text=True, env=storage_env, timeout=120
    )
    assert version.returncode == 0, version.stderr
    assert gsutil.problems(version.stdout, gsutil.version()) == []


# -- the hand-over from gcloud ---------------------------------------------------------------------
def test_an_account_without_a_boto_file_is_the_vms_own(tmp_path: Path) -> None:
    """gcloud writes no legacy_credentials file for the metadata server's account: gsutil is
    told to ask the metadata server, as the CLI's launcher tells it."""
    properties = {"core": {"account": "123-compute@developer.gserviceaccount.com", "project": "p"}}
    options, env = _wrapper().hand_over(properties, tmp_path, {})
    assert options == [
        "-o",
        "GSUtil:default_project_id=p",
        "-o",
        "GoogleCompute:service_account=default",
    ]
    assert env["CLOUDSDK_CORE_PASS_CREDENTIALS_TO_GSUTIL"] == "1"


@pytest.mark.parametrize(
    "setting",
    [{"core": {"pass_credentials_to_gsutil": "false"}}, {"auth": {"disable_credentials": "True"}}],
)
def test_gcloud_settings_that_keep_credentials_from_gsutil_are_honoured(
    setting: dict, tmp_path: Path
) -> None:
    boto = tmp_path / "legacy_credentials" / ACCOUNT / ".boto"
    boto.parent.mkdir(parents=True)
    boto.write_text("[Credentials]\n")
    properties = {
        "core": {"account": ACCOUNT, **setting.get("core", {})},
        "auth": setting.get("auth", {}),
    }
    options, env = _wrapper().hand_over(properties, tmp_path, {"BOTO_CONFIG": "/mine.cfg"})
    assert options == [] and env == {"BOTO_CONFIG": "/mine.cfg"}


class _TokenEndpoint(ThreadingHTTPServer):
    """Google's OAuth token endpoint as far as gcloud and gsutil use it: a signed JWT in, an
    access token out. Records whose assertions it was sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TokenHandler)
        self.token = f"ya29.test-{uuid.uuid4().hex}"
        self.issuers: list[str] = []

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/token"


class _TokenHandler(BaseHTTPRequestHandler):
    server: _TokenEndpoint

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_POST(self) -> None:  # the stdlib's name
        form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        claims = form["assertion"][0].split(".")[1]
        claims += "=" * (-len(claims) % 4)
        self.server.issuers.append(json.loads(base64.urlsafe_b64decode(claims))["iss"])
        body = json.dumps(
            {"access_token": self.server.token, "expires_in": 3600, "token_type": "Bearer"}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def token_endpoint() -> Iterator[_TokenEndpoint]:
    server = _TokenEndpoint()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _service_account_key(path: Path, token_uri: str) -> None:
    """A service account key as the console downloads it, with a fresh RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "nexuslims-example",
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": ACCOUNT,
                "client_id": "1",
                "token_uri": token_uri,
            }
        )
    )


def test_gsutil_signs_in_as_gcloud_did(
    storage_env: dict, gcs, emulator, token_endpoint, tmp_path: Path
) -> None:
    bucket = gcs.create_bucket(f"signed-in-{uuid.uuid4().hex[:12]}")
    bucket.blob("raw/a.dm3").upload_from_string(b"not really a dm3")
    # The emulator's settings, but gcloud's credentials on and passed to gsutil, as a reader's.
    env = {
        k: v
        for k, v in storage_env.items()
        if k
        not in {"CLOUDSDK_AUTH_DISABLE_CREDENTIALS", "CLOUDSDK_CORE_PASS_CREDENTIALS_TO_GSUTIL"}
    }
    boto = tmp_path / "boto.cfg"  # Google's token endpoint is ours here, as storage is
    boto.write_text(
        Path(storage_env["BOTO_CONFIG"]).read_text()
        + f"[OAuth2]\nprovider_token_uri = {token_endpoint.uri}\n"
    )
    env.update(CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), BOTO_CONFIG=str(boto), BOTO_PATH=str(boto))
    key = tmp_path / "key.json"
    _service_account_key(key, token_endpoint.uri)
    login = subprocess.run(
        ["gcloud", "auth", "activate-service-account", f"--key-file={key}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert login.returncode == 0, login.stderr

    before = len(emulator.calls.list())
    listed = subprocess.run(
        ["gsutil", "ls", f"gs://{bucket.name}/raw/"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == [f"gs://{bucket.name}/raw/a.dm3"]
    mine = [c for c in emulator.calls.list()[before:] if f"/b/{bucket.name}/" in c.path]
    assert mine and {c.bearer for c in mine} == {token_endpoint.token}
    assert token_endpoint.issuers and set(token_endpoint.issuers) == {ACCOUNT}


def test_a_new_lock_resolves_from_pypi_with_hashes_for_every_pin() -> None:
    """What `python -m microscopy_notebook.image lock-gsutil RELEASE` writes (image/README.md)."""
    text = gsutil.lock(gsutil.version())
    assert text.startswith(gsutil.HEADER.format(version=gsutil.version()))
    pins = gsutil.pins(text)
    assert pins["gsutil"] == gsutil.version()
    assert pins["google-auth"] == gsutil.pins()["google-auth"]  # gsutil's own == pin
    assert text.count("--hash=sha256:") >= len(pins)
