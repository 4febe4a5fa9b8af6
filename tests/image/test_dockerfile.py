"""image/Dockerfile: the docker-stacks conventions, only listed packages, hadolint; and the reader
(microscopy_notebook.image.dockerfile) these checks stand on, tested on its own."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from microscopy_notebook.image import dockerfile
from tests.image.spec import DOCKERFILE, HADOLINT_CONFIG, LISTED, hadolint


# -- the reader -----------------------------------------------------------------------------------
def test_instructions_join_continuations_and_drop_comments_as_docker_does() -> None:
    text = (
        "# syntax comment\nARG BASE=x\n\nfrom ${BASE}\nRUN a && \\\n    # inside a run\n"
        "    b \\\n    c\nUSER 1000\n"
    )
    steps = dockerfile.instructions(text)
    assert [keyword for keyword, _ in steps] == ["ARG", "FROM", "RUN", "USER"]
    assert steps[:2] == [("ARG", "BASE=x"), ("FROM", "${BASE}")]  # the keyword upper-cased
    assert steps[2][1].split() == ["a", "&&", "b", "c"], "one RUN, the comment line dropped"
    assert steps[3] == ("USER", "1000")


def test_words_honour_quotes_and_survive_a_quote_cut_in_half() -> None:
    assert dockerfile.words("pip install 'numpy>=2' \"a b\"") == [
        "pip",
        "install",
        "numpy>=2",
        "a b",
    ]
    assert dockerfile.words("echo 'half") == ["echo", "'half"]


def test_the_install_parser_catches_an_unlisted_package() -> None:
    text = (
        "FROM x\nRUN mamba install --yes \\\n    # a comment line\n    'numpy>=2' \\\n"
        "    somethingelse && \\\n    mamba clean --all -f -y\n"
        "RUN MPLBACKEND=Agg pip install --no-cache-dir -r reqs.txt extra==1.0\n"
    )
    names, files = dockerfile.install_requests(text)
    assert names == ["numpy>=2", "somethingelse", "extra==1.0"]
    assert files == ["reqs.txt"]


def test_the_install_parser_skips_option_values_and_reads_python_m_pip() -> None:
    text = (
        "FROM x\nRUN conda install -c bioconda -n base --file /tmp/list snakemake\n"
        "RUN python3 -m pip install --requirement r.txt dask | tee log; echo install me\n"
        "COPY --chown=1000 pip /pip\n"
    )
    names, files = dockerfile.install_requests(text)
    assert names == ["snakemake", "dask"]
    assert files == ["/tmp/list", "r.txt"]


def test_stages_are_told_apart_by_their_names_and_the_image_is_the_last() -> None:
    steps = dockerfile.instructions(
        "ARG B=x\nFROM ${B} AS build\nRUN make\nFROM ${B}\nCOPY --from=build /a /a\n"
    )
    assert dockerfile.stages(steps) == {
        "build": [("FROM", "${B} AS build"), ("RUN", "make")],
        "": [("FROM", "${B}"), ("COPY", "--from=build /a /a")],
    }


def test_apt_packages_are_the_words_of_apt_get_install_without_options() -> None:
    text = (
        "FROM x\nRUN apt-get update && \\\n    apt-get install -y --no-install-recommends \\\n"
        "    # why curl\n    curl \\\n    git && \\\n    rm -rf /var/lib/apt/lists/*\n"
        "RUN echo apt-get install nothing\n"
    )
    assert dockerfile.apt_packages(text) == ["curl", "git"]


# -- image/Dockerfile ----------------------------------------------------------------------------
def test_the_dockerfile_installs_nothing_the_list_lacks() -> None:
    text = DOCKERFILE.read_text()
    names, files = dockerfile.install_requests(text)
    listed = {p.name for p in LISTED} | {p.pypi for p in LISTED}
    assert [n for n in names if re.split(r"[<>=! ]", n.split("::")[-1])[0] not in listed] == []
    assert files, "the list is installed with --file"
    steps = dockerfile.instructions(text)
    copied = {}
    for keyword, args in steps:
        if keyword == "COPY":
            *sources, dest = [w for w in args.split() if not w.startswith("--")]
            copied[dest] = sources
    runs = " ".join(args for keyword, args in steps if keyword == "RUN")
    for file in files:  # the COPY'd list itself, or a file made from it (comments stripped)
        made_from = re.findall(rf"(\S+)\s*>\s*{re.escape(file)}(?:\s|$)", runs)
        origin = copied.get(file) or copied.get(made_from[0] if made_from else "", [])
        # the conda list, or gsutil's lock (tests/image/test_gsutil.py checks how it installs)
        assert [Path(s).name for s in origin] in (["packages.txt"], ["gsutil.txt"]), file


def test_the_dockerfile_follows_the_docker_stacks_conventions() -> None:
    text = DOCKERFILE.read_text()
    lines = text.splitlines()
    pin = next(i for i, line in enumerate(lines) if line.startswith("ARG BASE_IMAGE="))
    assert re.fullmatch(
        r"ARG BASE_IMAGE=quay\.io/jupyter/minimal-notebook:20\d\d-\d\d-\d\d", lines[pin]
    )
    assert lines[pin - 1].startswith("#"), "the pin says why"
    every_stage = dockerfile.stages(dockerfile.instructions(text))
    assert all(s[0][1].split()[0] == "${BASE_IMAGE}" for s in every_stage.values()), "one base"
    steps = every_stage[""]  # the image itself; a build stage leaves only what it copies out
    assert steps[0] == ("FROM", "${BASE_IMAGE}")
    assert ("SHELL", '["/bin/bash", "-o", "pipefail", "-c"]') in steps
    users = [args for keyword, args in steps if keyword == "USER"]
    assert users[-1] == "${NB_UID}"
    runs = [args for keyword, args in steps if keyword == "RUN"]
    apt = [r for r in runs if "apt-get install" in r]
    assert len(apt) == 1, "one apt block"
    assert "signed-by=/usr/share/keyrings/" in apt[0]
    assert not re.search(r"\bapt-key\s", apt[0]), "apt-key trusts a key for every repository"
    assert "rm -rf /var/lib/apt/lists/*" in apt[0]
    mamba = [r for r in runs if "mamba install" in r]
    assert len(mamba) == 1, "one mamba install"
    for part in (
        "mamba clean --all -f -y",
        'fix-permissions "${CONDA_DIR}"',
        'fix-permissions "/home/${NB_USER}"',
        'python -c "import matplotlib.pyplot"',
    ):
        assert part in mamba[0], part
    labels = " ".join(args for keyword, args in steps if keyword == "LABEL")
    for label, arg in (("source", "SOURCE"), ("revision", "REVISION"), ("created", "CREATED")):
        assert f'org.opencontainers.image.{label}="${{{arg}}}"' in labels
        assert ("ARG", f"{arg}=unknown") in steps


def test_the_image_bakes_in_no_credentials() -> None:
    for keyword, args in dockerfile.instructions(DOCKERFILE.read_text()):
        if keyword in {"ENV", "ARG"}:
            assert not re.search(r"CREDENTIAL|TOKEN|SECRET|PASSWORD|KEY", args, re.I), args
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in DOCKERFILE.read_text()


def test_every_apt_package_has_a_comment_saying_why() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for name in dockerfile.apt_packages(DOCKERFILE.read_text()):
        i = next(i for i, line in enumerate(lines) if line.strip().startswith(name))
        assert lines[i - 1].strip().startswith("#"), f"apt package {name}: say why"


def test_the_gcloud_cli_the_image_installs_provides_gcloud() -> None:
    """Not Python: checked on this machine, which has the same Debian package from Google."""
    if shutil.which("dpkg") is None or shutil.which("gcloud") is None:
        pytest.fail(
            "needs a Debian machine with Google's google-cloud-cli package (the gcloud "
            "CLI): the storage tests use it too"
        )
    apt = dockerfile.apt_packages(DOCKERFILE.read_text())
    owner = subprocess.run(
        ["dpkg", "-S", shutil.which("gcloud")], capture_output=True, text=True
    ).stdout.split(":")[0]
    assert owner in apt, f"gcloud comes from {owner!r}, which the image does not install"
    version = subprocess.run(["gcloud", "--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and "Google Cloud SDK" in version.stdout


# -- hadolint -------------------------------------------------------------------------------------
def test_hadolint_finds_nothing() -> None:
    proc = subprocess.run(
        [hadolint(), "--config", str(HADOLINT_CONFIG), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_with_this_config_still_fails_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:24.04\nRUN cd /tmp && curl -s https://example.org | sh\n")
    proc = subprocess.run(
        [hadolint(), "--config", str(HADOLINT_CONFIG), str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "DL3003" in proc.stdout and "DL4006" in proc.stdout


def test_every_hadolint_ignore_says_why() -> None:
    config = yaml.safe_load(HADOLINT_CONFIG.read_text())
    lines = HADOLINT_CONFIG.read_text().splitlines()
    for rule in config.get("ignored", []):
        i = next(i for i, line in enumerate(lines) if line.strip() == f"- {rule}")
        assert lines[i - 1].strip().startswith("#"), f"{rule}: say why it is ignored"
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("# hadolint ignore="):
            assert lines[i - 1].startswith("# "), f"Dockerfile:{i + 1}: say why it is ignored"
