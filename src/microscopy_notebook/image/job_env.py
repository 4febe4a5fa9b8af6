"""The thumbnail job's conda environment (the Snakefile's ``conda:`` file), generated from the
image's package list so that each bound is written once, there::

    python -m microscopy_notebook.image.job_env           # write it
    python -m microscopy_notebook.image.job_env --check   # fail if it differs from the list
    python -m microscopy_notebook.image.job_env --tasks   # what a Batch task runs, for pip

The environment is for ``--software-deployment-method conda`` on a machine that has conda but not
the image. On Google Batch the tasks run in the image itself, and locally the job runs in the
Python that starts Snakemake: neither builds it.
"""

from __future__ import annotations

import argparse
import sys
import tomllib

from microscopy_notebook.image import packages
from microscopy_notebook.paths import ROOT, WORKFLOW

ENV_FILE = WORKFLOW / "envs" / "thumbnail.yaml"

# What the job's rule scripts need, by the list's conda names: what they import, and what
# rosettasciio imports on its own for the job's formats (optional dependencies there).
JOB_PACKAGES = (
    "numpy",
    "pillow",  # all drawing and the PNG encoding
    "matplotlib-base",  # only its bundled DejaVu Sans font (thumbnails.canvas.load_font)
    "rosettasciio",  # the readers, called directly (thumbnails.signals)
    "tifffile",
    "h5py",
    "sparse",
    "dask-core",  # lazy reads of files over thumbnails.signals.LAZY_BYTES
    "zarr",  # HyperSpy's zipped .zspy files
    "scikit-image",  # rosettasciio's ASTAR .blo reader imports it
    "google-cloud-storage",
    "google-api-core",
    "google-auth",
    "requests",
    "pyyaml",
)

# What a Google Batch task runs in the image, beyond the job's libraries: Snakemake with its
# plugins (the task runs one job of the workflow), and hyperspy, which the first job's plot.py
# (book/examples/first-job) loads its file with. The tests' Batch stand-in installs these lines.
TASK_PACKAGES = (
    *JOB_PACKAGES,
    "snakemake",
    "snakemake-storage-plugin-gcs",
    "snakemake-executor-plugin-googlebatch",
    "hyperspy",
)

HEADER = """\
# GENERATED from image/packages.txt by `python -m microscopy_notebook.image.job_env`: change a
# package or a bound there, then run that command (the image tests fail until the two agree).
#
# The thumbnail job's software as a conda environment, for running the job with
# `--software-deployment-method conda` on a machine that has conda but not the image. On Google
# Batch every task runs in the image itself (the googlebatch profile's container, on
# Container-Optimized OS), so nothing builds this environment there; locally the job runs in the
# Python that starts Snakemake. The versions are the image's.
channels:
  - conda-forge
  - nodefaults  # conda-forge only: mixing channels mixes incompatible binary builds
dependencies:
"""


def job_packages() -> list[packages.Package]:
    """The list's lines for the job's packages, in the list's order."""
    listed = packages.load()
    missing = set(JOB_PACKAGES) - {p.name for p in listed}
    if missing:
        raise ValueError(f"the job needs what image/packages.txt lacks: {sorted(missing)}")
    return [p for p in listed if p.name in JOB_PACKAGES]


def render() -> str:
    """The environment file's text."""
    python = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    lines = [f"  - python {python}  # pyproject's requires-python: Snakemake 9 needs 3.11 or newer"]
    lines += [f"  - {p.match_spec}  # {p.purpose}" for p in job_packages()]
    return HEADER + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m microscopy_notebook.image.job_env", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    parser.add_argument("--tasks", action="store_true", help="print what a Batch task runs")
    args = parser.parse_args(argv)
    if args.tasks:
        listed = [p for p in packages.load() if p.name in TASK_PACKAGES]
        print("\n".join(packages.requirements(listed)))
        return 0
    text = render()
    if args.check:
        if ENV_FILE.read_text() != text:
            print(f"{ENV_FILE} differs from image/packages.txt: run {parser.prog}", file=sys.stderr)
            return 1
        return 0
    ENV_FILE.write_text(text)
    print(f"wrote {ENV_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
