"""image/packages.txt: what it lists, how its specs read, that each package imports here at a
version the list allows (the image itself is checked by `nox -s image`), and that no other file
bounds a package of it (the job's conda file is generated from it)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from microscopy_notebook.image import build as image
from microscopy_notebook.image import imports, job_env, packages
from microscopy_notebook.paths import ROOT, WORKFLOW
from tests.image.spec import BY_NAME, LISTED


def test_the_list_has_the_original_libraries_and_what_the_book_and_job_need() -> None:
    original = {
        "h5py",
        "matplotlib-base",
        "numba",
        "numpy",
        "pandas",
        "pytables",
        "scikit-image",
        "scikit-learn",
        "scipy",
        "seaborn",
        "hyperspy",
    }  # the original guide's list
    needed = {
        "rosettasciio",
        "snakemake",
        "snakemake-storage-plugin-gcs",
        "snakemake-executor-plugin-googlebatch",
        "google-cloud-storage",
        "pillow",
        "jupytext",
        "nbgitpuller",
        "ipykernel",
    }
    assert original | needed <= set(BY_NAME)
    assert Version("9") in BY_NAME["snakemake"].specifier
    assert all(len(p.purpose.split()) >= 3 for p in LISTED), "say what each package is for"


def test_google_cloud_storage_is_pinned_within_what_the_batch_plugin_requires(
    batch_python: str,
) -> None:
    script = (
        "import importlib.metadata as m, json; "
        "print(json.dumps(m.requires('snakemake-executor-plugin-googlebatch')))"
    )
    requires = json.loads(
        subprocess.run(
            [batch_python, "-c", script], capture_output=True, text=True, check=True
        ).stdout
    )
    plugin = next(
        Requirement(r).specifier for r in requires if Requirement(r).name == "google-cloud-storage"
    )
    listed = BY_NAME["google-cloud-storage"].specifier
    for version in ("2.11.0", "2.12.0", "2.19.0", "3.0.0", "3.17.1"):
        assert not (version in listed and version not in plugin), version
    assert "3.0.0" not in listed


@pytest.mark.parametrize(
    ("conda", "pep440"),
    [
        ("", ""),
        (">=2.3,<3", "<3,>=2.3"),
        ("==0.5.1", "==0.5.1"),
        ("=1.2", "==1.2.*"),
        ("1.2.*", "==1.2.*"),
        ("!=1.3.0", "!=1.3.0"),
    ],
)
def test_conda_specs_translate_to_python_specifiers(conda: str, pep440: str) -> None:
    assert str(packages.conda_to_pep440(conda)) == pep440


@pytest.mark.parametrize(
    "bad",
    [
        "numpy 1.2  # bare version: conda reads it as 1.2.*",
        "numpy >=1|<0.5  # or",
        "numpy >=2",
        "numpy >=2  # arrays\nnumpy <3  # twice",
        "numpy =*=openblas  # a build string",
    ],
)
def test_the_list_refuses_lines_it_cannot_check(bad: str) -> None:
    with pytest.raises(ValueError, match=r"line \d+:|listed more than once|spec|wildcard|write ="):
        packages.parse(bad)


def _installed_versions(python: str, pkgs: list[packages.Package]) -> dict[str, dict]:
    """Import each package in ``python`` (the import check the image gets) and read its version."""
    proc = subprocess.run(
        [python, "-c", image.IMPORT_CHECK, *(p.module for p in pkgs)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    errors = json.loads(proc.stdout.strip().splitlines()[-1])
    script = (
        "import importlib.metadata as m, json, sys\n"
        "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    )
    proc = subprocess.run(
        [python, "-c", script, *(p.pypi for p in pkgs)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    versions = json.loads(proc.stdout)
    return {p.name: {"error": errors[p.module], "version": versions[p.pypi]} for p in pkgs}


@pytest.fixture(scope="module")
def installed_here() -> dict[str, dict]:
    """The environment that stands for the image: the whole list, installed by nox."""
    return _installed_versions(sys.executable, LISTED)


@pytest.mark.parametrize("package", LISTED, ids=[p.name for p in LISTED])
def test_every_package_imports_at_a_version_its_spec_allows(
    package: packages.Package, installed_here: dict[str, dict]
) -> None:
    found = installed_here[package.name]
    assert found["error"] is None, f"import {package.module}: {found['error']}"
    assert package.specifier.contains(found["version"], prereleases=True), (
        f"{package.pypi} {found['version']} is outside the list's {package.spec}"
    )


# -- one list per dependency ----------------------------------------------------------------------
def test_no_dependency_group_names_a_package_of_the_image_list() -> None:
    """The image's packages are installed from the list itself: a group that named one would be a
    second bound, free to drift (as `rosettasciio>=0.15` once stood in five places)."""
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]
    named = {
        Requirement(item).name.lower(): group
        for group, items in groups.items()
        for item in items
        if isinstance(item, str)
    }
    assert not {p.pypi.lower() for p in LISTED} & set(named), {
        name: named[name] for name in {p.pypi.lower() for p in LISTED} & set(named)
    }


def test_the_jobs_conda_file_is_the_image_lists_lines_for_the_job() -> None:
    """workflow/envs/thumbnail.yaml is generated: a bound changed there, or in the list alone,
    fails here until `python -m microscopy_notebook.image.job_env` writes it again."""
    assert job_env.ENV_FILE.read_text() == job_env.render(), (
        "workflow/envs/thumbnail.yaml differs from image/packages.txt: run "
        "`python -m microscopy_notebook.image.job_env`"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "microscopy_notebook.image.job_env", "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def test_the_jobs_conda_file_provides_what_the_job_imports() -> None:
    scripts = WORKFLOW / "scripts"
    names = [n for f in sorted(scripts.rglob("*.py")) for n in imports.imports(f.read_text())]
    provided = {p.module for p in job_env.job_packages()}
    assert not imports.unprovided(names, imports.local_names(scripts), provided)


def test_the_job_env_check_fails_on_a_bound_changed_in_the_list_alone(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drift the check is for: the list's bound for one of the job's packages moves, the
    committed conda file does not."""
    text = packages.PACKAGE_LIST.read_text()
    moved = text.replace("rosettasciio >=0.15", "rosettasciio >=0.16", 1)
    assert moved != text
    listed = tmp_path / "packages.txt"
    listed.write_text(moved)
    monkeypatch.setattr(packages, "PACKAGE_LIST", listed)
    monkeypatch.setattr(packages, "load", lambda path=listed: packages.parse(path.read_text()))
    assert "rosettasciio >=0.16" in job_env.render()
    assert job_env.main(["--check"]) == 1


# Files that pin packages of the list for environments other than the image's, and why.
OTHER_ENVIRONMENTS = {
    "image/gsutil.txt": "gsutil's own venv, pinned with hashes (microscopy_notebook.image.gsutil)",
    "src/microscopy_notebook/cloud/pinned.py": "exact wheels the sample files come from",
}


def _drift(texts: dict[str, str]) -> list[str]:
    """Each bound for a package of the list, in ``texts`` (file name -> text), that is not the
    list's own (reworded ones, ``>=2,<3`` for ``>=2.0,<3``, are the same)."""
    names = {n: p for p in LISTED for n in (p.name, p.pypi)}
    clause = r"(?:==|>=|<=|!=|~=|<|>)\s*[0-9][\w.*]*"
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    bound = re.compile(rf"(?<![\w.-])({alternatives})(?![\w-])\s*({clause}(?:\s*,\s*{clause})*)")
    drift = []
    for name, text in texts.items():
        for match in bound.finditer(text):
            package = names[match[1]]
            if packages.conda_to_pep440(match[2].replace(" ", "")) != package.specifier:
                drift.append(f"{name}: {match[0]} (the list: {package.name} {package.spec})")
    return drift


def test_no_other_file_bounds_a_listed_package_differently() -> None:
    """Wherever a tracked file outside the tests (their lists are made up) writes a bound for a
    package of the list, a message's `pip install` line included, it is the list's bound."""
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    skip = {"image/packages.txt", *OTHER_ENVIRONMENTS}
    texts = {}
    for name in tracked:
        path = ROOT / name
        if name in skip or name.startswith("tests/") or not path.is_file():
            continue
        try:
            texts[name] = path.read_text()
        except UnicodeDecodeError:
            continue  # not text
    assert not _drift(texts)


def test_the_scan_finds_a_bound_moved_in_one_place() -> None:
    same = "pip install 'snakemake>=9,<10' and numpy >=2,<3"
    moved = "pip install 'snakemake>=9.2,<10'\n  - google-cloud-storage >=3.0"
    assert _drift({"same": same}) == []
    assert _drift({"moved": moved}) == [
        "moved: snakemake>=9.2,<10 (the list: snakemake >=9,<10)",
        "moved: google-cloud-storage >=3.0 (the list: google-cloud-storage >=2.12,<3)",
    ]
