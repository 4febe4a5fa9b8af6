"""image/packages.txt: what it lists, how its specs read, and that each package imports here at a
version the list allows (the image itself is checked by `nox -s image`)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from microscopy_notebook.image import build as image
from microscopy_notebook.image import packages
from microscopy_notebook.paths import ROOT
from tests.image.spec import BY_NAME, IN_BATCH_VENV, LISTED


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
    with pytest.raises(ValueError):
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
    return _installed_versions(sys.executable, [p for p in LISTED if p.name not in IN_BATCH_VENV])


@pytest.fixture(scope="module")
def installed_in_batch_venv(batch_python: str) -> dict[str, dict]:
    return _installed_versions(batch_python, [p for p in LISTED if p.name in IN_BATCH_VENV])


@pytest.mark.parametrize("package", LISTED, ids=[p.name for p in LISTED])
def test_every_package_imports_at_a_version_its_spec_allows(
    package: packages.Package, request: pytest.FixtureRequest
) -> None:
    where = "installed_in_batch_venv" if package.name in IN_BATCH_VENV else "installed_here"
    found = request.getfixturevalue(where)[package.name]
    assert found["error"] is None, f"import {package.module}: {found['error']}"
    assert package.specifier.contains(found["version"], prereleases=True), (
        f"{package.pypi} {found['version']} is outside the list's {package.spec}"
    )


def test_the_image_check_group_names_every_package_checked_here() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    group = pyproject.split("image-check = [", 1)[1].split("]", 1)[0]
    names = {
        re.split(r"[<>=!~ ]", line.strip().strip('",'))[0]
        for line in group.splitlines()
        if line.strip().startswith('"')
    }
    assert names == {p.pypi for p in LISTED if p.name not in IN_BATCH_VENV}
