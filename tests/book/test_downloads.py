"""pytest-notebook on what readers download: each notebook page's .ipynb reproduces the page.

Every notebook page offers its notebook as ``_sources/<page>.ipynb`` (test_browser.py checks the
button and that its code is the page's). It has no outputs; `page_outputs.shown` puts into it
the outputs its page shows (from the build's run, checked against the page's HTML). pytest-
notebook's `NBRegressionFixture` executes that notebook afresh against a freshly seeded storage
emulator and diffs the fresh outputs with the page's, after the normalisations in `VOLATILE`
(its ``diff_replace``), each for a part that differs from run to run by nature; a difference
planted beside each normalised part fails.

The downloads run from ``book/notebooks`` of a clone of the repository: the thumbnail tutorial
runs the repository's workflow (``../../workflow``), as its page says, like a launched copy.
"""

from __future__ import annotations

import copy
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from pytest_notebook.diffing import diff_notebooks, filter_diff
from pytest_notebook.nb_regression import NBRegressionError, NBRegressionFixture
from pytest_notebook.notebook import regex_replace_nb
from pytest_notebook.post_processors import coalesce_streams

from tests.book import jupyterlab, page_outputs
from tests.book.test_browser import CONFIG, NOTEBOOKS

pytestmark = pytest.mark.slow  # runs every tutorial, the thumbnail job included

OUTPUTS = "/cells/*/outputs"

# (where, what, replaced by): pytest-notebook's diff_replace, applied to both sides.
VOLATILE = (
    # Scratch folders come from tempfile.mkdtemp: a new random name at every run.
    (OUTPUTS, r"(?:/[^\s/]+)*/(storage-demo|thumbnail-job)-[A-Za-z0-9_]{8}", r"<TMP>/\1"),
    # The storage tutorial uploads under a folder named after the run's time and a random id,
    # so that it never meets an object of an earlier run; Cloud Storage numbers each upload's
    # generation anew.
    (OUTPUTS, r"uploads/\d{8}-\d{6}-[0-9a-f]{6}/", "uploads/<RUN>/"),
    (OUTPUTS, r"generation \d+", "generation <GENERATION>"),
    # `gcloud storage ls -l` prints each object's creation time: the upload of this run.
    (OUTPUTS, r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<CREATED>"),
    # Transfer and rendering speeds, and durations, depend on the machine and its load.
    (OUTPUTS, r"Average throughput: [\d.]+\s*[KMGT]?i?B/s", "Average throughput: <RATE>"),
    (OUTPUTS, r"[\d.]+ files/s", "<RATE> files/s"),
    (OUTPUTS, r"Elapsed time: [\d:.]+", "Elapsed time: <DURATION>"),
    (OUTPUTS, r"'render_seconds': [\d.]+", "'render_seconds': <SECONDS>"),
    # The job's peak memory varies with what the allocator kept between files.
    (OUTPUTS, r"'peak_memory_mib': \d+", "'peak_memory_mib': <MIB>"),
    # Snakemake stamps each step with the wall clock, and names its log after it.
    (OUTPUTS, r"\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\]", "[<TIME>]"),
    (OUTPUTS, r"\d{4}-\d\d-\d\dT\d{6}\.\d+\.snakemake\.log", "<TIME>.snakemake.log"),
)
# pytest-notebook's diff_ignore: images, tables and every other output are compared as they are.
IGNORED = (
    "/cells/*/outputs/*/traceback",  # pytest-notebook's default; a passing run has none
    # Not an output: the kernel's language details, which a run writes into the notebook. The
    # download has them when the build ran the notebook, not when its outputs came from the
    # build's cache (a rebuild after a change of text only).
    "/metadata/language_info",
)


@pytest.fixture(scope="module")
def storage() -> Iterator[dict[str, str]]:
    with jupyterlab.seeded_emulator() as emu:
        yield emu.env


@pytest.fixture(scope="module")
def regression(
    storage: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> NBRegressionFixture:
    clone = jupyterlab.clone(tmp_path_factory.mktemp("reader"), CONFIG["repository"]["branch"])
    scratch = tmp_path_factory.mktemp("scratch")
    return NBRegressionFixture(
        exec_cwd=str(clone / "book" / "notebooks"),
        # The storage emulator's settings, and the notebooks' scratch folders where the test
        # run removes them.
        # The kernel's own environment first on PATH, as in the image: a cell's `!snakemake`.
        exec_env={
            **storage,
            "TMPDIR": str(scratch),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        },
        exec_timeout=300,
        diff_replace=VOLATILE,
        diff_ignore=IGNORED,
        diff_use_color=False,
    )


def _expected(notebook: str) -> nbformat.NotebookNode:
    """The downloaded notebook, with the outputs its page shows in its code cells."""
    # The build keeps a stream in the chunks it was printed in (myst-nb's merge_streams is
    # off); pytest-notebook joins a fresh run's chunks (its coalesce_streams post-processor,
    # which also applies the carriage returns of progress lines). Joined alike on both sides.
    expected, _ = coalesce_streams(page_outputs.shown(notebook), {})
    return expected


@dataclass
class Checked:
    expected: nbformat.NotebookNode
    fresh: nbformat.NotebookNode
    diff: str
    differs: bool


@pytest.fixture(scope="module")
def check(
    regression: NBRegressionFixture, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Checked]:
    """Each download executed once by pytest-notebook (its ``check``), the result kept."""
    done: dict[str, Checked] = {}
    folder = tmp_path_factory.mktemp("downloads")

    def run(notebook: str) -> Checked:
        if notebook not in done:
            expected = _expected(notebook)
            path = folder / f"{Path(notebook).name}.ipynb"
            nbformat.write(expected, path)
            result = regression.check(str(path), raise_errors=False)
            done[notebook] = Checked(
                expected, result.nb_final, result.diff_string, bool(result.diff_filtered)
            )
        return done[notebook]

    return run


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_the_download_reproduces_the_page(check: Callable[[str], Checked], notebook: str) -> None:
    checked = check(notebook)
    assert not checked.differs, f"{notebook}: fresh outputs differ from the page's\n{checked.diff}"


# --- a difference that is not volatile fails -----------------------------------------------------
def _differs(
    regression: NBRegressionFixture, expected: nbformat.NotebookNode, fresh: nbformat.NotebookNode
) -> bool:
    """pytest-notebook's comparison of ``check``, with the fixture's settings, without a rerun."""
    replace = list(regression.diff_replace)
    diff = diff_notebooks(regex_replace_nb(expected, replace), regex_replace_nb(fresh, replace))
    return bool(filter_diff(diff, set(regression.diff_ignore)))


def _plant(expected: nbformat.NotebookNode, old: str, new: str) -> nbformat.NotebookNode:
    planted = copy.deepcopy(expected)
    hits = 0
    for cell in planted.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream" and old in output.text:
                output.text = output.text.replace(old, new)
                hits += 1
    assert hits, f"nothing to plant: {old!r} is in no output"
    return planted


# Each planted change sits on a line that is also normalised, so the normalisation is shown to
# hide only what it names.
PLANTS = {
    # the size, beside the upload's generation
    "notebooks/cloud-storage": ("689992 bytes, generation <", "689993 bytes, generation <"),
    "notebooks/thumbnail-job": ("files, 0 failed, <RATE>", "files, 1 failed, <RATE>"),  # a rate
}


@pytest.mark.parametrize("notebook", sorted(PLANTS))
def test_a_planted_difference_beside_a_volatile_part_fails(
    regression: NBRegressionFixture, check: Callable[[str], Checked], notebook: str
) -> None:
    checked = check(notebook)
    assert not _differs(regression, checked.expected, checked.fresh)  # as the test above found
    old, new = PLANTS[notebook]
    # The planted text is in the normalised form: plant it into the normalised expectation.
    normalised = regex_replace_nb(checked.expected, list(regression.diff_replace))
    planted = _plant(normalised, old, new)
    assert _differs(regression, planted, checked.fresh)


def test_a_planted_difference_fails_the_check(
    regression: NBRegressionFixture, tmp_path: Path
) -> None:
    """End to end, through pytest-notebook's own ``check``: one changed figure on the page."""
    notebook = "notebooks/scaling"
    expected = _expected(notebook)
    texts = [
        o for c in expected.cells for o in c.get("outputs", []) if "text/plain" in o.get("data", {})
    ]
    assert texts, "the scaling page shows no table"
    table = texts[0].data["text/plain"]
    number = re.search(r"\b\d{3,}\b", table).group()
    texts[0].data["text/plain"] = table.replace(number, str(int(number) + 1), 1)
    path = tmp_path / "scaling.ipynb"
    nbformat.write(expected, path)
    with pytest.raises(NBRegressionError, match=str(int(number) + 1)):
        regression.check(str(path))
