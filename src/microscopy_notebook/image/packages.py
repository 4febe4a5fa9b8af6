"""The image's package list, ``image/packages.txt``, read in one place.

The Dockerfile installs the list; nox installs it, by PyPI name (`requirements`, printed by
``python -m microscopy_notebook.image.packages``), into every environment that stands for the
image: the book's build, the tests, the Batch stand-in's tasks. The book's package table
(`microscopy_notebook.book.package_table`) and the job's conda file
(`microscopy_notebook.image.job_env`) are generated from it, and ``nox -s image`` checks it inside
the built image. Where a conda-forge name differs from the PyPI name or from the module to import,
the two tables below say so; nothing else in the project keeps such a mapping.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.specifiers import SpecifierSet

from microscopy_notebook.paths import ROOT

PACKAGE_LIST = ROOT / "image" / "packages.txt"

# conda-forge name -> PyPI name, where they differ.
PYPI_NAMES = {
    "dask-core": "dask",  # conda-forge's dask-core is PyPI's plain dask (no distributed extras)
    "matplotlib-base": "matplotlib",  # conda-forge splits the Qt backend off; PyPI does not
    "pytables": "tables",
}

# conda-forge name -> the module that proves the package is there, where it is not the name with
# "-" turned into "_".
IMPORT_NAMES = {
    "dask-core": "dask",
    "google-api-core": "google.api_core",
    "google-auth": "google.auth",
    "google-cloud-storage": "google.cloud.storage",
    "matplotlib-base": "matplotlib",
    "pillow": "PIL",
    "pytables": "tables",
    "pyyaml": "yaml",
    "rosettasciio": "rsciio",
    "scikit-image": "skimage",
    "scikit-learn": "sklearn",
}

_LINE = re.compile(
    r"^(?:(?P<channel>[A-Za-z0-9_.-]+)::)?(?P<name>[a-z0-9][a-z0-9._-]*)"
    r"(?:\s+(?P<spec>[^#]*?))?\s*(?:#\s*(?P<purpose>.*))?$"
)
_CLAUSE = re.compile(r"^(?P<op>==|!=|>=|<=|~=|>|<|=)?(?P<version>[0-9][0-9A-Za-z.*+!_-]*)$")


@dataclass(frozen=True)
class Package:
    """One line of the list."""

    name: str  # the conda name
    spec: str  # the conda version spec, "" for any version
    purpose: str
    channel: str = "conda-forge"
    line: int = 0

    @property
    def pypi(self) -> str:
        return PYPI_NAMES.get(self.name, self.name)

    @property
    def module(self) -> str:
        return IMPORT_NAMES.get(self.name, self.name.replace("-", "_"))

    @property
    def specifier(self) -> SpecifierSet:
        """The version spec in Python's packaging terms, to compare an installed version with."""
        return conda_to_pep440(self.spec)

    @property
    def match_spec(self) -> str:
        """The line as conda/mamba reads it."""
        name = self.name if self.channel == "conda-forge" else f"{self.channel}::{self.name}"
        return f"{name} {self.spec}".strip()


def conda_to_pep440(spec: str) -> SpecifierSet:
    """``>=2.3,<3`` stays; conda's fuzzy ``=1.2`` and ``1.2.*`` become ``==1.2.*``.

    A bare version (``1.2``, which conda reads as 1.2.*, but looks exact), ``|`` (or) and build
    strings are refused: the list keeps to what reads the same in both worlds.
    """
    spec = spec.replace(" ", "")
    if not spec or spec == "*":
        return SpecifierSet()
    clauses = []
    for clause in spec.split(","):
        match = _CLAUSE.match(clause)
        if match is None or "|" in clause:
            raise ValueError(f"not a version spec this list allows: {clause!r} in {spec!r}")
        op, version = match["op"], match["version"]
        if op is None and not version.endswith(".*"):
            raise ValueError(f"write ={version} (fuzzy) or =={version} (exact), not {version!r}")
        if op in (None, "="):
            op = "=="
            version = version if version.endswith(".*") else version + ".*"
        elif version.endswith(".*") and op not in ("==", "!="):
            raise ValueError(f"a wildcard only goes with == or !=: {clause!r}")
        clauses.append(op + version)
    return SpecifierSet(",".join(clauses))


def parse(text: str) -> list[Package]:
    """Every package line of the list's text; a line that is not one raises ValueError."""
    packages = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise ValueError(f"line {number}: not '[channel::]name spec  # purpose': {raw!r}")
        if not match["purpose"]:
            raise ValueError(f"line {number}: say what {match['name']} is for after '#'")
        package = Package(
            name=match["name"],
            spec=(match["spec"] or "").replace(" ", ""),
            purpose=match["purpose"].strip(),
            channel=match["channel"] or "conda-forge",
            line=number,
        )
        conda_to_pep440(package.spec)  # refuse a spec the tests could not compare
        packages.append(package)
    names = [p.name for p in packages]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"listed more than once: {', '.join(duplicates)}")
    return packages


def load(path: Path = PACKAGE_LIST) -> list[Package]:
    """The image's packages, in the list's order."""
    return parse(path.read_text(encoding="utf-8"))


def by_module(packages: list[Package]) -> dict[str, Package]:
    """Module name -> package, for telling which package an ``import`` needs."""
    return {p.module: p for p in packages}


def requirements(listed: list[Package]) -> list[str]:
    """The packages as pip and uv read them: PyPI names with the list's bounds."""
    return [f"{p.pypi}{p.specifier}" for p in listed]


def main(names: list[str]) -> int:
    """Print the requirements, of the named packages (conda names) or of the whole list."""
    listed = load()
    if names:
        unknown = sorted(set(names) - {p.name for p in listed})
        if unknown:
            print(f"not in {PACKAGE_LIST}: {', '.join(unknown)}", file=sys.stderr)
            return 1
        listed = [p for p in listed if p.name in names]
    print("\n".join(requirements(listed)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
