"""Every format of the job's table (``thumbnails.formats.FORMATS``) on a sample of it: real files
from the pinned wheel, the rest written from real data by the format's own writer
(``microscopy_notebook.format_samples``). Then what is particular to the new ones: pictures keep
their colours and are decoded small, a Merlin .mib reads its .hdr, truncated and mislabelled files
get a placeholder saying so."""

from __future__ import annotations

import io
import shutil
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from microscopy_notebook import format_samples
from thumbnails import formats, preview, signals

HEADER = 58  # rows of the title band

# extension of the row -> what the job draws of its sample, and what the drawing says it is
EXPECTED = {
    ".dm3": ("image", "HAADF image (signal 1 of 2)"),
    ".ser": ("image-stack", "image stack: frames 1, 2, 3, 4, 5 of 5"),
    ".tif": ("image", "image"),
    ".msa": ("spectrum", "spectrum"),
    ".emd": ("spectrum-image", "the HAADF image and sum spectrum"),
    ".bcf": ("spectrum-image", "the BSE image and sum spectrum"),
    ".spx": ("spectrum", "spectrum"),
    ".spc": ("spectrum", "EDS Spectrum spectrum"),
    ".mrc": ("image-stack", "image stack: frames 1, 2, 3, 4, 5 of 5"),
    ".hspy": ("image", "Diffraction pattern image"),
    ".zspy": ("linescan", "CL line scan line scan"),
    ".mib": ("4d", "mean diffraction pattern (log) and virtual ADF"),
    ".blo": ("4d", "mean diffraction pattern (log) and virtual ADF"),
    ".prz": ("image", "image"),
    ".png": ("image", "colour image"),
    ".jpg": ("image", "image"),
}


@pytest.fixture(scope="module")
def format_dir() -> Path:
    return format_samples.files()


def grey(png: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(png))
    assert (img.format, img.size) == ("PNG", (preview.PREVIEW_SIZE, preview.PREVIEW_SIZE))
    return np.asarray(img.convert("L")).astype(int)


def test_every_format_of_the_table_has_a_sample_and_an_expectation() -> None:
    shown = format_samples.preview_samples()
    assert set(shown) == {f.extensions[0] for f in formats.FORMATS} == set(EXPECTED)
    for fmt in formats.FORMATS:
        assert Path(shown[fmt.extensions[0]]).suffix in fmt.extensions


@pytest.mark.parametrize("extension", EXPECTED)
def test_each_formats_sample_gets_its_preview(format_dir: Path, extension: str) -> None:
    name = format_samples.preview_samples()[extension]
    kind, shown = EXPECTED[extension]
    p = preview.make_preview(format_dir / name, f"MockDataFiles/{name}")
    assert p.ok, p.error
    assert p.kind == kind
    assert shown in p.shown
    g = grey(p.png)
    assert g[HEADER:].std() > 5  # data drawn, not a blank page
    assert (g[:HEADER] < 128).sum() > 100  # the title is written


@pytest.mark.parametrize("extension", EXPECTED)
def test_a_large_file_read_lazily_gets_the_same_preview(
    format_dir: Path, extension: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above LAZY_BYTES a file is read lazily where its reader can: the same preview."""
    name = format_samples.preview_samples()[extension]
    whole = preview.make_preview(format_dir / name, name)
    monkeypatch.setattr(signals, "LAZY_BYTES", 0)
    lazily = preview.make_preview(format_dir / name, name)
    assert lazily.ok, lazily.error
    assert lazily.png == whole.png


def test_the_readers_of_the_new_formats_get_the_samples_calibration(format_dir: Path) -> None:
    """What the writers put in comes back through the job's reading."""
    (spc,) = signals.read_signals(format_dir / "edax/EDS_spectrum.spc", "EDS_spectrum.spc")
    (spx,) = signals.read_signals(format_dir / "bruker/bruker_nano.spx", "bruker_nano.spx")
    assert spc.axes[0].units == "keV"
    # the same peak, at the same energy, give or take a channel
    peak = [
        a.offset + a.scale * int(np.argmax(s.data))
        for s, a in ((spc, spc.axes[0]), (spx, spx.axes[0]))
    ]
    assert peak[0] == pytest.approx(peak[1], abs=spc.axes[0].scale)
    (mrc,) = signals.read_signals(format_dir / "mrc/TEM_stack.mrc", "TEM_stack.mrc")
    assert mrc.data.shape == (5, 64, 64)
    assert mrc.axes[-1].units == "nm" and mrc.axes[-1].scale == pytest.approx(6.28, abs=0.01)
    (mib,) = signals.read_signals(
        format_dir / "merlin/diffraction_scan.mib", "diffraction_scan.mib"
    )
    (blo,) = signals.read_signals(format_dir / "astar/test1.blo", "test1.blo")
    assert mib.data.shape == blo.data.shape == (3, 2, 144, 144)  # 3 rows of 2
    assert np.array_equal(np.asarray(mib.data), np.asarray(blo.data))


def test_a_colour_picture_keeps_its_colours_and_a_grey_one_stays_grey(format_dir: Path) -> None:
    colour = preview.make_preview(format_dir / "pictures/HAADF_inferno.png")
    rgb = np.asarray(Image.open(io.BytesIO(colour.png)).convert("RGB")).astype(int)
    below = rgb[HEADER:]
    # inferno runs from black through purple to yellow: red well above blue on most of the image
    assert ((below[..., 0] - below[..., 2]) > 40).mean() > 0.3
    plain = preview.make_preview(format_dir / "pictures/Zeiss_SEM.jpg")
    rgb = np.asarray(Image.open(io.BytesIO(plain.png)).convert("RGB")).astype(int)
    assert (rgb[..., 0] == rgb[..., 2]).all()  # drawn as a grey image


def test_pictures_in_every_mode_preview(tmp_path: Path) -> None:
    """Transparency laid on white, palettes, 16-bit grey (stretched), grey saved as RGB (grey),
    CMYK JPEG."""
    y, x = np.mgrid[0:300, 0:400]
    wave = (np.sin(x / 20) * np.cos(y / 30) + 1) / 2
    u8 = np.rint(wave * 255).astype(np.uint8)
    cases = {
        "rgba.png": Image.fromarray(
            np.dstack([u8, 255 - u8, u8 // 2, (x < 200) * 255]).astype(np.uint8), "RGBA"
        ),
        "palette.png": Image.fromarray(np.dstack([u8, 255 - u8, u8 // 2]), "RGB").quantize(16),
        "grey16.png": Image.fromarray((wave * 4000).astype(np.uint16)),
        "greyrgb.png": Image.fromarray(np.dstack([u8, u8, u8]), "RGB"),
        "cmyk.jpg": Image.fromarray(np.dstack([u8, 255 - u8, u8 // 2]), "RGB").convert("CMYK"),
    }
    for name, image in cases.items():
        path = tmp_path / name
        image.save(path)
        p = preview.make_preview(path)
        assert p.ok, (name, p.error)
        assert p.kind == "image"
        g = grey(p.png)
        assert g[HEADER:].std() > 20, name
        if name in ("grey16.png", "greyrgb.png"):
            assert "colour" not in p.shown, name
    rgba = np.asarray(Image.open(io.BytesIO(preview.make_preview(tmp_path / "rgba.png").png)))
    # the transparent right half is the page's white, the left half is drawn
    middle = rgba[HEADER + 200, :, :3].astype(int)
    assert (middle[260:480] == 255).all() and (middle[20:240] != 255).any()


def test_a_large_jpeg_is_decoded_small(tmp_path: Path) -> None:
    """A 6000x4000 JPEG (72 MB decoded) is decoded at 1/8 of its size: it is shown at 500 wide."""
    y, x = np.mgrid[0:4000, 0:6000]
    big = np.rint((np.sin(x / 300) * np.cos(y / 200) + 1) * 127).astype(np.uint8)
    path = tmp_path / "big.jpg"
    Image.fromarray(np.dstack([big, big[::-1], 255 - big]), "RGB").save(path, quality=80)
    del big, x, y
    tracemalloc.start()
    try:
        p = preview.make_preview(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert p.ok, p.error
    assert "colour image 750×500" in p.shown or "colour image" in p.shown
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.0f} MiB: decoded whole"


def test_a_picture_too_large_to_decode_gets_a_placeholder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "huge.png"
    Image.new("RGB", (1000, 800), "navy").save(path)
    monkeypatch.setattr(signals, "PICTURE_BYTES", 2 * 2**20)
    p = preview.make_preview(path)
    assert not p.ok
    assert p.error == "too large to preview: a 1000x800 picture decodes to more than 2 MiB"


def test_a_merlin_mib_reads_the_scan_shape_from_its_hdr(format_dir: Path, tmp_path: Path) -> None:
    assert formats.companion_names("run/scan.mib") == ["run/scan.hdr"]
    assert formats.companion_names("run/scan.hdr") == []
    # without its .hdr: the shape from the frames' time stamps (a pause before each line)
    alone = tmp_path / "diffraction_scan.mib"
    shutil.copy(format_dir / "merlin/diffraction_scan.mib", alone)
    (guessed,) = signals.read_signals(alone, alone.name)
    assert guessed.data.shape == (3, 2, 144, 144)
    p = preview.make_preview(alone)
    assert p.ok and p.kind == "4d", p.error
    only_hdr = tmp_path / "lonely.hdr"
    shutil.copy(format_dir / "merlin/diffraction_scan.hdr", only_hdr)
    p = preview.make_preview(only_hdr)
    assert (
        p.error
        == "unsupported file type '.hdr': settings of Merlin .mib files, previewed with them"
    )


BROKEN = {  # a sample cut to half its length, or named as another format: what the reason says
    "edax/EDS_spectrum.spc": "truncated (has 10497 of 12032 bytes)",  # 3840 + 2048 x 4
    "mrc/TEM_stack.mrc": "truncated (has 41472 of 82944 bytes)",  # 1024 + 5 x 64 x 64 x 4
}
MISNAMED = {
    ".mib": "not a Merlin .mib file",
    ".blo": "not an ASTAR .blo file",
    ".png": "not a PNG file",
    ".jpg": "not a JPEG file",
    ".hspy": "not an HDF5 (HyperSpy) file",
    ".zspy": "not a zipped .zspy file",
    ".prz": "not a Panta Rhei .prz file",
}


@pytest.mark.parametrize("name", BROKEN)
def test_a_truncated_file_says_so(format_dir: Path, tmp_path: Path, name: str) -> None:
    data = (format_dir / name).read_bytes()
    cut = tmp_path / Path(name).name
    cut.write_bytes(data[: len(data) // 2])
    p = preview.make_preview(cut)
    assert not p.ok
    assert BROKEN[name] in p.error


@pytest.mark.parametrize("extension", MISNAMED)
def test_a_file_of_another_format_says_what_it_is_not(
    format_dir: Path, tmp_path: Path, extension: str
) -> None:
    wrong = tmp_path / f"really_a_dm3{extension}"
    shutil.copy(format_dir / "dm3/multi_signal.dm3", wrong)
    p = preview.make_preview(wrong)
    assert (p.ok, p.error) == (False, f"unreadable: {MISNAMED[extension]}")


def test_a_zspy_saved_as_the_formats_page_says_is_read(format_dir: Path, tmp_path: Path) -> None:
    """The page tells HyperSpy users to save with ``store_type="zip"``: one file the job reads."""
    import hyperspy.api as hs

    signal = hs.load(format_dir / "dm3/multi_signal.dm3")[0]
    path = tmp_path / "name.zspy"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        signal.save(path, store_type="zip")
    assert path.is_file()
    p = preview.make_preview(path)
    assert (p.ok, p.kind, p.title) == (True, "image", "HAADF")
    assert p.scalebar == "2 nm"  # as the .dm3's own preview: the calibration came along
