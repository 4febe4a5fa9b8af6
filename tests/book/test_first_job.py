"""The first job's plot.py draws every kind of file HyperSpy reads: an image, a stack, a spectrum,
a spectrum image, a line scan, a 4D scan, a colour picture. Each is run as Snakemake runs a
``script:`` (a ``snakemake`` object with the rule's input and output), in one Python process, and
what it drew is read back from its matplotlib figure and its PNG."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from microscopy_notebook import format_samples
from microscopy_notebook.cloud import samples
from microscopy_notebook.paths import ROOT

PLOT = ROOT / "book" / "examples" / "first-job" / "plot.py"

RUN = r"""
import json, runpy, sys, types
import hyperspy.api as hs
import matplotlib.pyplot as plt
import numpy as np

plot, out = sys.argv[1], sys.argv[2]
for i, src in enumerate(sys.argv[3:]):
    png = f"{out}/{i}.png"
    plt.close("all")
    try:
        snakemake = types.SimpleNamespace(input=[src], output=[png])
        runpy.run_path(plot, init_globals={"snakemake": snakemake})
    except Exception as exc:
        print(json.dumps({"file": src, "error": f"{type(exc).__name__}: {exc}"}))
        continue
    ax = plt.gcf().axes[0]
    s = hs.load(src)
    s = s[0] if isinstance(s, list) else s
    if s.axes_manager.navigation_size > 1:
        s = s.sum()
    drawn = ax.images[0].get_array() if ax.images else ax.lines[0].get_ydata()
    expected = (
        np.stack([s.data[c] for c in "RGB"], axis=-1) if s.is_rgb else s.data
    )
    print(json.dumps({
        "file": src, "png": png, "title": ax.get_title(), "images": len(ax.images),
        "lines": len(ax.lines), "shape": list(np.shape(drawn)),
        "same": bool(np.allclose(np.asarray(drawn, float), np.asarray(expected, float))),
        "xlabel": ax.get_xlabel(),
    }))
"""

# file -> (what is drawn, the title's lines)
KINDS = {
    "image": ("dm3/multi_signal.dm3", "image", "HAADF"),
    "image stack": ("tia/64x64x5_TEM_preview_1.ser", "image", "sum of its 5 images"),
    "spectrum": ("eds/example1.msa", "line", "NIO EELS OK SHELL"),
    "spectrum image": ("dm4/EELS_SI.dm4", "line", "EELS_SI\nsum of its 4 spectra"),
    "line scan": ("dm4/MonoCL_linescan.dm4", "line", "sum of its 67 spectra"),
    "4D scan": ("astar/test1.blo", "image", "sum of its 6 images"),
    "colour picture": ("pictures/HAADF_inferno.png", "image", "HAADF_inferno.png"),
}


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    real, written = samples.files(), format_samples.files()
    paths = [
        real / name if (real / name).exists() else written / name for name, _, _ in KINDS.values()
    ]
    out = tmp_path_factory.mktemp("first-job")
    proc = subprocess.run(
        [sys.executable, "-c", RUN, str(PLOT), str(out), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return dict(zip(KINDS, results, strict=True))


@pytest.mark.parametrize("kind", KINDS)
def test_the_first_jobs_script_draws_every_kind(drawn: dict[str, dict], kind: str) -> None:
    _, what, title = KINDS[kind]
    result = drawn[kind]
    assert "error" not in result, result.get("error")
    assert (result["images"], result["lines"]) == ((1, 0) if what == "image" else (0, 1))
    assert result["same"], "the drawing is not the file's data (or its sum)"
    assert result["title"].endswith(title)
    if what == "line":  # the x axis says what it is, in its units
        assert result["xlabel"].endswith(")") and "(" in result["xlabel"]
    if kind == "colour picture":
        assert result["shape"][-1] == 3
    png = Image.open(result["png"])
    assert png.size == (500, 500)  # 5 x 5 inches at 100 dpi
    assert np.asarray(png.convert("L")).std() > 10  # something drawn
