"""image/cloudbuild.yaml: Cloud Build builds with a cache, tags, and pushes to Artifact Registry."""

from __future__ import annotations

import re
import subprocess

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
        '--cache-from "$$image:latest"',
        "--build-arg BASE_IMAGE=",
        '--build-arg REVISION="$COMMIT_SHA"',
        "--build-arg CREATED=",
        '--tag "$$image:$SHORT_SHA"',
        '--tag "$$image:latest"',
        "--file image/Dockerfile",
        f"image={registry}",
    ):
        assert part in script, part
    assert re.search(r'--tag "\$\$image:\$\$\{created%%T\*\}"', script), "a date tag"
    push = next(s for s in config["steps"] if s["id"] == "push")
    assert push["args"] == ["push", "--all-tags", registry]
    assert f"{registry}:$SHORT_SHA" in config["images"]
    assert all(i.startswith(registry + ":") for i in config["images"])
    ids = [s["id"] for s in config["steps"]]
    assert ids.index("pull-cache") < ids.index("build") < ids.index("push")


def test_cloudbuild_declares_every_substitution_it_uses() -> None:
    """Cloud Build rejects a build that names an unknown substitution; bash's own are $$."""
    text = CLOUDBUILD.read_text()
    config = yaml.safe_load(text)
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    used = set(re.findall(r"(?<!\$)\$\{?([A-Za-z_][A-Za-z0-9_]*)", body.replace("$$", "")))
    declared = set(config["substitutions"])
    assert used - BUILT_IN - declared == set()
    assert {u for u in used if u.startswith("_")} == declared


def test_the_cloudbuild_date_tag_is_the_iso_date_of_created() -> None:
    created = "2026-11-02T08:15:00Z"
    proc = subprocess.run(
        ["bash", "-c", f'created="{created}"; echo "${{created%%T*}}"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.strip() == "2026-11-02"
