"""The preview renderer on real microscope files (the samples, more from the hyperspy 1.7.6 wheel),
on generated large and 4D data, and on broken files. Outcomes are checked on the PNG's pixels."""

from __future__ import annotations

import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from microscopy_notebook.cloud import pinned
from tests.workflow.jobrun import write_4d_emd
from thumbnails import formats, preview, reduce, signals
from thumbnails.canvas import scalebar
from thumbnails.draw.fourd import fourd_sums
from thumbnails.draw.spectrum import spectrum_plot_spec

HEADER = 58  # rows of the title band; the data is drawn below it
LINE = (31, 95, 168)  # colour of the spectrum curve
METRES = {"nm": 1e-9, "µm": 1e-6, "mm": 1e-3, "m": 1.0}

# object name -> kind, title (from the file's metadata, else its name)
SAMPLES = {
    "dm3/multi_signal.dm3": ("image", "HAADF"),
    "dm3/EELS_spectrum.dm3": ("spectrum", "EELS Acquire"),
    "dm3/EDS_spectrum.dm3": ("spectrum", "EDS Spectrum"),
    "dm4/EELS_SI.dm4": ("spectrum-image", "EELS_SI"),
    "tia/128x128-TEM_search_1.ser": ("image", "128x128-TEM_search_1.ser"),
    "tia/64x64x5_TEM_preview_1.ser": ("image-stack", "64x64x5_TEM_preview_1.ser"),
    "sem/Zeiss_SEM_512pix.tif": ("image", "Zeiss_SEM_512pix.tif"),
    "sem/FEI_Helios_8bit.tif": ("image", "FEI_Helios_8bit.tif"),
    "eds/example1.msa": ("spectrum", "NIO EELS OK SHELL"),
}
# worked by hand: a quarter of the field of view, rounded down to 1, 2 or 5 x 10^n
SCALEBARS = {
    "dm3/multi_signal.dm3": "2 nm",  # 512 x 0.01775 nm = 9.09 nm
    "dm4/EELS_SI.dm4": "0.5 nm",  # 2 x 1.992 nm = 3.98 nm
    "tia/128x128-TEM_search_1.ser": "100 nm",  # 128 x 5.261 nm = 673 nm
    "tia/64x64x5_TEM_preview_1.ser": "100 nm",  # 64 x 6.282 nm = 402 nm
    "sem/Zeiss_SEM_512pix.tif": "1 µm",  # 512 x 11.65 nm = 5.96 µm
    "sem/FEI_Helios_8bit.tif": "200 µm",  # 512 x 3.372 µm = 1.73 mm
}
SPECTRUM_AXES = {
    "dm3/EELS_spectrum.dm3": "Energy loss (eV)",
    "dm3/EDS_spectrum.dm3": "Energy (keV)",
    "dm4/EELS_SI.dm4": "Energy loss (eV)",
    "eds/example1.msa": "Energy (eV)",
}
_IO = "hyperspy/tests/io/"


# --- helpers -------------------------------------------------------------------------------


def decode(png: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG"
    assert img.size == (preview.PREVIEW_SIZE, preview.PREVIEW_SIZE)
    img.load()
    return img


def grey(png: bytes) -> np.ndarray:
    return np.asarray(decode(png).convert("L")).astype(int)


def find_scalebars(g: np.ndarray) -> list[tuple[int, int, int]]:
    """(top row, first column, length) of every solid white bar 5 rows thick with black on its
    sides and below: the scalebars drawn."""
    found = []
    white, black = g == 255, g == 0
    for r in range(HEADER, g.shape[0] - 6):
        row = np.concatenate(([False], white[r], [False]))
        edges = np.flatnonzero(np.diff(row.astype(int)))
        for c0, c1 in zip(edges[::2], edges[1::2], strict=True):
            if c1 - c0 < 3 or c0 == 0 or c1 >= g.shape[1]:
                continue
            if (
                white[r : r + 5, c0:c1].all()
                and not white[r - 1, c0:c1].all()
                and black[r + 5, c0:c1].all()
                and black[r : r + 5, c0 - 1].all()
                and black[r : r + 5, c1].all()
            ):
                found.append((r, int(c0), int(c1 - c0)))
    return found


def image_width(g: np.ndarray) -> int:
    """Width of the image drawn below the title (the page around it is white)."""
    box = Image.fromarray((255 - g[HEADER:]).astype(np.uint8)).getbbox()
    assert box is not None
    return box[2] - box[0]


def label_metres(label: str) -> float:
    value, unit = label.split()
    return float(value) * METRES[unit]


def is_round(label: str) -> bool:
    mantissa = f"{float(label.split()[0]):e}".split("e")[0]
    return float(mantissa) in (1.0, 2.0, 5.0)


@pytest.fixture(scope="session")
def wheel_dir(tmp_path_factory: pytest.TempPathFactory):
    """More real files from the hyperspy 1.7.6 wheel, unpacked on demand to a temporary folder."""
    root = tmp_path_factory.mktemp("wheel")

    def get(member: str, inner: str | None = None) -> Path:
        dest = root / (inner or member.rsplit("/", 1)[-1])
        if inner is None:
            return pinned.member(pinned.HYPERSPY_SAMPLES, _IO + member, dest)
        if not dest.exists():
            with zipfile.ZipFile(pinned.wheel(pinned.HYPERSPY_SAMPLES)) as zf:
                packed = zipfile.ZipFile(io.BytesIO(zf.read(_IO + member)))
                dest.write_bytes(packed.read(inner))
        return dest

    return get


# --- the pure helpers ----------------------------------------------------------------------


def test_previewable_by_extension_any_case():
    for name in ("a/b.dm3", "a/b.DM4", "x_1.ser", "s.tif", "s.TIFF", "e.msa", "v.emd", "b.bcf"):
        assert formats.is_previewable(name), name
    for name in ("a/x.emi", "a/x.txt", "a/noextension", "a/x.dm3.part", "a/x.bmp"):
        assert not formats.is_previewable(name), name


def test_companion_names_pair_ser_with_emi():
    assert formats.companion_names("a/x_1.ser") == ["a/x.emi"]
    assert formats.companion_names("MockDataFiles/tia/64x64x5_TEM_preview_1.ser") == [
        "MockDataFiles/tia/64x64x5_TEM_preview.emi"
    ]
    assert formats.companion_names("a/scan_2_12.SER") == ["a/scan_2.EMI"]
    assert formats.companion_names("a/x.ser") == []  # not a TIA series name
    assert formats.companion_names("a/x.dm3") == []
    assert formats.companion_names("a/x.emi") == []


def test_scalebar_round_lengths_in_readable_units():
    bar = scalebar(0.5, "nm", 8192, 442)  # 4.1 µm wide field shown 442 px wide
    assert (bar.label, bar.units, bar.value) == ("1 µm", "µm", 1.0)
    assert bar.pixels == pytest.approx(1000 / 4096 * 442)
    assert scalebar(1.165e-8, "m", 512, 500).label == "1 µm"
    assert scalebar(0.05, "1 / nm", 64, 244).label == "0.5 nm⁻¹"
    assert scalebar(0.2, "mrad", 100, 400).label == "5 mrad"
    assert scalebar(0.0177, "nm", 512, 442).label == "2 nm"
    assert scalebar(1.0, "", 512, 442) is None  # uncalibrated
    assert scalebar(1.0, "pixels", 512, 442) is None
    assert scalebar(1.7e17, "nm", 256, 244) is None  # TIA diffraction without its .emi
    assert scalebar(float("nan"), "nm", 256, 244) is None


def test_spectrum_plot_spec_labels_in_file_units():
    eels = {"name": "Energy loss", "size": 2048, "scale": 0.5, "offset": -100.0, "units": "eV"}
    spec = spectrum_plot_spec(eels, {"Signal": {"quantity": "Counts"}})
    assert (spec.xlabel, spec.ylabel) == ("Energy loss (eV)", "Counts")
    assert (spec.x_min, spec.x_max) == (-100.0, 923.5)
    eds = {"name": "x", "size": 2048, "scale": 0.01, "offset": -0.2, "units": "keV"}
    spec = spectrum_plot_spec(eds)
    assert spec.xlabel == "Energy (keV)"
    assert spec.y_from == pytest.approx(0.15)  # the EDS noise peak is left out of the y range
    plain = {"name": "x", "size": 512, "scale": 1.0, "offset": 0.0, "units": ""}
    assert spectrum_plot_spec(plain).xlabel == "Channel"
    cl = {"name": "Wavelength", "size": 100, "scale": 0.5, "offset": 300.0, "units": "nm"}
    assert spectrum_plot_spec(cl).xlabel == "Wavelength (nm)"


def test_virtual_adf_follows_the_sample():
    """The virtual image leaves the central beam out: it maps what scatters outside it."""
    ny, nx, q = 12, 16, 32
    yy, xx = np.mgrid[0:q, 0:q]
    r = np.hypot(yy - 14, xx - 17)
    thickness = np.outer(np.linspace(0.2, 1, ny), np.linspace(1, 0.5, nx))
    data = (
        1000 * (r < 4) * (1 - 0.4 * thickness)[..., None, None]
        + 20 * thickness[..., None, None] * np.exp(-r / 8)
    ).astype(np.float32)
    pattern, image, what = fourd_sums(data, 1)
    assert what == "virtual ADF"
    assert image.shape == (ny, nx)
    assert np.corrcoef(image.ravel(), thickness.ravel())[0, 1] > 0.99
    assert np.unravel_index(pattern.argmax(), pattern.shape) == (14, 17)


# --- the samples ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_preview(sample_dir: Path, name: str):
    kind, title = SAMPLES[name]
    p = preview.make_preview(sample_dir / name, "MockDataFiles/" + name)
    assert p.ok, p.error
    assert p.error is None
    assert (p.kind, p.title) == (kind, title)
    assert p.signals >= 1
    assert p.shown.startswith(title)
    g = grey(p.png)
    assert g[HEADER:].std() > 5  # data drawn, not a blank page
    assert (g[:HEADER] < 128).sum() > 100  # the title is written


@pytest.mark.parametrize("name", SCALEBARS)
def test_scalebar_in_calibrated_units(sample_dir: Path, name: str):
    p = preview.make_preview(sample_dir / name, name)
    assert p.scalebar == SCALEBARS[name]
    assert is_round(p.scalebar)
    g = grey(p.png)
    bars = find_scalebars(g)
    assert len(bars) == 1, bars
    row, col, length = bars[0]
    label = g[row - 20 : row - 3, col : col + length]  # inside the black box, above the bar
    assert (label > 200).sum() > 10 and (label < 50).sum() > 10  # white text on black
    if p.kind == "image":  # the bar's share of the width is the length's share of the field
        axis = _x_axis(sample_dir / name)
        field = axis["scale"] * axis["size"] * METRES[axis["units"]]
        expected = label_metres(p.scalebar) / field * image_width(g)
        assert length == pytest.approx(expected, abs=1.5)


def _x_axis(path: Path) -> dict:
    """The image's x axis as rosettasciio reads it, units in metres' family."""
    reader = importlib.import_module(f"rsciio.{formats.READERS[path.suffix]}")
    axis = dict(reader.file_reader(str(path))[0]["axes"][-1])
    axis["scale"] = abs(float(axis["scale"]))
    axis["size"] = int(axis["size"])
    return axis


@pytest.mark.parametrize("name", SPECTRUM_AXES)
def test_spectrum_axis_names_the_calibrated_unit(sample_dir: Path, name: str):
    p = preview.make_preview(sample_dir / name, name)
    assert p.axis_label == SPECTRUM_AXES[name]
    # the same unit as the file's energy axis
    module = importlib.import_module(f"rsciio.{formats.READERS[Path(name).suffix]}")
    axes = module.file_reader(str(sample_dir / name))[0]["axes"]
    units = {a["units"] for a in axes if a["units"] in ("eV", "keV")}
    assert len(units) == 1
    assert f"({units.pop()})" in p.axis_label
    rgb = np.asarray(decode(p.png).convert("RGB"))
    assert (rgb == LINE).all(axis=-1).sum() > 50  # the curve is drawn


def test_multi_signal_file_shows_its_image(sample_dir: Path):
    p = preview.make_preview(sample_dir / "dm3/multi_signal.dm3")
    assert (p.signals, p.kind, p.title) == (2, "image", "HAADF")
    assert p.shown == "HAADF image (signal 1 of 2)"


def test_stack_is_a_montage_of_its_frames(sample_dir: Path):
    p = preview.make_preview(sample_dir / "tia/64x64x5_TEM_preview_1.ser")
    assert p.kind == "image-stack"
    assert "frames 1, 2, 3, 4, 5 of 5" in p.shown
    g = grey(p.png)
    # five tiles: columns of the middle row band that are not page white
    tiles = Image.fromarray((255 - g[HEADER:]).astype(np.uint8))
    assert tiles.getbbox() is not None
    rows_with_data = np.flatnonzero((g[HEADER:] < 250).any(axis=1))
    assert len(rows_with_data) > 250  # two rows of tiles


def test_spectrum_image_shows_navigator_and_sum_spectrum(sample_dir: Path):
    p = preview.make_preview(sample_dir / "dm4/EELS_SI.dm4")
    assert p.kind == "spectrum-image"
    assert "sum over energy loss and sum spectrum" in p.shown
    rgb = np.asarray(decode(p.png).convert("RGB"))
    assert (rgb[300:] == LINE).all(axis=-1).sum() > 50  # the spectrum, in the lower part


# --- more real formats from the wheel ------------------------------------------------------


def test_tia_4d_diffraction_scan(wheel_dir):
    wheel_dir("FEI_new/16x16-diffraction_imagel_5x5x256x256_EDS.emi")
    ser = wheel_dir("FEI_new/16x16-diffraction_imagel_5x5x256x256_EDS_2.ser")
    p = preview.make_preview(ser)
    assert p.ok, p.error
    assert p.kind == "4d"
    assert "mean diffraction pattern (log)" in p.shown
    assert len(find_scalebars(grey(p.png))) == 2  # 1/nm on the pattern, nm on the scan
    # its sibling in the same series: the EDS spectrum image
    p = preview.make_preview(wheel_dir("FEI_new/16x16-diffraction_imagel_5x5x256x256_EDS_1.ser"))
    assert (p.kind, p.axis_label) == ("spectrum-image", "Energy (eV)")


def test_ser_reads_its_emi_for_calibration(wheel_dir, tmp_path: Path):
    """Diffraction .ser files only have sane 1/nm calibrations with their .emi beside them."""
    emi = wheel_dir("FEI_new/128x128x5-diffraction_preview.emi")
    ser = wheel_dir("FEI_new/128x128x5-diffraction_preview_1.ser")
    with_emi = preview.make_preview(ser)
    assert with_emi.kind == "image-stack"
    assert with_emi.scalebar is not None and with_emi.scalebar.endswith("nm⁻¹")
    alone = tmp_path / ser.name
    shutil.copy(ser, alone)
    assert not (tmp_path / emi.name).exists()
    without = preview.make_preview(alone)
    assert without.ok and without.kind == "image-stack"
    assert without.scalebar is None  # ~1e8 m per pixel without it: no bar rather than a wrong one


def test_tia_linescan(wheel_dir):
    wheel_dir("FEI_old/16x16-line_profile_horizontal_10x1024.emi")
    p = preview.make_preview(wheel_dir("FEI_old/16x16-line_profile_horizontal_10x1024_1.ser"))
    assert (p.ok, p.kind, p.axis_label) == (True, "linescan", "Energy (eV)")


def test_dm_image_stack_and_cl_linescan(wheel_dir):
    p = preview.make_preview(wheel_dir("dm_stackbuilder_plugin/test_stackbuilder_imagestack.dm3"))
    assert (p.ok, p.kind, p.title) == (True, "image-stack", "stackbuilder_test4_16x2")
    p = preview.make_preview(wheel_dir("dm4_2D_data/test-MonoCL_spectrum-SI.dm4"))
    assert (p.ok, p.kind, p.axis_label) == (True, "linescan", "Wavelength (nm)")


def test_velox_emd_image(wheel_dir):
    p = preview.make_preview(wheel_dir("emd_files/fei_emd_files.zip", "fei_emd_image.emd"))
    assert (p.ok, p.kind, p.title) == (True, "image", "HAADF")
    assert p.scalebar is not None and p.scalebar.endswith("nm")
    assert len(find_scalebars(grey(p.png))) == 1


def test_velox_emd_spectrum_image_uses_its_haadf(wheel_dir):
    p = preview.make_preview(wheel_dir("emd_files/fei_emd_files.zip", "fei_emd_si.emd"))
    assert (p.ok, p.kind, p.signals) == (True, "spectrum-image", 2)
    assert "the HAADF image and sum spectrum" in p.shown
    assert p.axis_label == "X-ray energy (keV)"


def test_bruker_bcf_and_spx(wheel_dir):
    p = preview.make_preview(wheel_dir("bruker_data/P45_the_default_job.bcf"))
    assert (p.ok, p.kind, p.signals) == (True, "spectrum-image", 3)
    assert "the BSE image and sum spectrum" in p.shown
    assert p.axis_label == "Energy (keV)"
    p = preview.make_preview(wheel_dir("bruker_data/bruker_nano.spx"))
    assert (p.ok, p.kind, p.axis_label) == (True, "spectrum", "Energy (keV)")


# --- generated data: 4D and large ----------------------------------------------------------


def _write_4d(path: Path, ny: int = 24, nx: int = 32, q: int = 64) -> None:
    """A 4D-STEM scan as NCEM EMD (rosettasciio's writer): a central disk dimmed where the
    sample is thick, plus diffuse scattering growing with thickness."""
    yy, xx = np.mgrid[0:q, 0:q]
    r = np.hypot(yy - q / 2, xx - q / 2)
    thickness = 0.5 + 0.5 * np.outer(np.sin(np.arange(ny) / 4), np.cos(np.arange(nx) / 6))
    data = (
        1000 * (r < 6) * (1 - 0.5 * thickness)[..., None, None]
        + 30 * thickness[..., None, None] * np.exp(-r / 15)
    ).astype(np.float32)
    write_4d_emd(path, data)


def test_4d_read_lazily_within_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "scan.emd"
    _write_4d(path)
    p = preview.make_preview(path)
    assert (p.ok, p.kind, p.title) == (True, "4d", "4D-STEM scan")
    assert "virtual ADF" in p.shown and "1 in" not in p.shown
    # lazily, and reading at most 4 MiB of its 12 MiB: every other scan position each way
    monkeypatch.setattr(signals, "LAZY_BYTES", 0)
    monkeypatch.setattr(reduce, "READ_BUDGET", 4 * 2**20)
    sampled = preview.make_preview(path)
    assert sampled.ok, sampled.error
    assert "virtual ADF (1 in 2 scan positions each way)" in sampled.shown
    assert len(find_scalebars(grey(sampled.png))) == 2


def test_large_image_bounded_memory(tmp_path: Path, capsys: pytest.CaptureFixture):
    """8192 x 8192 float32 (256 MiB): read as a memory map, block-averaged band by band."""
    from rsciio.tiff import file_writer

    n = 8192
    source = np.lib.format.open_memmap(tmp_path / "src.npy", "w+", np.float32, (n, n))
    for r in range(0, n, 1024):  # written in bands so the test itself stays small
        y, x = np.mgrid[r : r + 1024, 0:n].astype(np.float32)
        source[r : r + 1024] = np.sin(x / 300) * np.cos(y / 500) * 1000
    axes = [
        dict(name="y", size=n, scale=0.5, offset=0.0, units="nm", navigate=False),
        dict(name="x", size=n, scale=0.5, offset=0.0, units="nm", navigate=False),
    ]
    path = tmp_path / "large.tif"
    file_writer(str(path), {"data": source, "axes": axes, "metadata": {}, "original_metadata": {}})
    del source
    os.remove(tmp_path / "src.npy")
    size = path.stat().st_size
    assert size > signals.LAZY_BYTES

    tracemalloc.start()
    try:
        start = time.perf_counter()
        p = preview.make_preview(path)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    with capsys.disabled():
        print(
            f"\n8192x8192 float32 TIFF ({size / 2**20:.0f} MiB): {elapsed * 1000:.0f} ms, "
            f"peak traced memory {peak / 2**20:.0f} MiB"
        )
    assert p.ok, p.error
    assert p.kind == "image"
    assert peak < size / 2  # a copy of the image would be the whole file size
    assert p.scalebar == "1 µm"  # 8192 x 0.5 nm = 4.1 µm
    g = grey(p.png)
    assert g[HEADER:].std() > 20
    ((row, col, length),) = find_scalebars(g)
    assert length == pytest.approx(1e-6 / (n * 0.5e-9) * image_width(g), abs=1.5)


# --- broken and unsupported files ----------------------------------------------------------


def _broken(sample_dir: Path, tmp_path: Path, case: str) -> Path:
    rng = np.random.default_rng(7)

    def head(name: str, n: int | None, as_name: str) -> Path:
        data = (sample_dir / name).read_bytes()
        out = tmp_path / as_name
        out.write_bytes(data[: len(data) // 2] if n is None else data[:n])
        return out

    makers = {
        "empty.dm3": lambda: tmp_path.joinpath("empty.dm3").write_bytes(b""),
        "dm3 first KiB": lambda: head("dm3/multi_signal.dm3", 1024, "cut.dm3"),
        "dm3 half": lambda: head("dm3/multi_signal.dm3", None, "cut.dm3"),
        "dm4 half": lambda: head("dm4/EELS_SI.dm4", None, "cut.dm4"),
        "ser first KiB": lambda: head("tia/128x128-TEM_search_1.ser", 1024, "cut_1.ser"),
        "ser half": lambda: head("tia/128x128-TEM_search_1.ser", None, "cut_1.ser"),
        "tif half": lambda: head("sem/Zeiss_SEM_512pix.tif", None, "cut.tif"),
        "msa half": lambda: head("eds/example1.msa", None, "cut.msa"),
        "random.dm3": lambda: tmp_path.joinpath("random.dm3").write_bytes(rng.bytes(4096)),
        "random.dm4": lambda: tmp_path.joinpath("random.dm4").write_bytes(rng.bytes(4096)),
        "random_1.ser": lambda: tmp_path.joinpath("random_1.ser").write_bytes(rng.bytes(4096)),
        "text.tif": lambda: tmp_path.joinpath("text.tif").write_text("not an image\n" * 40),
        "notes.xyz": lambda: tmp_path.joinpath("notes.xyz").write_text("hello"),
        "only.emi": lambda: shutil.copy(
            sample_dir / "tia/128x128-TEM_search.emi", tmp_path / "only.emi"
        ),
    }
    made = makers[case]()
    return Path(made) if isinstance(made, str | Path) else tmp_path / case


BROKEN = {  # case -> what the reason must say
    "empty.dm3": "empty file (0 bytes)",
    "dm3 first KiB": "truncated (has 1024 of 689992 bytes)",
    "dm3 half": "truncated (has 344996 of 689992 bytes)",
    "dm4 half": "truncated",
    "ser first KiB": "truncated",
    "ser half": "truncated",
    "tif half": "truncated",
    "msa half": "truncated",
    "random.dm3": "not a DigitalMicrograph file",
    "random.dm4": "not a DigitalMicrograph file",
    "random_1.ser": "not a TIA .ser file",
    "text.tif": "not a TIFF file",
    "notes.xyz": "unsupported file type '.xyz'",
    "only.emi": "unsupported file type '.emi'",
}


@pytest.mark.parametrize("case", BROKEN)
def test_broken_file_gets_a_placeholder_saying_why(sample_dir: Path, tmp_path: Path, case: str):
    path = _broken(sample_dir, tmp_path, case)
    name = f"MockDataFiles/bad/{path.name}"
    p = preview.make_preview(path, name)
    assert not p.ok
    assert p.kind == "placeholder"
    assert BROKEN[case] in p.error
    assert "\n" not in p.error
    assert p.title
    g = grey(p.png)
    assert g.std() > 5  # the placeholder says so in words
    if case != "empty.dm3" and "unsupported" not in p.error:
        assert p.error.startswith("unreadable")


def test_ser_without_its_emi_still_previews(sample_dir: Path, tmp_path: Path):
    for name in ("tia/128x128-TEM_search_1.ser", "tia/64x64x5_TEM_preview_1.ser"):
        alone = tmp_path / Path(name).name
        shutil.copy(sample_dir / name, alone)
        p = preview.make_preview(alone)
        assert p.ok, p.error
        assert p.kind == SAMPLES[name][0]


def test_damaged_and_missing_files_never_raise(sample_dir: Path, tmp_path: Path):
    data = bytearray((sample_dir / "dm3/multi_signal.dm3").read_bytes())
    rng = np.random.default_rng(3)
    for start in (16, 2000, 40000, 300000, len(data) - 5000):  # tags, data, trailing tags
        damaged = bytearray(data)
        damaged[start : start + 4096] = rng.bytes(4096)
        path = tmp_path / f"damaged_{start}.dm3"
        path.write_bytes(bytes(damaged))
        p = preview.make_preview(path)
        decode(p.png)
        assert p.ok or p.error.startswith("unreadable")
    p = preview.make_preview(tmp_path / "missing.dm3")
    assert not p.ok and p.error.startswith("unreadable")


# --- timings (printed, not asserted) -------------------------------------------------------


def test_render_times(sample_dir: Path, capsys: pytest.CaptureFixture):
    rows = []
    for name in SAMPLES:
        preview.make_preview(sample_dir / name)  # readers imported, fonts loaded
        times = []
        for _ in range(5):
            start = time.perf_counter()
            p = preview.make_preview(sample_dir / name)
            times.append((time.perf_counter() - start) * 1000)
        assert p.ok
        rows.append(
            f"  {name:34s} {p.kind:15s} {min(times):6.1f} ms (median {sorted(times)[2]:.1f})"
        )
    with capsys.disabled():
        print("\npreview render times, per file:\n" + "\n".join(rows))


# -- start-up: a batch imports what its files need ------------------------------------------------
EAGER_ONLY = """
import json, sys
from pathlib import Path
from thumbnails.preview import make_preview
for path in sys.argv[1:]:
    p = make_preview(Path(path))
    assert p.ok, (path, p.error)
print(json.dumps(sorted(m for m in ("dask", "dask.array", "sparse", "numba") if m in sys.modules)))
"""


def test_files_read_whole_import_no_dask_sparse_or_numba(sample_dir: Path) -> None:
    """The DigitalMicrograph reader imports dask.array (and sparse, numba) for its lazy mode;
    small files are read whole, so a fresh batch process of them never pays for that import."""
    files = [
        str(sample_dir / s)
        for s in (
            "dm3/multi_signal.dm3",
            "dm4/EELS_SI.dm4",
            "sem/Zeiss_SEM_512pix.tif",
            "eds/example1.msa",
            "tia/128x128-TEM_search_1.ser",
        )
    ]
    proc = subprocess.run(
        [sys.executable, "-c", EAGER_ONLY, *files], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == []


WHOLE_THEN_LAZY = """
import json, sys
from pathlib import Path
from thumbnails import signals
from thumbnails.preview import make_preview
whole = make_preview(Path(sys.argv[1]))
before = "dask.array" in sys.modules
signals.LAZY_BYTES = 0
lazily = make_preview(Path(sys.argv[1]))
print(json.dumps({"same": lazily.ok and lazily.png == whole.png, "dask_before": before,
                  "dask_after": "dask.array" in sys.modules,
                  "real": hasattr(sys.modules["rsciio.utils._distributed"], "__file__")}))
"""


def test_a_lazy_dm_read_still_gets_the_real_memmap_distributed(sample_dir: Path) -> None:
    """Above LAZY_BYTES the same reader reads lazily: the stand-in hands over to rosettasciio's
    own function (dask and all), and the preview is the one the whole read made."""
    proc = subprocess.run(
        [sys.executable, "-c", WHOLE_THEN_LAZY, str(sample_dir / "dm4" / "EELS_SI.dm4")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {
        "same": True,
        "dask_before": False,
        "dask_after": True,
        "real": True,
    }


# -- big files, made small: what the header says decides how a file is read -------------------
UNDER_A_LIMIT = """
import json, resource, sys
from pathlib import Path
from thumbnails.preview import make_preview
make_preview(Path(sys.argv[1]))  # imports (dask's hang under a limit) paid before it
with open("/proc/self/status") as status:
    data = next(int(line.split()[1]) for line in status if line.startswith("VmData:")) * 1024
limit = data + int(sys.argv[2]) * 2**20
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
p = make_preview(Path(sys.argv[1]))
print(json.dumps({"ok": p.ok, "kind": p.kind, "error": p.error, "png": len(p.png)}))
"""


def _deflate_tiff(path: Path, n: int, rows_per_strip: int | None = None) -> np.ndarray:
    """An n x n uint16 image, deflate-compressed: a few MB of file that decodes to 2n² bytes."""
    import tifffile

    y, x = np.mgrid[0:n, 0:n]
    image = (1000 + 500 * np.sin(x / 50) * np.cos(y / 70)).astype(np.uint16)
    tifffile.imwrite(path, image, compression="zlib", rowsperstrip=rows_per_strip or 64)
    return image


def test_a_compressed_tiff_decoding_past_the_memory_limit_is_read_in_strips(
    tmp_path: Path,
) -> None:
    """A file much smaller than what it decodes to is read strip by strip into the reduced
    image: under a real limit of 64 MiB more than the process holds, a TIFF decoding to 128 MiB
    previews (read whole, it would fail, or be killed where the limit is a container's)."""
    path = tmp_path / "deflate.tif"
    _deflate_tiff(path, 8192)
    assert path.stat().st_size < 32 * 2**20 < 128 * 2**20  # smaller than the limit; decoded not
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            UNDER_A_LIMIT,
            str(path),
            "64",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert (result["ok"], result["kind"], result["error"]) == (True, "image", None)


def test_a_strip_larger_than_the_budget_gets_a_placeholder_saying_so(tmp_path: Path) -> None:
    path = tmp_path / "one-strip.tif"
    _deflate_tiff(path, 2048, rows_per_strip=2048)  # 8 MiB decoded, all in one strip
    p = preview.make_preview(path, budget=4 * 2**20)
    assert not p.ok and p.kind == "placeholder"
    assert p.error == (
        "too large to preview: decodes to 8 MiB, more than the 4 MiB a preview may hold, "
        "and its pieces decode to 8 MiB each"
    )
    assert preview.make_preview(path, budget=16 * 2**20).ok  # within a larger one


def test_read_in_strips_the_image_is_the_one_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "strips.tif"
    _deflate_tiff(path, 2048, rows_per_strip=37)  # strips that end inside the blocks averaged
    whole = preview.make_preview(path)
    strips = preview.make_preview(path, budget=2**20)
    assert whole.ok and strips.ok
    assert np.abs(grey(whole.png) - grey(strips.png)).max() <= 1


def test_a_format_read_only_whole_gets_a_placeholder_over_the_budget(
    sample_dir: Path, tmp_path: Path
) -> None:
    shutil.copy(sample_dir / "tia/64x64x5_TEM_preview_1.ser", tmp_path / "stack_1.ser")
    p = preview.make_preview(tmp_path / "stack_1.ser", budget=16 * 2**10)  # 5 x 64² float32
    assert not p.ok
    assert p.error.startswith("too large to preview: decodes to 80.4 KiB, more than the 16 KiB")
    assert "TIA files are read whole" in p.error


def _same_data_in_two_layouts(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    from microscopy_notebook.bench.dm4 import write_dm4

    rng = np.random.default_rng(5)
    ny, nx, q = 20, 28, 48
    yy, xx = np.mgrid[0:q, 0:q]
    r = np.hypot(yy - 20, xx - 26)
    t = rng.random((ny, nx)).astype(np.float32)
    data = 1000 * (r < 5) * (1 - 0.5 * t)[..., None, None] + 40 * t[..., None, None] * np.exp(
        -r / 9
    )
    data = data.astype(np.uint16)
    emd, dm4 = tmp_path / "transposed.emd", tmp_path / "positions.dm4"
    write_4d_emd(emd, data)
    cal = [(0.0, 0.5, "nm"), (0.0, 0.5, "nm"), (0.0, 0.05, "1/nm"), (0.0, 0.05, "1/nm")]
    write_dm4(dm4, data.shape, "<u2", [data], cal, "4D-STEM scan")
    return emd, dm4, data


def test_4d_stored_transposed_is_read_in_the_order_it_lies_and_drawn_the_same(
    tmp_path: Path,
) -> None:
    """RosettaSciIO's EMD holds a 4D scan with its axes reversed (detector pixel by detector
    pixel); a .dm4 holds it position by position. Read in pieces in each file's own order, both
    give the preview the data gives in memory."""
    emd, dm4, data = _same_data_in_two_layouts(tmp_path)
    in_memory = preview.make_preview(emd)  # small: read whole
    budget = data.nbytes // 2  # pieces of at most an eighth (but one chunk): several a file
    previews = [preview.make_preview(p, budget=budget) for p in (emd, dm4)]
    for p in (in_memory, *previews):
        assert (p.ok, p.kind) == (True, "4d"), p.error
        assert "virtual ADF" in p.shown
    for p in previews:
        assert np.abs(grey(p.png)[HEADER:] - grey(in_memory.png)[HEADER:]).max() <= 1


def test_an_energy_plane_by_plane_spectrum_image_is_read_in_pieces(tmp_path: Path) -> None:
    from microscopy_notebook.bench.dm4 import write_dm4

    rng = np.random.default_rng(6)
    si = rng.random((2048, 12, 16), dtype=np.float32) + np.linspace(5, 1, 2048)[:, None, None]
    path = tmp_path / "si.dm4"
    cal = [(0.0, 0.5, "eV"), (0.0, 2.0, "nm"), (0.0, 2.0, "nm")]
    write_dm4(
        path, si.shape, "<f4", [si], cal, "EELS SI", {"Format": "Spectrum image", "Signal": "EELS"}
    )
    whole = preview.make_preview(path)
    pieces = preview.make_preview(path, budget=si.nbytes // 4)
    assert (whole.ok, whole.kind, pieces.ok, pieces.kind) == (True, "spectrum-image") * 2
    assert np.abs(grey(whole.png) - grey(pieces.png)).max() <= 1


# -- truncated, lying and mismatched-case files: reasons that say what is wrong ----------------


def _data_offset(path: Path) -> int:
    from rsciio.digitalmicrograph._api import DigitalMicrographReader

    with path.open("rb") as fh:
        dm = DigitalMicrographReader(fh)
        dm.parse_file()
        return dm.get_image_dictionaries()[0]["ImageData"]["Data"]["offset"]


def test_a_dm3_whose_data_count_is_impossible_says_so(sample_dir: Path, tmp_path: Path) -> None:
    data = bytearray((sample_dir / "dm3/multi_signal.dm3").read_bytes())
    at = _data_offset(sample_dir / "dm3/multi_signal.dm3")
    data[at - 4 : at] = (2**31 - 1).to_bytes(4, "big")  # the array's count, just before it
    path = tmp_path / "lying.dm3"
    path.write_bytes(bytes(data))
    p = preview.make_preview(path)
    assert not p.ok
    assert p.error.startswith("unreadable: its header claims more data than the file holds")
    assert f"the file has {len(data)} bytes" in p.error


def test_a_truncated_large_tiff_says_it_is_truncated(tmp_path: Path) -> None:
    import tifffile

    image = np.arange(1024 * 1024, dtype=np.float32).reshape(1024, 1024)
    whole = tmp_path / "whole.tif"
    tifffile.imwrite(whole, image)  # uncompressed: its data in one run, as it lies
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole.read_bytes()[: 2 * 2**20])
    p = preview.make_preview(cut, budget=2**20)  # read in pieces, as a large one is
    assert not p.ok
    assert p.error.startswith(f"unreadable: file is truncated (has {2 * 2**20} of ")


def test_a_truncated_hdf5_file_says_it_is_truncated(tmp_path: Path) -> None:
    whole = tmp_path / "whole.emd"
    _write_4d(whole)
    data = whole.read_bytes()
    cut = tmp_path / "cut.emd"
    cut.write_bytes(data[: len(data) // 2])
    p = preview.make_preview(cut)
    assert not p.ok
    assert p.error == f"unreadable: file is truncated (has {len(data) // 2} of {len(data)} bytes)"


def test_a_ser_reads_an_emi_of_other_case_beside_it(wheel_dir, tmp_path: Path) -> None:
    emi = wheel_dir("FEI_new/128x128x5-diffraction_preview.emi")
    ser = wheel_dir("FEI_new/128x128x5-diffraction_preview_1.ser")
    shutil.copy(ser, tmp_path / ser.name)
    shutil.copy(emi, tmp_path / (emi.stem + ".EMI"))
    p = preview.make_preview(tmp_path / ser.name)
    assert p.ok and p.kind == "image-stack"
    assert p.scalebar is not None and p.scalebar.endswith("nm⁻¹")  # calibrated by the .EMI
    assert formats.companion_names("a/x_1.ser", {"a/x.EMI"}) == ["a/x.EMI"]
    assert formats.companion_names("a/x_1.SER", {"a/x.emi"}) == ["a/x.emi"]
    assert formats.companion_names("a/x_1.ser", set()) == ["a/x.emi"]  # missing: as it is named
