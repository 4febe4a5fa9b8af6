"""Build the image with a local container engine and check it from the inside (``nox -s image``).

Nothing here pretends: without a working engine (docker or podman whose ``info`` answers) the
build does not happen and the command says so and fails. With one, it builds image/, tags the
result with today's date and the git commit, then checks inside the container that every package
of the list imports at a version its spec allows, that ``gcloud`` and ``snakemake`` run, that
``gsutil`` is the pinned release with a compiled crcmod, and that the book's notebooks execute
against the storage emulator::

    python -m microscopy_notebook.image engine [--path]   # which engine, or why none
    python -m microscopy_notebook.image tags              # the tags a build gives
    python -m microscopy_notebook.image build [ARGS]      # build, tag, check imports and CLIs
    python -m microscopy_notebook.image lock-gsutil VER   # pin gsutil VER in image/gsutil.txt
    python -m microscopy_notebook.cloud.emulator --seed -- \
        python -m microscopy_notebook.image notebooks --image REF
"""

from __future__ import annotations

import argparse
import configparser
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from microscopy_notebook.image import gsutil, registry
from microscopy_notebook.image.packages import Package
from microscopy_notebook.image.packages import load as load_packages
from microscopy_notebook.paths import ROOT

CONTEXT = ROOT / "image"
NAME = registry.load().name  # image/registry.yaml: the one place the name is written
ENGINES = ("docker", "podman")
NO_ENGINE = "no container engine"


@dataclass(frozen=True)
class Engine:
    """The engine to use (``path``), or why there is none (``reason``)."""

    path: str | None
    reason: str


def find_engine(
    candidates: Sequence[str] = ENGINES,
    which: Callable[[str], str | None] = shutil.which,
    run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
) -> Engine:
    """The first of docker and podman whose ``info`` succeeds: a CLI alone builds nothing."""
    tried = []
    for name in candidates:
        path = which(name)
        if path is None:
            tried.append(f"{name}: not installed")
            continue
        try:
            proc = run([path, "info"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as err:
            tried.append(f"{name}: `{name} info` failed ({err})")
            continue
        if proc.returncode == 0:
            return Engine(path, f"{name} at {path}")
        last = (proc.stderr or proc.stdout).strip().splitlines()
        detail = last[-1] if last else f"exit code {proc.returncode}"
        tried.append(f"{name}: `{name} info` failed: {detail}")
    return Engine(
        None,
        f"{NO_ENGINE}: nothing was built. "
        + "; ".join(tried)
        + ". Start a Docker daemon or install podman, or build on Cloud Build"
        " (image/cloudbuild.yaml)",
    )


def tags(root: Path = ROOT, today: datetime.date | None = None) -> list[str]:
    """``NAME:YYYY-MM-DD`` and ``NAME:<short sha>``, with ``-dirty`` if image/ has uncommitted
    changes: a tag must not claim a commit the image was not built from."""
    day = (today or datetime.datetime.now(datetime.UTC).date()).isoformat()
    sha = _git(root, "rev-parse", "--short=7", "HEAD")
    if _git(root, "status", "--porcelain", "--", "image"):
        sha += "-dirty"
    return [f"{NAME}:{day}", f"{NAME}:{sha}"]


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout.strip()


def build_command(
    engine: str, image_tags: Sequence[str], extra: Sequence[str] = (), root: Path = ROOT
) -> list[str]:
    """The engine's build command, with the OCI label arguments the Dockerfile expects."""
    cmd = [engine, "build", "--file", str(CONTEXT / "Dockerfile")]
    for tag in image_tags:
        cmd += ["--tag", tag]
    revision = _git(root, "rev-parse", "HEAD")
    created = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    cmd += ["--build-arg", f"REVISION={revision}", "--build-arg", f"CREATED={created}"]
    source = subprocess.run(
        ["git", "remote", "get-url", "origin"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    if source:
        cmd += ["--build-arg", f"SOURCE={source}"]
    return [*cmd, *extra, str(CONTEXT)]


# -- checks inside the container ------------------------------------------------------------------
IMPORT_CHECK = """
import importlib, json, sys
result = {}
for module in sys.argv[1:]:
    try:
        importlib.import_module(module)
        result[module] = None
    except Exception as err:  # report every failure, not only the first
        result[module] = f"{type(err).__name__}: {err}"
print(json.dumps(result))
"""

CLI_CHECKS = (
    ("gcloud", "--version"),
    ("snakemake", "--version"),
)


def version_problems(conda_list: list[dict], packages: Sequence[Package]) -> list[str]:
    """Listed packages missing from ``mamba list --json`` or at a version outside their spec."""
    installed = {item["name"]: item["version"] for item in conda_list}
    problems = []
    for package in packages:
        version = installed.get(package.name)
        if version is None:
            problems.append(f"{package.name}: not installed")
            continue
        try:
            ok = package.specifier.contains(Version(version), prereleases=True)
        except InvalidVersion:
            ok = False
        if not ok:
            problems.append(f"{package.name} {version} is outside {package.spec or 'any'}")
    return problems


def check_image(engine: str, ref: str) -> list[str]:
    """Run the import, version and CLI checks in a container of ``ref``; the problems found."""
    pkgs = load_packages()
    run = [engine, "run", "--rm", ref]
    problems = []
    proc = subprocess.run(
        [*run, "python", "-c", IMPORT_CHECK, *(p.module for p in pkgs)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        problems.append(f"the import check did not run: {proc.stderr.strip()}")
    else:
        for module, error in json.loads(proc.stdout.strip().splitlines()[-1]).items():
            print(f"import {module}: {error or 'ok'}")
            if error:
                problems.append(f"import {module}: {error}")
    proc = subprocess.run([*run, "mamba", "list", "--json"], capture_output=True, text=True)
    if proc.returncode != 0:
        problems.append(f"mamba list failed: {proc.stderr.strip()}")
    else:
        problems += version_problems(json.loads(proc.stdout), pkgs)
    for cli in CLI_CHECKS:
        proc = subprocess.run([*run, *cli], capture_output=True, text=True)
        first = (proc.stdout or proc.stderr).strip().splitlines()[:1]
        print(f"{' '.join(cli)}: {first[0] if first else ''} (exit {proc.returncode})")
        if proc.returncode != 0:
            problems.append(f"`{' '.join(cli)}` exited {proc.returncode}: {proc.stderr.strip()}")
    proc = subprocess.run([*run, "gsutil", "version", "-l"], capture_output=True, text=True)
    print(f"gsutil version -l (exit {proc.returncode}):\n{proc.stdout}")
    problems += (
        gsutil.problems(proc.stdout, gsutil.version())
        if proc.returncode == 0
        else [f"`gsutil version -l` exited {proc.returncode}: {proc.stderr.strip()}"]
    )
    return problems


# -- the book's notebooks inside the container, against the emulator ------------------------------
EMULATOR_VARS = ("STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "BOTO_CONFIG", "BOTO_PATH")
EMULATOR_PREFIXES = ("CLOUDSDK_",)
MOUNT = "/mnt/emulator"  # the container's read-only copy of the emulator's client files
NOTEBOOKS_SCRIPT = """
set -euo pipefail
mkdir -p /tmp/repo /tmp/executed
cp -r /mnt/repo/book /tmp/repo/
if [ -d /mnt/repo/workflow ]; then cp -r /mnt/repo/workflow /tmp/repo/; fi
cd /tmp/repo/book/notebooks
for notebook in *.md; do
    echo "executing $notebook"
    jupytext --to ipynb --execute --output "/tmp/executed/${notebook%.md}.ipynb" "$notebook"
done
"""


def emulator_env(environ: dict[str, str]) -> dict[str, str]:
    """The variables ``python -m microscopy_notebook.cloud.emulator`` sets for its command."""
    env = {
        k: v for k, v in environ.items() if k in EMULATOR_VARS or k.startswith(EMULATOR_PREFIXES)
    }
    if "STORAGE_EMULATOR_HOST" not in env or "CLOUDSDK_CONFIG" not in env:
        raise RuntimeError(
            "no emulator: run under `python -m microscopy_notebook.cloud.emulator --seed -- ...`"
        )
    return env


def container_emulator(environ: dict[str, str], dest: Path) -> dict[str, str]:
    """The emulator's settings for a container, its files copied to ``dest`` (mounted at MOUNT).

    The emulator's own folder is private to this user and holds paths of this machine; the
    container gets copies it can read (CA file, boto file with container paths), and keeps what
    gcloud and gsutil write (their config and state) inside itself.
    """
    env = emulator_env(environ)
    tmp = Path(env["CLOUDSDK_CONFIG"]).parent
    dest.mkdir(parents=True, exist_ok=True)
    dest.chmod(0o755)  # the container's user is not this user
    out = {}
    for key, value in env.items():
        path = Path(value)
        if key == "CLOUDSDK_CONFIG":
            out[key] = "/tmp/gcloud-config"  # gcloud writes here: the container's own
            ini = configparser.ConfigParser()  # and the project the emulator's config names
            ini.read(path / "configurations" / "config_default")
            if ini.has_option("core", "project"):
                out["CLOUDSDK_CORE_PROJECT"] = ini["core"]["project"]
        elif path.is_file() and path.is_relative_to(tmp):
            text = path.read_text()
            text = text.replace(str(tmp), MOUNT)
            text = re.sub(r"(?m)^state_dir = .*$", "state_dir = /tmp/gsutil-state", text)
            (dest / path.name).write_text(text)
            (dest / path.name).chmod(0o644)
            out[key] = f"{MOUNT}/{path.name}"
        else:
            out[key] = value
    return out


def notebooks_command(
    engine: str, ref: str, env: dict[str, str], mount: Path, root: Path = ROOT
) -> list[str]:
    """Execute every book/notebooks/*.md in a container of ``ref``, on the emulator.

    The emulator listens on 127.0.0.1 of this machine, so the container shares the host's network
    (``--network host``; Docker Desktop on macOS and Windows has to have host networking turned
    on). ``env`` and ``mount`` come from `container_emulator`. The repository is mounted read-only
    and copied inside, so a notebook may write next to itself.
    """
    cmd = [
        engine,
        "run",
        "--rm",
        "--network",
        "host",
        "--volume",
        f"{mount}:{MOUNT}:ro",
        "--volume",
        f"{root}:/mnt/repo:ro",
    ]
    for key in sorted(env):
        cmd += ["--env", f"{key}={env[key]}"]
    return [*cmd, ref, "bash", "-c", NOTEBOOKS_SCRIPT]


# -- command line ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m microscopy_notebook.image", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    engine_cmd = sub.add_parser("engine", help="say which engine would build, or why none")
    engine_cmd.add_argument("--path", action="store_true", help="print only its path, last")
    sub.add_parser("tags", help="print the tags a build gives: the date's, then the commit's")
    build = sub.add_parser("build", help="build, tag, and check imports, versions and CLIs")
    build.add_argument("--engine", help="docker or podman executable (default: found)")
    build.add_argument("--tag", action="append", help="tag to give (default: date and commit)")
    build.add_argument("extra", nargs=argparse.REMAINDER, help="more arguments for `build`")
    nbs = sub.add_parser("notebooks", help="run the book's notebooks in the image (emulator up)")
    nbs.add_argument("--engine", help="docker or podman executable (default: found)")
    nbs.add_argument("--image", required=True, help="the image reference to run")
    pin = sub.add_parser("lock-gsutil", help="pin a gsutil release, with hashes, in gsutil.txt")
    pin.add_argument("release", help="the gsutil release on PyPI, e.g. 5.38")
    args = parser.parse_args(argv)
    if args.command == "tags":
        print("\n".join(tags()))
        return 0
    if args.command == "lock-gsutil":
        gsutil.LOCK.write_text(gsutil.lock(args.release))
        print(f"{gsutil.LOCK}: gsutil {args.release} and {len(gsutil.pins()) - 1} packages")
        return 0

    engine = args.engine if getattr(args, "engine", None) else None
    if engine is None:
        found = find_engine()
        if found.path is None:
            print(found.reason, file=sys.stderr)
            return 1
        engine = found.path
        print(f"container engine: {found.reason}")
    if args.command == "engine":
        if args.path:
            print(engine)
        return 0

    if args.command == "build":
        image_tags = args.tag or tags()
        extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
        subprocess.run(build_command(engine, image_tags, extra), check=True)
        print("built and tagged: " + ", ".join(image_tags))
        problems = check_image(engine, image_tags[-1])
        for problem in problems:
            print(f"PROBLEM: {problem}", file=sys.stderr)
        return 1 if problems else 0

    with tempfile.TemporaryDirectory(prefix="image-emulator-") as mount:
        env = container_emulator(dict(os.environ), Path(mount))
        proc = subprocess.run(notebooks_command(engine, args.image, env, Path(mount)))
    print(
        "the notebooks ran in the image"
        if proc.returncode == 0
        else f"a notebook failed in the image (exit {proc.returncode})"
    )
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
