"""Preview thumbnails of raw microscope files: pure functions, the only I/O is reading the input.

Every file gets a 500x500 PNG laid out as NexusLIMS lays its previews out
(usnistgov/NexusLIMS ``nexusLIMS/extractors/thumbnail_generator.py``): the title from the file's
metadata on top (``General.title``, else the original file name), then the data. Beneath the title a
grey line names the file, the shape drawn and, for files holding several signals, which one.

What is drawn, by kind
    image           the image in grey, contrast stretched between the 0.5th and 99.5th percentiles,
                    with a scalebar of a round length (1, 2 or 5 x 10^n, about a quarter of the
                    width) in the file's calibrated units, bottom left. SEM TIFFs keep their data
                    bar; the scalebar sits above it (FEI states its height) or top left (Zeiss).
    image-stack     a montage of up to 9 evenly spaced frames (frame numbers in the corner) under
                    one common contrast stretch; scalebar on the first frame.
    spectrum        intensity against the calibrated axis, e.g. "Energy loss (eV)". On EDS spectra
                    the detector's noise peak below 0.15 keV is left out of the y range.
    linescan        spectra along a line: the position x energy image above the sum spectrum,
                    the energy axes aligned.
    spectrum-image  a navigator image above the sum spectrum. The navigator is an image of the
                    same area stored in the same file (Velox HAADF, Bruker BSE/SE) when there is
                    one, else the spectrum image summed over energy.
    4d              the mean diffraction pattern (log scale) beside a virtual annular dark-field
                    image (all intensity outside the central beam, found in the mean pattern; the
                    plain sum image when no central beam stands out).
    placeholder     no data drawn: the name and the one-line reason (``Preview.error``): "empty
                    file", "unsupported file type", "unreadable: not a TIFF file", "unreadable:
                    file is truncated (has N of M bytes)", or the reader's own message.

Files holding several signals: the richest one is drawn (spectrum image > 4D > image stack > image
> linescan > spectrum; the largest among equals), so a DM file with a HAADF image and a plot shows
the image. Navigation dimensions beyond two are shown at their first index, and the note says so.
A TIA ``.ser`` is read with the metadata of its ``.emi`` when that sits beside it, alone otherwise.

Speed and memory: files are read with the rosettasciio readers directly (no ``hyperspy.api``), each
imported on first use. Files over ``LAZY_BYTES`` are read lazily (memory maps or dask) where the
reader supports it, and every reduction reads the data in bands of rows, so memory stays bounded by
the reduced result plus one band. Images are block-averaged to the smallest size that still fills
their place before the contrast stretch, so an 8192x8192 image costs about as much as one of 500x500
after reading. Spectrum images and 4D data read at most ``READ_BUDGET`` bytes: beyond that, one scan
position in n each way (``Preview.shown`` says so). Drawing uses Pillow only, with matplotlib's
bundled DejaVu Sans (no figure is made), and the PNG is encoded here (see ``_png``).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import re
import struct
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PREVIEW_SIZE = 500
LAZY_BYTES = 64 * 2**20  # above this a file is read lazily where the reader can
READ_BUDGET = 256 * 2**20  # at most this much of a spectrum image or 4D dataset is read
BAND_BYTES = 16 * 2**20  # data reduced this much at a time
LOW_PERCENTILE, HIGH_PERCENTILE = 0.5, 99.5

# extension -> rosettasciio plugin
_READERS = {
    ".dm3": "digitalmicrograph",
    ".dm4": "digitalmicrograph",
    ".ser": "tia",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".msa": "msa",
    ".emsa": "msa",
    ".emd": "emd",
    ".bcf": "bruker",
    ".spx": "bruker",
}
# The TIA reader loads the whole .ser even when lazy (twice, in fact), and MSA is small text.
_EAGER = {"tia", "msa"}
_RANK = {"spectrum": 0, "linescan": 1, "image": 2, "image-stack": 3, "4d": 4, "spectrum-image": 5}
_SER = re.compile(r"^(?P<stem>.+)_\d+\.ser$", re.IGNORECASE)

_S = PREVIEW_SIZE
_HEADER = 58  # title and subtitle band
_WHITE, _BLACK, _GREY, _INK = "#ffffff", "#000000", "#666666", "#222222"
_LINE, _FILL, _GRID = "#1f5fa8", "#c9dbf0", "#e4e4e4"


@dataclass
class Preview:
    png: bytes  # always a PREVIEW_SIZE x PREVIEW_SIZE PNG; a placeholder saying why when not ok
    ok: bool
    kind: str  # image | image-stack | spectrum | linescan | spectrum-image | 4d | placeholder
    title: str
    signals: int  # how many signals the file held (0 if unreadable)
    shown: str  # what was drawn, e.g. "HAADF image (signal 1 of 2)"
    error: str | None = None  # when not ok: a one-line reason, e.g. "unreadable: file is truncated"
    scalebar: str | None = None  # label of the scalebar drawn, e.g. "50 nm"
    axis_label: str | None = None  # x-axis label of the spectrum drawn, e.g. "Energy loss (eV)"


def is_previewable(name: str) -> bool:
    """Whether a file of this name gets a preview of its own (by extension, any case)."""
    return PurePosixPath(name).suffix.lower() in _READERS


def companion_names(name: str) -> list[str]:
    """Other object names that must sit beside ``name`` to read it fully: a TIA ``foo_1.ser``
    keeps its metadata (calibration units, date) in ``foo.emi``."""
    match = _SER.match(name)
    if not match:
        return []
    return [match["stem"] + (".EMI" if name.endswith(".SER") else ".emi")]


# --- scalebar and plot specs (pure, exposed for tests) ---------------------------------------


@dataclass(frozen=True)
class ScaleBar:
    value: float  # length in `units`
    units: str
    label: str  # e.g. "50 nm"
    pixels: float  # length on the preview


_LENGTH = {"m": 1.0, "mm": 1e-3, "µm": 1e-6, "μm": 1e-6, "um": 1e-6, "micron": 1e-6,
           "nm": 1e-9, "pm": 1e-12, "Å": 1e-10, "å": 1e-10, "A": 1e-10, "angstrom": 1e-10}
_ANGLE = {"rad": 1.0, "mrad": 1e-3, "µrad": 1e-6, "μrad": 1e-6, "urad": 1e-6}
# units a label is written in, smallest first: the first that reads below 1000 is used
_LENGTH_OUT = (("pm", 1e-12), ("nm", 1e-9), ("µm", 1e-6), ("mm", 1e-3), ("m", 1.0))
_RECIP_OUT = (("m⁻¹", 1.0), ("mm⁻¹", 1e3), ("µm⁻¹", 1e6), ("nm⁻¹", 1e9), ("pm⁻¹", 1e12))
_ANGLE_OUT = (("µrad", 1e-6), ("mrad", 1e-3), ("rad", 1.0))
_UNCALIBRATED = {"", "pix", "px", "pixel", "pixels", "<undefined>", "undefined", "[]", "none"}


def _unit_family(units: str | None) -> tuple[str, float] | None:
    """('length' | 'recip' | 'angle', factor to metres, 1/metres or radians), or None."""
    u = (units or "").replace(" ", "")
    if u in _LENGTH:
        return "length", _LENGTH[u]
    if u in _ANGLE:
        return "angle", _ANGLE[u]
    base = u[2:] if u.startswith("1/") else u.removesuffix("^-1").removesuffix("⁻¹")
    if base != u and base in _LENGTH:
        return "recip", 1.0 / _LENGTH[base]
    return None


def _nice_floor(x: float) -> float:
    """The largest 1, 2 or 5 x 10^n not above x."""
    exp = math.floor(math.log10(x))
    mantissa = x / 10**exp
    return max(m for m in (1, 2, 5, 10) if m <= mantissa + 1e-9) * 10.0**exp


def scalebar(scale: float, units: str | None, pixels: int, display_pixels: int,
             fraction: float = 0.25) -> ScaleBar | None:
    """A round-length scalebar about `fraction` of the displayed width, for an axis of `pixels`
    data pixels of `scale` `units` each, drawn `display_pixels` wide. None when the axis is not
    calibrated in a length, reciprocal length or angle, or the calibration is implausible."""
    family = _unit_family(units)
    if family is None or not (math.isfinite(scale) and scale) or pixels <= 0 or display_pixels <= 0:
        return None
    kind, factor = family
    per_pixel = abs(scale) * factor
    # TIA diffraction read without its .emi claims ~1e8 m per pixel: no bar beats a wrong one
    if kind == "length" and not 1e-15 <= per_pixel <= 0.1:
        return None
    per_display = per_pixel * pixels / display_pixels
    length = _nice_floor(per_display * display_pixels * fraction)
    out = {"length": _LENGTH_OUT, "recip": _RECIP_OUT, "angle": _ANGLE_OUT}[kind]
    name, unit = next(((n, f) for n, f in out if length / f < 999.5), out[-1])
    # as microscopists write them: 0.5 nm rather than 500 pm, 0.5 nm⁻¹ rather than 500 µm⁻¹
    if (name == "pm" and length >= 1e-10) or (kind == "recip" and 1e8 <= length < 1e12):
        name, unit = out[1] if kind == "length" else out[3]
    value = float(f"{length / unit:.3g}")
    return ScaleBar(value, name, f"{value:g} {name}", length / per_display)


@dataclass(frozen=True)
class PlotSpec:
    xlabel: str
    ylabel: str
    x_min: float
    x_max: float
    y_from: float = -math.inf  # channels below this x are left out of the y autoscale


def _is_spectral(axis: _Axis) -> bool:
    """An energy or wavelength axis: the signal axis of spectra, whatever the reader flagged."""
    name = axis.name.lower()
    return axis.units.strip() in ("eV", "keV", "meV", "MeV") or "energy" in name or (
        "wavelength" in name)


def spectrum_plot_spec(axis: Mapping | _Axis, metadata: Mapping | None = None) -> PlotSpec:
    """Axis labels and x range of a spectrum plot, from a rosettasciio axis dict and metadata."""
    ax = axis if isinstance(axis, _Axis) else _axis(axis, int(axis.get("size", 1)))
    units = ax.units.strip()
    name = ax.name.strip()
    if units in ("eV", "keV", "meV", "MeV") and (not name or name.lower() in ("x", "y", "z")):
        name = "Energy"
    if units.lower() in _UNCALIBRATED and ax.scale == 1 and ax.offset == 0:
        xlabel = "Channel"
    elif units.lower() in _UNCALIBRATED:
        xlabel = name or "Channel"
    else:
        xlabel = f"{name or 'x'} ({units})"
    quantity = str(((metadata or {}).get("Signal") or {}).get("quantity") or "").strip()
    x0, x1 = ax.offset, ax.offset + ax.scale * (ax.size - 1)
    lo, hi = min(x0, x1), max(x0, x1)
    # EDS spectra (over 5 keV wide) start with the detector's noise peak, which would flatten
    # every X-ray line: it runs off the top, as in EDS software
    kev = {"eV": 1e-3, "keV": 1.0}.get(units)
    y_from = 0.15 / kev if kev and (hi - lo) * kev > 5 and lo * kev < 0.15 else -math.inf
    return PlotSpec(xlabel, quantity or "Intensity", lo, hi, y_from)


# --- reading -------------------------------------------------------------------------------


class _Unreadable(Exception):
    """A reason, already worded for the placeholder."""


@dataclass
class _Axis:
    size: int
    scale: float = 1.0
    offset: float = 0.0
    units: str = ""
    name: str = ""
    navigate: bool | None = None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _axis(d: Mapping, size: int) -> _Axis:
    if d.get("axis") is not None and len(d["axis"]) > 1:  # non-uniform: drawn as if uniform
        values = np.asarray(d["axis"], dtype=float)
        scale, offset = (values[-1] - values[0]) / (len(values) - 1), values[0]
    else:
        scale, offset = d.get("scale", 1.0), d.get("offset", 0.0)
    scale = float(scale) if scale is not None else 1.0
    offset = float(offset) if offset is not None else 0.0
    nav = d.get("navigate")
    return _Axis(size, scale, offset, _text(d.get("units")).strip(), _text(d.get("name")).strip(),
                 None if nav is None else bool(nav))


@dataclass
class _Signal:
    data: Any  # numpy array, memmap or dask array
    axes: list[_Axis]
    metadata: dict
    original: dict = field(default_factory=dict)  # the file's own tags


def _read(path: Path, base: str) -> list[_Signal]:
    """The signals in the file at path, whose object name ends in base (it gives the format)."""
    suffix = PurePosixPath(base).suffix.lower()
    plugin = _READERS[suffix]
    _check_format(path, suffix)
    lazy = plugin not in _EAGER and path.stat().st_size > LAZY_BYTES
    if plugin == "tia":
        dicts = _read_ser(path, base)
    elif lazy:
        import dask

        reader = importlib.import_module(f"rsciio.{plugin}")
        # small chunks: a band of rows then reads little more than itself
        with dask.config.set({"array.chunk-size": "16MiB"}):
            dicts = reader.file_reader(str(path), lazy=True)
    else:
        dicts = importlib.import_module(f"rsciio.{plugin}").file_reader(str(path))
    return [_signal(d) for d in dicts]


def _read_ser(path: Path, base: str) -> list[dict]:
    """A .ser with the metadata of its .emi when that sits beside it (diffraction patterns are
    then in 1/nm rather than a guessed nm); alone otherwise."""
    # the public file_reader takes a .ser alone, or an .emi with all its .ser files
    tia = importlib.import_module("rsciio.tia._api")
    if not hasattr(tia, "ser_reader"):  # a later rosettasciio moved it: lose the .emi only
        return importlib.import_module("rsciio.tia").file_reader(str(path))
    objects = None
    for companion in companion_names(base):
        emi = path.with_name(companion)
        if emi.exists():
            try:
                objects = tia.get_xml_info_from_emi(str(emi)) or None
            except Exception:  # a broken .emi must not cost the data its preview
                objects = None
    return tia.ser_reader(str(path), objects, lazy=False)


def _signal(d: Mapping) -> _Signal:
    data = d["data"]
    if hasattr(data, "dask") and data.npartitions == 1:
        # one chunk (a TIFF's memory map): taken as it is; dask's compute() would copy it all
        data = data.to_delayed().ravel()[0].compute(scheduler="synchronous")
    axes_d = list(d.get("axes") or [])
    order = [a.get("index_in_array", i) for i, a in enumerate(axes_d)]
    axes_d = [a for _, a in sorted(zip(order, axes_d, strict=True), key=lambda oa: oa[0])]
    if len(axes_d) != data.ndim:
        axes_d = [{} for _ in range(data.ndim)]
    axes = [_axis(a, int(n)) for a, n in zip(axes_d, data.shape, strict=True)]
    keep = tuple(slice(None) if a.size > 1 else 0 for a in axes)
    if any(a.size == 1 for a in axes):
        data, axes = data[keep], [a for a in axes if a.size > 1]
    return _Signal(data, axes, dict(d.get("metadata") or {}), d.get("original_metadata") or {})


@dataclass
class _View:
    kind: str
    data: Any  # navigation axes first, then signal axes
    nav: list[_Axis]
    sig: list[_Axis]
    note: str  # about dimensions not shown


def _view(signal: _Signal) -> _View:
    axes, data = signal.axes, signal.data
    ndim = len(axes)
    if ndim == 0:
        raise _Unreadable("unreadable: the file holds a single value, nothing to draw")
    flags = [a.navigate for a in axes]
    if None not in flags and not all(flags):
        sig = [i for i, nav in enumerate(flags) if not nav]
    else:  # the reader did not say: the last two axes are the image
        sig = list(range(max(0, ndim - 2), ndim))
    spectral = [i for i, a in enumerate(axes) if _is_spectral(a)]
    # DM spectrum images come with the energy axis flagged as navigation
    if len(spectral) == 1 and ndim >= 2:
        sig = spectral
    sig = sig[-2:]
    nav = [i for i in range(ndim) if i not in sig]
    if nav + sig != list(range(ndim)):
        data = data.transpose(nav + sig)
    note = ""
    if len(nav) > 2:  # e.g. a time series of spectrum images: its first one
        extra = nav[: len(nav) - 2]
        data = data[(0,) * len(extra)]
        note = "first of " + " x ".join(f"{axes[i].size} ({axes[i].name or 'axis'})"
                                        for i in extra)
        nav = nav[len(extra):]
    kind = {(1, 0): "spectrum", (1, 1): "linescan", (1, 2): "spectrum-image", (2, 0): "image",
            (2, 1): "image-stack", (2, 2): "4d"}[len(sig), len(nav)]
    return _View(kind, data, [axes[i] for i in nav], [axes[i] for i in sig], note)


def _real(a: np.ndarray) -> np.ndarray:
    """Numbers to draw: RGB as luminance, complex as amplitude."""
    if a.dtype.names:
        names = {n.upper(): n for n in a.dtype.names}
        if {"R", "G", "B"} <= names.keys():
            return (0.299 * a[names["R"]] + 0.587 * a[names["G"]]
                    + 0.114 * a[names["B"]]).astype(np.float32)
        return a[a.dtype.names[0]].astype(np.float32)
    if np.iscomplexobj(a):
        return np.abs(a).astype(np.float32)
    if a.dtype.kind not in "biuf":
        raise _Unreadable(f"unsupported data type: {a.dtype}")
    return a


def _size(data: Any) -> int:
    return int(np.prod(data.shape, dtype=np.int64))


# --- reductions (bounded memory) ----------------------------------------------------------


def _block_mean(arr: Any, k: int) -> np.ndarray:
    """Mean over k x k blocks of a 2D array (numpy, memmap or dask), read in bands of rows; the
    last partial block of each axis is dropped (less than k pixels)."""
    h, w = arr.shape
    if k <= 1:
        return np.asarray(_real(np.asarray(arr)), dtype=np.float32)
    hh, ww = h // k, w // k
    out = np.empty((hh, ww), np.float32)
    step = max(1, BAND_BYTES // (k * w * arr.dtype.itemsize))  # output rows per band
    for r in range(0, hh, step):
        n = min(step, hh - r)
        band = _real(np.asarray(arr[r * k:(r + n) * k, : ww * k]))
        out[r:r + n] = band.reshape(n, k, ww, k).sum(axis=(1, 3), dtype=np.float32)
    out *= 1.0 / (k * k)
    return out


def _limits(values: np.ndarray) -> tuple[float, float]:
    """Contrast limits: the low and high percentiles of the finite values."""
    v = values.ravel()
    if not np.isfinite(v).all():
        v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    lo_i = int(LOW_PERCENTILE / 100 * (v.size - 1))
    hi_i = int(round(HIGH_PERCENTILE / 100 * (v.size - 1)))
    part = np.partition(v, (lo_i, hi_i))
    lo, hi = float(part[lo_i]), float(part[hi_i])
    if hi <= lo:
        lo, hi = float(v.min()), float(v.max())
    return lo, hi


def _stretch(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    gain = 255.0 / (hi - lo) if hi > lo else 0.0
    out = (img - np.float32(lo)) * np.float32(gain)
    np.clip(out, 0, 255, out=out)
    out[~np.isfinite(out)] = 0
    return out.astype(np.uint8)


def _aspect(ay: _Axis, ax: _Axis) -> float:
    """Displayed height of a pixel over its width: physical when both axes share units."""
    if ay.units and ay.units == ax.units and ay.scale and ax.scale:
        ratio = abs(ay.scale / ax.scale)
        if 0.1 <= ratio <= 10:
            return ratio
    return 1.0


def _display_size(h: int, w: int, aspect: float, box_w: int, box_h: int) -> tuple[int, int]:
    s = min(box_w / w, box_h / (h * aspect))
    return max(1, round(w * s)), max(1, round(h * aspect * s))


def _reduce(arr: Any, dw: int, dh: int) -> np.ndarray:
    """Block mean to the smallest size that still covers dw x dh (no upsampling after)."""
    h, w = arr.shape
    return _block_mean(arr, max(1, min(w // dw, h // dh)))


def _to_image(u8: np.ndarray, dw: int, dh: int) -> Image.Image:
    im = Image.fromarray(u8)
    if im.size == (dw, dh):
        return im
    # enlarged 2x or more: keep the pixels square and honest
    up = dw >= 2 * u8.shape[1] or dh >= 2 * u8.shape[0]
    return im.resize((dw, dh), Image.Resampling.NEAREST if up else Image.Resampling.LANCZOS)


def _stride(nav_shape: tuple[int, ...], signal_bytes: int) -> int:
    """Step between scan positions (each direction) that keeps the read within READ_BUDGET."""
    s = 1
    while math.prod(math.ceil(n / s) for n in nav_shape) * signal_bytes > READ_BUDGET:
        s += 1
    return s


def _nav_bands(data: Any, stride: int):
    """(row offset, band) over the first axis of data[::stride, ::stride, ...], as numbers."""
    view = data[(slice(None, None, stride),) * min(2, data.ndim - 1)] if stride > 1 else data
    row = math.prod(view.shape[1:]) * view.dtype.itemsize
    step = max(1, BAND_BYTES // max(1, row))
    for r in range(0, view.shape[0], step):
        yield r, _real(np.asarray(view[r:r + step]))


def _spectrum_sums(data: Any, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Navigator (sum over the last axis) and sum spectrum of a linescan or spectrum image."""
    nav = np.zeros([math.ceil(n / stride) for n in data.shape[:-1]], np.float64)
    spectrum = np.zeros(data.shape[-1], np.float64)
    for r, band in _nav_bands(data, stride):
        nav[r:r + len(band)] = band.sum(axis=-1, dtype=np.float64)
        spectrum += band.reshape(-1, band.shape[-1]).sum(axis=0, dtype=np.float64)
    return nav, spectrum


def _central_beam_weights(dp: np.ndarray) -> tuple[np.ndarray, str]:
    """Weights of a virtual detector: 1 outside the central beam (annular dark field), or 1
    everywhere (sum image) when no bright central disk stands out."""
    base, peak = float(np.median(dp)), float(dp.max())
    beam = dp > base + 0.5 * (peak - base)
    grow = max(1, min(dp.shape) // 64)  # take the disk's soft edge too
    for axis in (0, 1):
        for shift in range(1, grow + 1):
            beam = beam | np.roll(beam, shift, axis) | np.roll(beam, -shift, axis)
    if peak <= base or not beam.any() or beam.mean() > 0.5:
        return np.ones(dp.size, np.float32), "sum image"
    return (~beam).ravel().astype(np.float32), "virtual ADF"


def _fourd_sums(data: Any, stride: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Mean diffraction pattern and virtual image of (ny, nx, qy, qx) data."""
    ny, nx, qy, qx = data.shape
    # the central beam, from a few positions spread over the scan
    iy = np.unique(np.linspace(0, ny - 1, min(ny, 4)).astype(int))
    ix = np.unique(np.linspace(0, nx - 1, min(nx, 4)).astype(int))
    sample = np.zeros((qy, qx), np.float64)
    for y in iy:
        for x in ix:
            sample += _real(np.asarray(data[y, x]))
    weights, what = _central_beam_weights(sample)
    image = np.zeros((math.ceil(ny / stride), math.ceil(nx / stride)), np.float32)
    total = np.zeros(qy * qx, np.float64)
    for r, band in _nav_bands(data, stride):
        flat = band.reshape(-1, qy * qx).astype(np.float32, copy=False)
        image[r:r + band.shape[0]] = (flat @ weights).reshape(band.shape[:2])
        total += flat.sum(axis=0, dtype=np.float64)
    return (total / image.size).reshape(qy, qx), image, what


# --- drawing -------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    """matplotlib's bundled DejaVu Sans, found without importing matplotlib (~0.2 s)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec and spec.submodule_search_locations:
        ttf = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"
        path = ttf / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")
        if path.exists():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size)


def _clip(text: str, font: ImageFont.FreeTypeFont, width: float) -> str:
    """The text, cut with an ellipsis to fit width."""
    text = " ".join(text.split())
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text.rstrip() + "…"


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: float, lines: int) -> list[str]:
    """Lines of at most width; words longer than a line are broken; the last line is clipped."""
    out: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if font.getlength(candidate) <= width:
            line = candidate
            continue
        if line:
            out.append(line)
        while font.getlength(word) > width:  # e.g. a long object name: break it anywhere
            cut = max((i for i in range(1, len(word)) if font.getlength(word[:i]) <= width),
                      default=1)
            out.append(word[:cut])
            word = word[cut:]
        line = word
    if line:
        out.append(line)
    if len(out) > lines:
        out = out[: lines - 1] + [_clip(" ".join(out[lines - 1:]), font, width)]
    return out


def _clip_middle(text: str, font: ImageFont.FreeTypeFont, width: float) -> str:
    """The text with its middle replaced by an ellipsis to fit width (names differ at the end)."""
    text = " ".join(text.split())
    head, tail = len(text) // 2, len(text) // 2
    while head > 1 and font.getlength(text[:head] + "…" + text[-tail:]) > width:
        head, tail = head - 1, tail - 1 if tail > head else tail
    return text if font.getlength(text) <= width else text[:head] + "…" + text[-tail:]


def _canvas(mode: str, title: str, subtitle: str) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new(mode, (_S, _S), _WHITE)
    draw = ImageDraw.Draw(img)
    font = next((_font(size, True) for size in (18, 16, 14)
                 if _font(size, True).getlength(title) <= _S - 20), _font(14, True))
    draw.text((10, 26), _clip_middle(title, font, _S - 20), font=font, fill=_BLACK, anchor="ls")
    draw.text((10, 34), _clip(subtitle, _font(13), _S - 20), font=_font(13), fill=_GREY)
    return img, draw


_BAR_PAD, _BAR_H, _BAR_GAP, _BAR_MARGIN = 5, 5, 3, 8


def _scalebar_box(bar: ScaleBar) -> tuple[int, int]:
    """Width and height of the scalebar's black box."""
    font = _font(13)
    ascent, descent = font.getmetrics()
    inner = max(round(bar.pixels), math.ceil(font.getlength(bar.label)))
    return inner + 2 * _BAR_PAD, 2 * _BAR_PAD + ascent + descent + _BAR_GAP + _BAR_H


def _fitting_scalebar(ax: _Axis, pixels: int, dw: int, dh: int) -> ScaleBar | None:
    """A scalebar whose box fits the displayed image; longer (up to 60%) for narrow images."""
    for fraction in (0.25, 0.4, 0.6):
        bar = scalebar(ax.scale, ax.units, pixels, dw, fraction)
        if bar is None:
            return None
        w, h = _scalebar_box(bar)
        if w + 2 * _BAR_MARGIN <= dw and h + 2 * _BAR_MARGIN <= dh:
            return bar
    return None


def _draw_scalebar(draw: ImageDraw.ImageDraw, bar: ScaleBar, left: int, bottom: int) -> None:
    """White bar and label on a black box, its bottom left corner a margin off (left, bottom)."""
    font = _font(13)
    pad, bar_h = _BAR_PAD, _BAR_H
    text_w = font.getlength(bar.label)
    bar_px = max(1, round(bar.pixels))
    box_w, box_h = _scalebar_box(bar)
    inner = box_w - 2 * pad
    x0, y1 = left + _BAR_MARGIN, bottom - _BAR_MARGIN
    y0 = y1 - box_h + 1
    draw.rectangle((x0, y0, x0 + box_w - 1, y1), fill=_BLACK)
    bx = x0 + pad + (inner - bar_px) // 2
    draw.rectangle((bx, y1 - pad - bar_h + 1, bx + bar_px - 1, y1 - pad), fill=_WHITE)
    draw.text((x0 + pad + (inner - text_w) / 2, y0 + pad), bar.label, font=font, fill=_WHITE)


def _caption(draw: ImageDraw.ImageDraw, text: str, x: int, y: int, width: int) -> None:
    font = _font(12)
    text = _clip(text, font, width)
    draw.text((x + (width - font.getlength(text)) / 2, y), text, font=font, fill=_INK)


def _image_panel(canvas: Image.Image, draw: ImageDraw.ImageDraw, data: Any, ay: _Axis,
                 ax: _Axis, box: tuple[int, int, int, int], log: bool = False,
                 clear_rows: int = 0, bar_top: bool = False) -> ScaleBar | None:
    """Draw a 2D array fitted and centred in box (left, top, right, bottom) and its scalebar:
    bottom left, above the last clear_rows data rows, or top left."""
    h, w = data.shape
    dw, dh = _display_size(h, w, _aspect(ay, ax), box[2] - box[0], box[3] - box[1])
    img = _reduce(data, dw, dh)
    if log:
        img = np.log1p(np.maximum(img - np.nanmin(img), 0))
    u8 = _stretch(img, *_limits(img))
    x0 = box[0] + (box[2] - box[0] - dw) // 2
    y0 = box[1] + (box[3] - box[1] - dh) // 2
    canvas.paste(_to_image(u8, dw, dh), (x0, y0))
    usable = dh - round(clear_rows * dh / h)
    bar = _fitting_scalebar(ax, w, dw, usable)
    if bar is not None:
        bottom = y0 + _scalebar_box(bar)[1] + 2 * _BAR_MARGIN if bar_top else y0 + usable
        _draw_scalebar(draw, bar, x0, bottom)
    return bar


def _ticks(lo: float, hi: float, n: int) -> tuple[list[float], float]:
    """Round tick values in [lo, hi], at most n + 1 of them, and their step (1, 2 or 5 x 10^k)."""
    raw = (hi - lo) / n if hi > lo else 1.0
    unit = 10.0 ** math.floor(math.log10(raw))
    step = next(m * unit for m in (1, 2, 5, 10) if m * unit >= raw * 0.999)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)], step


def _tick_labels(values: list[float], step: float) -> list[str]:
    top = max(abs(v) for v in values) if values else 0
    factor, suffix = 1.0, ""
    for f, s in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if top >= f:
            factor, suffix = (1e3 if s == "k" else f), s
            break
    digits = max(0, -math.floor(math.log10(step / factor) + 1e-9))
    return [f"{v / factor:.{min(digits, 6)}f}{suffix}" if abs(v) > 1e-12 * max(1, top) else "0"
            for v in values]


def _vertical_text(canvas: Image.Image, text: str, font: ImageFont.FreeTypeFont, x: int,
                   middle: float) -> None:
    """Text turned 90 degrees (reading upwards), its left edge at x, centred on middle."""
    x0, y0, x1, y1 = font.getbbox(text)
    mask = Image.new("L", (max(1, x1), y1 + 2), 0)
    ImageDraw.Draw(mask).text((0, 0), text, font=font, fill=255)
    mask = mask.rotate(90, expand=True)
    canvas.paste(_INK, (x, round(middle - mask.height / 2)), mask)


def _plot_spectrum(canvas: Image.Image, draw: ImageDraw.ImageDraw, y: np.ndarray, spec: PlotSpec,
                   box: tuple[int, int, int, int]) -> tuple[int, int]:
    """Line plot of y (channels evenly spread over spec's x range) in box; returns the plot's
    left and right edges in pixels."""
    font, label_font = _font(12), _font(13)
    left, top, right, bottom = box[0] + 64, box[1] + 10, box[2] - 18, box[3] - 42
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    x = np.linspace(spec.x_min, spec.x_max, n)
    finite = np.isfinite(y)
    y = np.where(finite, y, 0.0)
    scaled = finite & (x >= spec.y_from) if (finite & (x >= spec.y_from)).any() else finite
    y_lo = float(min(0.0, y[scaled].min())) if scaled.any() else 0.0
    y_hi = float(y[scaled].max()) if scaled.any() else 1.0
    if y_hi <= y_lo:
        y_hi = y_lo + 1.0
    y_hi += 0.05 * (y_hi - y_lo)
    x_lo, x_hi = spec.x_min, spec.x_max if spec.x_max > spec.x_min else spec.x_min + 1
    y = np.clip(y, y_lo, y_hi)  # the EDS noise peak runs off the top

    def px(v: float) -> float:
        return left + (v - x_lo) / (x_hi - x_lo) * (right - left)

    def py(v: float) -> float:
        return bottom - (v - y_lo) / (y_hi - y_lo) * (bottom - top)

    xt, xstep = _ticks(x_lo, x_hi, 6)
    yt, ystep = _ticks(y_lo, y_hi, 5)
    for v, text in zip(xt, _tick_labels(xt, xstep), strict=True):
        draw.line((px(v), top, px(v), bottom), fill=_GRID)
        draw.line((px(v), bottom, px(v), bottom + 4), fill=_INK)
        draw.text((px(v), bottom + 6), text, font=font, fill=_INK, anchor="ma")
    for v, text in zip(yt, _tick_labels(yt, ystep), strict=True):
        draw.line((left, py(v), right, py(v)), fill=_GRID)
        draw.line((left - 4, py(v), left, py(v)), fill=_INK)
        draw.text((left - 7, py(v)), text, font=font, fill=_INK, anchor="rm")

    width = right - left
    if n > width:  # one column per pixel: the min..max envelope of the channels in it
        starts = np.unique(np.linspace(0, n, width + 1).astype(int)[:-1])
        ymax, ymin = np.maximum.reduceat(y, starts), np.minimum.reduceat(y, starts)
        xs = [left + (i + 0.5) / n * width for i in starts]
    else:
        ymax = ymin = y
        xs = [px(v) for v in x]
    upper = [(a, py(v)) for a, v in zip(xs, ymax, strict=True)]
    lower = [(a, py(v)) for a, v in zip(xs, ymin, strict=True)]
    base = py(max(y_lo, 0.0))
    draw.polygon([(xs[0], base), *upper, (xs[-1], base)], fill=_FILL)
    if n > width:
        draw.polygon(upper + lower[::-1], fill=_LINE)
    draw.line(upper, fill=_LINE, width=2 if n <= width else 1, joint="curve")
    draw.rectangle((left, top, right, bottom), outline=_INK)

    draw.text(((left + right) / 2, bottom + 24), _clip(spec.xlabel, label_font, width),
              font=label_font, fill=_INK, anchor="ma")
    _vertical_text(canvas, _clip(spec.ylabel, label_font, bottom - top), label_font, box[0] + 4,
                   (top + bottom) / 2)
    return left, right


# --- the kinds -----------------------------------------------------------------------------


@dataclass
class _Drawn:
    image: Image.Image
    shown: str  # what, e.g. "image" or "image stack: frames 1, 2 of 2"
    scalebar: ScaleBar | None = None
    axis_label: str | None = None


def _join(*parts: str) -> str:
    return " · ".join(p for p in parts if p)


def _dims(sizes: list[int]) -> str:
    return "×".join(str(s) for s in sizes)


def _every(stride: int) -> str:
    return f" (1 in {stride} scan positions each way)" if stride > 1 else ""


def _in_order(y: np.ndarray, axis: _Axis) -> np.ndarray:
    """Channels in increasing x (a few readers give descending axes)."""
    return y[::-1] if axis.scale < 0 else y


def _draw_image(view: _View, title: str, subtitle: str, original: dict) -> _Drawn:
    ay, ax = view.sig
    canvas, draw = _canvas("L", title, _join(subtitle, f"image {_dims([ax.size, ay.size])}"))
    bar = _image_panel(canvas, draw, view.data, ay, ax, (0, _HEADER, _S, _S),
                       **_sem_data_bar(original, ay.size))
    return _Drawn(canvas, "image", bar)


def _sem_data_bar(original: dict, rows: int) -> dict:
    """Where the scalebar goes on SEM TIFFs, whose data bar runs along the bottom: above it on
    FEI/Thermo files (they state the image height without it), top left on Zeiss files."""
    fei = (original.get("fei_metadata") or {}).get("Image") or {}
    height = fei.get("ResolutionY")
    if isinstance(height, int | float) and 0 < height < rows:
        return {"clear_rows": rows - int(height)}
    if "CZ_SEM" in original:
        return {"bar_top": True}
    return {}


def _draw_stack(view: _View, title: str, subtitle: str) -> _Drawn:
    ay, ax = view.sig
    n = view.nav[0].size
    frames = np.unique(np.linspace(0, n - 1, min(n, 9)).round().astype(int))
    cols = math.ceil(math.sqrt(len(frames)))
    rows = math.ceil(len(frames) / cols)
    gap = 4
    cell_w = (_S - gap * (cols + 1)) // cols
    cell_h = (_S - _HEADER - gap * rows) // rows
    h, w = view.data.shape[1:]
    dw, dh = _display_size(h, w, _aspect(ay, ax), cell_w, cell_h)
    reduced = [_reduce(view.data[i], dw, dh) for i in frames]
    lo, hi = _limits(np.stack(reduced))
    sub = _join(subtitle, f"{n} frames of {_dims([ax.size, ay.size])}")
    canvas, draw = _canvas("L", title, sub)
    # the grid centred in the space below the title
    left = (_S - cols * dw - (cols - 1) * gap) // 2
    top = _HEADER + (_S - _HEADER - rows * dh - (rows - 1) * gap) // 2
    font = _font(12)
    for j, (frame, img) in enumerate(zip(frames, reduced, strict=True)):
        r, c = divmod(j, cols)
        x0, y0 = left + c * (dw + gap), top + r * (dh + gap)
        canvas.paste(_to_image(_stretch(img, lo, hi), dw, dh), (x0, y0))
        label = str(frame + 1)
        draw.rectangle((x0, y0, x0 + font.getlength(label) + 7, y0 + 17), fill=_BLACK)
        draw.text((x0 + 4, y0 + 2), label, font=font, fill=_WHITE)
    bar = _fitting_scalebar(ax, w, dw, dh)
    if bar is not None:
        _draw_scalebar(draw, bar, left, top + dh)
    shown = f"image stack: frames {', '.join(str(f + 1) for f in frames)} of {n}"
    return _Drawn(canvas, shown, bar)


def _draw_spectrum(view: _View, title: str, subtitle: str, metadata: dict) -> _Drawn:
    (axis,) = view.sig
    spec = spectrum_plot_spec(axis, metadata)
    y = _in_order(_real(np.asarray(view.data)), axis)
    canvas, draw = _canvas("RGB", title, _join(subtitle, f"spectrum, {axis.size} channels"))
    _plot_spectrum(canvas, draw, y, spec, (0, _HEADER, _S, _S))
    return _Drawn(canvas, "spectrum", None, spec.xlabel)


def _draw_linescan(view: _View, title: str, subtitle: str, metadata: dict) -> _Drawn:
    (pos,), (axis,) = view.nav, view.sig
    spec = spectrum_plot_spec(axis, metadata)
    stride = _stride((pos.size,), axis.size * view.data.dtype.itemsize)
    _, spectrum = _spectrum_sums(view.data, stride)
    sub = _join(subtitle, f"line scan of {pos.size} spectra, {axis.size} channels")
    canvas, draw = _canvas("RGB", title, sub)
    top_h = 150
    left, right = _plot_spectrum(canvas, draw, _in_order(spectrum, axis), spec,
                                 (0, _HEADER + top_h + 4, _S, _S))
    # the position x energy image, its energy axis aligned with the plot below
    data = view.data[::stride] if stride > 1 else view.data
    dw, dh = right - left + 1, top_h
    img = _reduce(data, dw, dh)
    u8 = _in_order(_stretch(img, *_limits(img)).T, axis).T
    canvas.paste(_to_image(np.ascontiguousarray(u8), dw, dh).convert("RGB"), (left, _HEADER + 2))
    _vertical_text(canvas, "position", _font(13), 4 + 16, _HEADER + 2 + dh / 2)
    shown = f"line scan: position × {spec.xlabel.split(' (')[0].lower()} image and sum spectrum"
    return _Drawn(canvas, shown + _every(stride), None, spec.xlabel)


def _draw_spectrum_image(view: _View, title: str, subtitle: str, metadata: dict,
                         navigator: tuple[str, _Signal] | None) -> _Drawn:
    (ay, ax), (axis,) = view.nav, view.sig
    spec = spectrum_plot_spec(axis, metadata)
    stride = _stride((ay.size, ax.size), axis.size * view.data.dtype.itemsize)
    sums, spectrum = _spectrum_sums(view.data, stride)
    sub = _join(subtitle, f"spectrum image {_dims([ax.size, ay.size])}, {axis.size} channels")
    canvas, draw = _canvas("RGB", title, sub)
    top = (0, _HEADER + 18, _S, _HEADER + 218)
    if navigator is not None:
        name, image = navigator
        caption, what = f"{name} (navigator)", f"the {name} image"
        bar = _image_panel(canvas, draw, image.data, *image.axes, top)
    else:
        caption = what = "sum over " + (spec.xlabel.split(" (")[0].lower() or "the spectrum")
        sums_axes = [_Axis(sums.shape[0], ay.scale * stride, 0, ay.units),
                     _Axis(sums.shape[1], ax.scale * stride, 0, ax.units)]
        bar = _image_panel(canvas, draw, sums, *sums_axes, top)
    _caption(draw, caption, 0, _HEADER + 1, _S)
    _plot_spectrum(canvas, draw, _in_order(spectrum, axis), spec, (0, top[3] + 4, _S, _S))
    return _Drawn(canvas, f"spectrum image: {what} and sum spectrum{_every(stride)}", bar,
                  spec.xlabel)


def _draw_4d(view: _View, title: str, subtitle: str) -> _Drawn:
    (ny, nx), (qy, qx) = view.nav, view.sig
    stride = _stride((ny.size, nx.size), qy.size * qx.size * view.data.dtype.itemsize)
    pattern, image, what = _fourd_sums(view.data, stride)
    sub = _join(subtitle, f"4D: {_dims([nx.size, ny.size])} positions of "
                          f"{_dims([qx.size, qy.size])}")
    canvas, draw = _canvas("L", title, sub)
    half = (_S - 12) // 2
    top = _HEADER + (_S - _HEADER - half - 20) // 2 + 20  # captions and panels centred
    _caption(draw, "mean diffraction pattern (log)", 4, top - 18, half)
    _caption(draw, what, 8 + half, top - 18, half)
    _image_panel(canvas, draw, pattern, qy, qx, (4, top, 4 + half, top + half), log=True)
    nav_axes = (_Axis(image.shape[0], ny.scale * stride, 0, ny.units),
                _Axis(image.shape[1], nx.scale * stride, 0, nx.units))
    bar = _image_panel(canvas, draw, image, *nav_axes, (8 + half, top, 8 + 2 * half, top + half))
    return _Drawn(canvas, f"4D: mean diffraction pattern (log) and {what}{_every(stride)}", bar)


# --- the whole ------------------------------------------------------------------------------


def _png(img: Image.Image) -> bytes:
    """PNG of an 8-bit L or RGB image. Written here rather than by Pillow, which tries every
    filter on every row: the 'up' filter with zlib's run-length strategy encodes a preview in
    about 2 ms instead of 7-9 ms, to much the same size."""
    rows = np.asarray(img).reshape(img.height, -1)
    raw = np.empty((rows.shape[0], rows.shape[1] + 1), np.uint8)
    raw[:, 0] = 2  # filter 'up': each row minus the one above it, modulo 256
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])
    packer = zlib.compressobj(1, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
    idat = packer.compress(raw.tobytes()) + packer.flush()
    color = {"L": 0, "RGB": 2}[img.mode]
    header = struct.pack(">IIBBBBB", img.width, img.height, 8, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
        for tag, data in ((b"IHDR", header), (b"IDAT", idat), (b"IEND", b"")))


def _title(metadata: dict, name: str) -> str:
    general = metadata.get("General") or {}
    for value in (general.get("title"), general.get("original_filename")):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return PurePosixPath(name).name


def _navigator_for(view: _View, views: list[_View], signals: list[_Signal],
                   name: str) -> tuple[str, _Signal] | None:
    """An image in the same file with the spectrum image's shape (Velox HAADF, Bruker BSE)."""
    ny, nx = (a.size for a in view.nav)
    best = None
    for v, s in zip(views, signals, strict=True):
        if v.kind == "image":
            h, w = v.data.shape
            if abs(h / w - ny / nx) <= 0.02 * ny / nx and (best is None or h * w > best[0]):
                best = (h * w, _title(s.metadata, name), _Signal(v.data, v.sig, s.metadata))
    return None if best is None else (best[1], best[2])


# first bytes of each format: a file without them is not worth handing to the reader
_DM = ((b"\x00\x00\x00\x03", b"\x00\x00\x00\x04"), "DigitalMicrograph")
_TIF = ((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), "TIFF")
_MAGIC = {".dm3": _DM, ".dm4": _DM, ".tif": _TIF, ".tiff": _TIF,
          ".ser": ((b"II\x97\x01",), "TIA .ser"),
          ".emd": ((b"\x89HDF\r\n\x1a\n",), "HDF5 (EMD)"),
          ".bcf": ((b"AAMVHFSS",), "Bruker .bcf"),
          ".spx": ((b"<", b"\xef\xbb\xbf<"), "Bruker .spx")}
_SER_ITEM = {1: 1, 2: 2, 3: 4, 4: 1, 5: 2, 6: 4, 7: 4, 8: 8, 9: 8, 10: 16}  # TIA data type: bytes


def _check_format(path: Path, suffix: str) -> None:
    with path.open("rb") as fh:
        head = fh.read(256)
    if suffix in (".msa", ".emsa"):
        known, what = b"#FORMAT" in head.upper(), "EMSA/MSA"
    elif suffix in _MAGIC:
        magics, what = _MAGIC[suffix]
        known = head.lstrip(b" \t\r\n").startswith(magics)
    else:
        return
    if not known:
        raise _Unreadable(f"unreadable: not {'an' if what[0] in 'AEHI' else 'a'} {what} file")


def _truncation(path: Path, suffix: str) -> str | None:
    """'has N of M bytes' when a file is shorter than its header says (DM states its length,
    a TIA .ser where its last frame ends); None when it is not, or cannot tell."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(64)
    expected = None
    if suffix in (".dm3", ".dm4") and len(head) >= 16:
        version = struct.unpack(">I", head[:4])[0]
        if version == 3:
            expected = struct.unpack(">I", head[4:8])[0] + 20
        elif version == 4:
            expected = struct.unpack(">Q", head[4:12])[0] + 24
    elif suffix == ".ser" and len(head) >= 30 and head[:4] == b"II\x97\x01":
        expected = _ser_length(path, head, size)
    elif suffix in (".msa", ".emsa") and b"#ENDOFDATA" not in path.read_bytes()[-4096:]:
        return "no #ENDOFDATA line"
    return f"has {size} of {expected} bytes" if expected and size < expected else None


def _ser_length(path: Path, head: bytes, size: int) -> int | None:
    """Where the last element of a TIA .ser ends, from its offset array and element header."""
    version, data_type, total = struct.unpack("<H I 4x I", head[4:18])
    wide = version >= 0x220
    offsets_at = struct.unpack("<Q" if wide else "<I", head[22:30] if wide else head[22:26])[0]
    item = 8 if wide else 4
    if offsets_at + 2 * total * item > size:
        return offsets_at + 2 * total * item
    with path.open("rb") as fh:
        fh.seek(offsets_at)
        offsets = struct.unpack(f"<{total}{'Q' if wide else 'I'}", fh.read(total * item))
        last = max(offsets)
        if last + 50 > size:
            return last + 50
        fh.seek(last)
        element = fh.read(50)
    if data_type == 0x4120:  # spectra: calibration (20 bytes), data type, length
        kind, n = struct.unpack("<H I", element[20:26])
        return last + 26 + n * _SER_ITEM.get(kind, 0)
    if data_type == 0x4122:  # images: calibrations (40 bytes), data type, width, height
        kind, w, h = struct.unpack("<H I I", element[40:50])
        return last + 50 + w * h * _SER_ITEM.get(kind, 0)
    return None


def _reason(exc: BaseException, path: Path, base: str) -> str:
    if isinstance(exc, _Unreadable):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "too large to preview: out of memory"
    if isinstance(exc, ModuleNotFoundError):
        return f"unreadable: needs the Python package '{exc.name}'"
    lines = str(exc).replace(str(path), base).strip().splitlines()
    message = " ".join(lines[0].split()) if lines else ""
    try:
        truncated = _truncation(path, PurePosixPath(base).suffix.lower())
    except (OSError, struct.error):
        truncated = None
    short_read = re.search(r"failed to read (\d+) bytes, got (\d+)", message)  # tifffile
    if truncated or short_read:
        return f"unreadable: file is truncated ({truncated or short_read[0]})"
    message = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    if len(message) > 160:
        message = message[:159] + "…"
    reason = f"unreadable: {message}"
    missing = [c for c in companion_names(base) if not path.with_name(c).exists()]
    if missing:
        reason += f" (its companion {missing[0]} was not beside it)"
    return reason


def _placeholder(name: str, title: str, reason: str, signals: int = 0) -> Preview:
    img = Image.new("RGB", (_S, _S), "#f3f3f3")
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, _S - 1, _S - 1), outline="#b0b0b0", width=2)
    draw.text((_S / 2, 150), "No preview", font=_font(30, True), fill="#a03030", anchor="ma")
    y = 205
    for line in _wrap(name, _font(15, True), _S - 60, 3):
        draw.text((_S / 2, y), line, font=_font(15, True), fill=_INK, anchor="ma")
        y += 21
    y += 12
    for line in _wrap(reason, _font(14), _S - 60, 6):
        draw.text((_S / 2, y), line, font=_font(14), fill=_INK, anchor="ma")
        y += 20
    return Preview(_png(img), False, "placeholder", title, signals, "placeholder", reason)


def make_preview(path: Path, name: str | None = None) -> Preview:
    """The preview of one file. Never raises for bad file content: an unreadable or unsupported
    file gives a placeholder with ``ok=False`` and ``error`` set. ``name`` is the object name
    used in messages (defaults to the file name)."""
    path = Path(path)
    name = name or path.name
    base = PurePosixPath(name).name
    suffix = PurePosixPath(base).suffix.lower()
    if suffix not in _READERS:
        what = "metadata of TIA .ser files, previewed with them" if suffix == ".emi" else ""
        reason = f"unsupported file type '{suffix or base}'" + (f": {what}" if what else "")
        return _placeholder(name, base, reason)
    try:
        if path.stat().st_size == 0:
            return _placeholder(name, base, "empty file (0 bytes)")
    except OSError as exc:
        return _placeholder(name, base, f"unreadable: {exc.strerror or exc}")
    signals: list[_Signal] = []
    title = base
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            signals = _read(path, base)
            if not signals:
                raise _Unreadable("unreadable: no data found in the file")
            views = [_view(s) for s in signals]
            pick = max(range(len(views)),
                       key=lambda i: (_RANK[views[i].kind], _size(views[i].data)))
            view, signal = views[pick], signals[pick]
            title = _title(signal.metadata, name)
            subtitle = _join(base if title != base else "",
                             f"signal {pick + 1} of {len(signals)}" if len(signals) > 1 else "",
                             view.note)
            drawn = _draw(view, views, signals, pick, title, subtitle, name)
            png = _png(drawn.image)
    except Exception as exc:  # any failure to read or draw is the file's: say why
        return _placeholder(name, title, _reason(exc, path, base), len(signals))
    shown = f"{title} {drawn.shown}"
    if view.note:
        shown += f" ({view.note})"
    if len(signals) > 1:
        shown += f" (signal {pick + 1} of {len(signals)})"
    return Preview(png, True, view.kind, title, len(signals), shown, None,
                   drawn.scalebar.label if drawn.scalebar else None, drawn.axis_label)


def _draw(view: _View, views: list[_View], signals: list[_Signal], pick: int, title: str,
          subtitle: str, name: str) -> _Drawn:
    metadata = signals[pick].metadata
    if view.kind == "image":
        return _draw_image(view, title, subtitle, signals[pick].original)
    if view.kind == "image-stack":
        return _draw_stack(view, title, subtitle)
    if view.kind == "spectrum":
        return _draw_spectrum(view, title, subtitle, metadata)
    if view.kind == "linescan":
        return _draw_linescan(view, title, subtitle, metadata)
    if view.kind == "spectrum-image":
        navigator = _navigator_for(view, views, signals, name)
        return _draw_spectrum_image(view, title, subtitle, metadata, navigator)
    return _draw_4d(view, title, subtitle)
