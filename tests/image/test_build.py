"""`nox -s image` without building: the engine it picks (or why none), the tags, the commands it
runs, and the emulator settings the notebooks get inside the container."""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from microscopy_notebook.cloud.emulator import Emulator
from microscopy_notebook.image import build as image
from microscopy_notebook.image import packages
from microscopy_notebook.paths import ROOT
from tests.image.spec import DOCKERFILE, fake_engine

NO_DAEMON = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock"


def _image_cli(args: list[str], path: Path) -> subprocess.CompletedProcess:
    """``python -m microscopy_notebook.image ARGS`` with nothing but ``path`` on PATH."""
    return subprocess.run(
        [sys.executable, "-m", "microscopy_notebook.image", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": str(path)},
        timeout=60,
    )


# -- the engine -----------------------------------------------------------------------------------
def test_no_engine_when_the_docker_cli_has_no_daemon(tmp_path: Path) -> None:
    fake_engine(tmp_path, "docker", 1, NO_DAEMON)
    found = image.find_engine(which=lambda name: shutil.which(name, path=str(tmp_path)))
    assert found.path is None
    assert found.reason.startswith("no container engine")
    assert "Cannot connect to the Docker daemon" in found.reason
    assert "podman: not installed" in found.reason


def test_an_engine_whose_info_answers_is_used(tmp_path: Path) -> None:
    fake_engine(tmp_path, "docker", 1, "no daemon")
    fake_engine(tmp_path, "podman", 0)
    found = image.find_engine(which=lambda name: shutil.which(name, path=str(tmp_path)))
    assert found.path == str(tmp_path / "podman")


def test_the_engine_command_fails_with_the_reason_when_docker_has_no_daemon(tmp_path: Path) -> None:
    """What `nox -s image` runs before anything else: no engine, no path, the reason, a failure."""
    fake_engine(tmp_path, "docker", 1, NO_DAEMON)
    proc = _image_cli(["engine", "--path"], tmp_path)
    assert proc.returncode != 0
    assert "no container engine: nothing was built" in proc.stderr
    assert NO_DAEMON in proc.stderr and "podman: not installed" in proc.stderr
    assert proc.stdout == "", "no engine path for the session to build with"


def test_the_engine_command_prints_the_path_of_an_engine_that_answers(tmp_path: Path) -> None:
    fake_engine(tmp_path, "docker", 1, NO_DAEMON)
    fake_engine(tmp_path, "podman", 0)
    proc = _image_cli(["engine", "--path"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(tmp_path / "podman")


def test_nox_image_says_no_container_engine_and_fails(tmp_path: Path) -> None:
    """The build command itself, with a PATH that has docker's CLI and no daemon."""
    fake_engine(tmp_path, "docker", 1, "Cannot connect to the Docker daemon")
    (tmp_path / "git").symlink_to(shutil.which("git"))
    proc = _image_cli(["build"], tmp_path)
    assert proc.returncode != 0
    assert "no container engine: nothing was built" in proc.stderr
    assert "built and tagged" not in proc.stdout


# -- tags and commands ----------------------------------------------------------------------------
def _git_repo(path: Path) -> None:
    run = {"cwd": path, "check": True, "capture_output": True}
    subprocess.run(["git", "init", "-q"], **run)
    (path / "image").mkdir()
    (path / "image" / "Dockerfile").write_text("FROM scratch\n")
    subprocess.run(["git", "add", "."], **run)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"], **run
    )


def test_tags_are_the_date_and_the_commit_and_say_dirty(tmp_path: Path) -> None:
    _git_repo(tmp_path)
    day = datetime.date(2026, 11, 2)
    date_tag, sha_tag = image.tags(tmp_path, day)
    assert date_tag == "microscopy-notebook:2026-11-02"
    assert re.fullmatch(r"microscopy-notebook:[0-9a-f]{7}", sha_tag)
    (tmp_path / "image" / "Dockerfile").write_text("FROM scratch\nLABEL x=y\n")
    assert image.tags(tmp_path, day)[1] == sha_tag + "-dirty"


def test_the_build_command_tags_labels_and_uses_image_as_context() -> None:
    tags = ["microscopy-notebook:2026-11-02", "microscopy-notebook:abc"]
    cmd = image.build_command("docker", tags, ["--no-cache"])
    assert cmd[:2] == ["docker", "build"] and cmd[-1] == str(ROOT / "image")
    assert cmd[cmd.index("--file") + 1] == str(DOCKERFILE)
    assert [cmd[i + 1] for i, w in enumerate(cmd) if w == "--tag"] == tags
    args = [cmd[i + 1].split("=")[0] for i, w in enumerate(cmd) if w == "--build-arg"]
    assert {"REVISION", "CREATED"} <= set(args) and "--no-cache" in cmd


def test_version_problems_name_missing_and_out_of_spec_packages() -> None:
    pkgs = packages.parse(
        "numpy >=2,<3  # arrays for all\nhyperspy >=2.3  # microscopy data here\n"
        "bioconda::snakemake ==9.1.0  # the job runner here\n"
    )
    conda = [{"name": "numpy", "version": "1.26.4"}, {"name": "snakemake", "version": "9.1.0"}]
    assert image.version_problems(conda, pkgs) == [
        "numpy 1.26.4 is outside >=2,<3",
        "hyperspy: not installed",
    ]


# -- the notebooks in the container ---------------------------------------------------------------
def test_the_notebooks_run_in_the_container_against_a_copy_of_the_emulator_settings(
    emulator: Emulator, tmp_path: Path
) -> None:
    env = image.container_emulator(emulator.apply(), tmp_path / "mount")
    host_dir = str(Path(emulator.env["CLOUDSDK_CONFIG"]).parent)
    assert env["STORAGE_EMULATOR_HOST"] == emulator.env["STORAGE_EMULATOR_HOST"]
    assert env["CLOUDSDK_CONFIG"] == "/tmp/gcloud-config"
    assert env["CLOUDSDK_CORE_PROJECT"] == "nexuslims-example"  # the emulator config's project
    assert env["BOTO_CONFIG"] == f"{image.MOUNT}/boto.cfg"
    assert env["CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE"] == f"{image.MOUNT}/ca.pem"
    assert not [v for v in env.values() if host_dir in v], "no path of this machine"
    boto = (tmp_path / "mount" / "boto.cfg").read_text()
    assert host_dir not in boto and "state_dir = /tmp/gsutil-state" in boto
    assert (tmp_path / "mount" / "ca.pem").read_bytes() == emulator.ca_file.read_bytes()
    cmd = image.notebooks_command("docker", "microscopy-notebook:abc", env, tmp_path / "mount")
    assert cmd[cmd.index("--network") + 1] == "host"
    assert f"{tmp_path / 'mount'}:{image.MOUNT}:ro" in cmd and f"{ROOT}:/mnt/repo:ro" in cmd
    assert f"STORAGE_EMULATOR_HOST={env['STORAGE_EMULATOR_HOST']}" in cmd
    assert "jupytext --to ipynb --execute" in cmd[-1]


def test_the_notebooks_command_refuses_to_run_without_the_emulator(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no emulator"):
        image.container_emulator({"PATH": "/usr/bin"}, tmp_path)
