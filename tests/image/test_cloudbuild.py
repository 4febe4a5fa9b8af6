"""image/cloudbuild.yaml: Cloud Build builds from the pinned build's cache, tags with the commit
only, and pushes to Artifact Registry."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.image.spec import CLOUDBUILD

BUILT_IN = {
    "PROJECT_ID",
    "BUILD_ID",
    "PROJECT_NUMBER",
    "LOCATION",
    "TRIGGER_NAME",
    "COMMIT_SHA",
    "REVISION_ID",
    "SHORT_SHA",
    "REPO_NAME",
    "REPO_FULL_NAME",
    "BRANCH_NAME",
    "TAG_NAME",
    "REF_NAME",
    "TRIGGER_BUILD_CONFIG_PATH",
    "SERVICE_ACCOUNT_EMAIL",
    "SERVICE_ACCOUNT",
}


def test_cloudbuild_builds_caches_tags_and_pushes_to_artifact_registry() -> None:
    text = CLOUDBUILD.read_text()
    config = yaml.safe_load(text)
    registry = "${_REGION}-docker.pkg.dev/$PROJECT_ID/${_REPOSITORY}/microscopy-notebook"
    assert {s["name"] for s in config["steps"]} == {"gcr.io/cloud-builders/docker"}
    build = next(s for s in config["steps"] if s["id"] == "build")
    script = " ".join(build["args"])
    for part in (
        '--cache-from "$$image:$$(cat /workspace/pinned-tag)"',
        "--build-arg BASE_IMAGE=",
        '--build-arg REVISION="$COMMIT_SHA"',
        "--build-arg CREATED=",
        '--tag "$$image:$SHORT_SHA"',
        "--file image/Dockerfile",
        f"image={registry}",
    ):
        assert part in script, part
    # One tag, the commit's: the repository's tags are immutable, so nothing may move.
    assert re.findall(r"--tag \S+", script) == ['--tag "$$image:$SHORT_SHA"']
    assert "latest" not in text.split("steps:", 1)[1]
    assert config["images"] == [f"{registry}:$SHORT_SHA"]  # pushed, its digest recorded
    ids = [s["id"] for s in config["steps"]]
    assert ids.index("pull-cache") < ids.index("build")


def test_the_cache_is_the_pinned_build(tmp_path: Path) -> None:
    """The pull-cache step pulls the build image/registry.yaml pins, and hands its tag to the
    build step: its script, run as Cloud Build runs it, with `docker` recording what it is asked."""
    from microscopy_notebook.image import registry
    from microscopy_notebook.paths import ROOT

    config = yaml.safe_load(CLOUDBUILD.read_text())
    (step,) = [s for s in config["steps"] if s["id"] == "pull-cache"]
    script = step["args"][1]
    for name, value in {"_REGION": "us-central1", "_REPOSITORY": "nexuslims"}.items():
        script = script.replace(f"${{{name}}}", value)
    script = script.replace("$PROJECT_ID", "nexuslims-example").replace("$$", "$")
    script = script.replace("/workspace/", f"{tmp_path}/")
    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir()
    docker.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/docker.log\n')
    docker.chmod(0o755)
    subprocess.run(
        ["bash", "-c", script],
        cwd=ROOT,
        env={"PATH": f"{docker.parent}:/usr/bin:/bin"},
        check=True,
    )
    pinned = registry.load()
    assert (tmp_path / "pinned-tag").read_text().strip() == pinned.tag
    assert (tmp_path / "docker.log").read_text().split() == ["pull", pinned.uri()]


def test_cloudbuild_declares_every_substitution_it_uses() -> None:
    """Cloud Build rejects a build that names an unknown substitution; bash's own are $$."""
    text = CLOUDBUILD.read_text()
    config = yaml.safe_load(text)
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    used = set(re.findall(r"(?<!\$)\$\{?([A-Za-z_][A-Za-z0-9_]*)", body.replace("$$", "")))
    declared = set(config["substitutions"])
    assert used - BUILT_IN - declared == set()
    assert {u for u in used if u.startswith("_")} == declared
