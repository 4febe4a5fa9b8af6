"""image/Dockerfile, as hadolint reads it: clean with the repository's .hadolint.yaml, whose rules
(the docker-stacks conventions: pipefail, a non-root user last, apt lists removed, the OCI labels)
still fail a Dockerfile that breaks them. What the image holds is checked inside it by
`nox -s image`: what a Dockerfile does shows only when it is built."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.image.spec import DOCKERFILE, HADOLINT_CONFIG, hadolint

BASE = "quay.io/jupyter/minimal-notebook:2026-10-05"
LABELS = (
    'LABEL org.opencontainers.image.source="${SOURCE}" '
    'org.opencontainers.image.revision="${REVISION}" '
    'org.opencontainers.image.created="${CREATED}"\n'
)


def _hadolint(dockerfile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [hadolint(), "--config", str(HADOLINT_CONFIG), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_hadolint_finds_nothing() -> None:
    proc = _hadolint(DOCKERFILE)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_good_dockerfile_passes_so_the_failures_below_are_each_rules(tmp_path: Path) -> None:
    good = tmp_path / "Dockerfile"
    good.write_text(
        f'FROM {BASE}\nSHELL ["/bin/bash", "-o", "pipefail", "-c"]\n'
        "ARG SOURCE=unknown\nARG REVISION=unknown\nARG CREATED=unknown\n"
        f"{LABELS}USER ${{NB_UID}}\n"
    )
    proc = _hadolint(good)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize(
    ("rule", "body"),
    [
        ("DL3003", "RUN cd /tmp && make\n"),  # cd in RUN instead of WORKDIR
        ("DL4006", "RUN curl -s https://example.org | sh\n"),  # a pipe without pipefail
        ("DL3002", "USER root\n"),  # root is the last user
        (
            "DL3009",
            (
                "USER root\nRUN apt-get update && apt-get install -y --no-install-recommends "
                "git\nUSER 1000\n"
            ),
        ),  # apt lists left in the image
        ("DL3049", ""),  # an OCI label missing (LABELS left out below)
    ],
)
def test_hadolint_with_this_config_fails_a_dockerfile_that_breaks_a_rule(
    rule: str, body: str, tmp_path: Path
) -> None:
    bad = tmp_path / "Dockerfile"
    labels = "" if rule == "DL3049" else LABELS
    bad.write_text(f"FROM {BASE}\n{labels}{body}")
    proc = _hadolint(bad)
    assert proc.returncode != 0
    assert rule in proc.stdout, proc.stdout
