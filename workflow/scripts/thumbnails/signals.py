"""Reading: a file's signals through its RosettaSciIO reader, and which of them is what kind.

Readers are imported on first use, straight from ``rsciio`` (no ``hyperspy.api``). Files over
``LAZY_BYTES`` are read lazily (memory maps or dask) where the reader can. A ``Signal`` is the
data with its calibrated axes and metadata; a ``View`` is a signal laid out for drawing, navigation
axes first, with its kind: spectrum, linescan, image, image-stack, spectrum-image or 4d.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .formats import EAGER, READERS, companion_names, wrong_format

LAZY_BYTES = 64 * 2**20  # above this a file is read lazily where the reader can

# Imported by a reader at its top for its lazy mode only. The DigitalMicrograph reader's
# `memmap_distributed` brings dask.array and, through it, sparse and numba: 0.5 s with compiled
# bytecode, 1.5 s without, in every batch process that meets a .dm3 or .dm4, for nothing when the
# files are read whole. Until one of these functions is called, a stand-in module holds its name.
DEFERRED = {"rsciio.utils._distributed": ("memmap_distributed",)}


class Unreadable(Exception):
    """A reason, already worded for the placeholder."""


@dataclass
class Axis:
    size: int
    scale: float = 1.0
    offset: float = 0.0
    units: str = ""
    name: str = ""
    navigate: bool | None = None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def is_spectral(axis: Axis) -> bool:
    """An energy or wavelength axis: the signal axis of spectra, whatever the reader flagged."""
    name = axis.name.lower()
    return (
        axis.units.strip() in ("eV", "keV", "meV", "MeV")
        or "energy" in name
        or ("wavelength" in name)
    )


def make_axis(d: Mapping, size: int) -> Axis:
    if d.get("axis") is not None and len(d["axis"]) > 1:  # non-uniform: drawn as if uniform
        values = np.asarray(d["axis"], dtype=float)
        scale, offset = (values[-1] - values[0]) / (len(values) - 1), values[0]
    else:
        scale, offset = d.get("scale", 1.0), d.get("offset", 0.0)
    scale = float(scale) if scale is not None else 1.0
    offset = float(offset) if offset is not None else 0.0
    nav = d.get("navigate")
    return Axis(
        size,
        scale,
        offset,
        _text(d.get("units")).strip(),
        _text(d.get("name")).strip(),
        None if nav is None else bool(nav),
    )


@dataclass
class Signal:
    data: Any  # numpy array, memmap or dask array
    axes: list[Axis]
    metadata: dict
    original: dict = field(default_factory=dict)  # the file's own tags


def read_signals(path: Path, base: str) -> list[Signal]:
    """The signals in the file at path, whose object name ends in base (it gives the format)."""
    suffix = PurePosixPath(base).suffix.lower()
    plugin = READERS[suffix]
    wrong = wrong_format(path, suffix)
    if wrong:
        raise Unreadable(f"unreadable: {wrong}")
    lazy = plugin not in EAGER and path.stat().st_size > LAZY_BYTES
    if plugin == "tia":
        dicts = _read_ser(path, base)
    elif plugin == "pillow":
        dicts = _read_picture(path)
    elif lazy:
        import dask

        reader = import_reader(plugin)
        # small chunks: a band of rows then reads little more than itself
        with dask.config.set({"array.chunk-size": "16MiB"}):
            dicts = reader.file_reader(str(path), lazy=True)
    else:
        dicts = import_reader(plugin).file_reader(str(path))
    return [_signal(d) for d in dicts]


def import_reader(plugin: str) -> types.ModuleType:
    """``rsciio.<plugin>``, with the modules of `DEFERRED` standing in until they are used."""
    for name, functions in DEFERRED.items():
        if name not in sys.modules:
            _stand_in(name, functions)
    return importlib.import_module(f"rsciio.{plugin}")


def _stand_in(name: str, functions: tuple[str, ...]) -> None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:  # a later rosettasciio moved it: import as it says
        return
    stand_in = types.ModuleType(name, "imported on first call: see thumbnails.signals.DEFERRED")
    stand_in.__spec__ = spec

    def real() -> types.ModuleType:
        if sys.modules.get(name) is stand_in:
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules[name] = stand_in
                raise
        return sys.modules[name]

    for function in functions:

        def call(*args: Any, _function: str = function, **kwargs: Any) -> Any:
            return getattr(real(), _function)(*args, **kwargs)

        setattr(stand_in, function, call)
    sys.modules[name] = stand_in


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


PICTURE_BYTES = 256 * 2**20  # a picture that decodes to more than this is not read
RGB = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])


def _read_picture(path: Path) -> list[dict]:
    """An exported picture (.png, .jpg) read with Pillow, as a reader's dict: grey as numbers,
    colour as R, G, B fields (transparency laid on white). A JPEG is decoded at the smallest of
    1/2, 1/4, 1/8 of its size that still covers a preview; grey saved as colour is grey."""
    from PIL import Image

    with Image.open(path) as im:
        im.draft(im.mode, (512, 512))  # JPEG only: decodes at a reduced scale
        w, h = im.size
        if w * h * len(im.getbands()) > PICTURE_BYTES:
            raise Unreadable(
                f"too large to preview: a {w}x{h} picture decodes to more than "
                f"{PICTURE_BYTES // 2**20} MiB"
            )
        if im.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
            data = np.asarray(im.convert("L") if im.mode in ("1", "LA") else im)
        else:
            rgba = im.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            rgb = np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
            if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
                data = np.ascontiguousarray(rgb[..., 0])
            else:
                data = np.ascontiguousarray(rgb).view(RGB)[..., 0]
    axes = [{"name": n, "navigate": False} for n in ("y", "x")]
    return [{"data": data, "axes": axes, "metadata": {}, "original_metadata": {}}]


def _signal(d: Mapping) -> Signal:
    data = d["data"]
    if hasattr(data, "dask") and data.npartitions == 1:
        # one chunk (a TIFF's memory map): taken as it is; dask's compute() would copy it all
        data = data.to_delayed().ravel()[0].compute(scheduler="synchronous")
    axes_d = list(d.get("axes") or [])
    order = [a.get("index_in_array", i) for i, a in enumerate(axes_d)]
    axes_d = [a for _, a in sorted(zip(order, axes_d, strict=True), key=lambda oa: oa[0])]
    if len(axes_d) != data.ndim:
        axes_d = [{} for _ in range(data.ndim)]
    axes = [make_axis(a, int(n)) for a, n in zip(axes_d, data.shape, strict=True)]
    keep = tuple(slice(None) if a.size > 1 else 0 for a in axes)
    if any(a.size == 1 for a in axes):
        data, axes = data[keep], [a for a in axes if a.size > 1]
    return Signal(data, axes, dict(d.get("metadata") or {}), d.get("original_metadata") or {})


@dataclass
class View:
    kind: str
    data: Any  # navigation axes first, then signal axes
    nav: list[Axis]
    sig: list[Axis]
    note: str  # about dimensions not shown


def view_of(signal: Signal) -> View:
    axes, data = signal.axes, signal.data
    ndim = len(axes)
    if ndim == 0:
        raise Unreadable("unreadable: the file holds a single value, nothing to draw")
    flags = [a.navigate for a in axes]
    if None not in flags and not all(flags):
        sig = [i for i, nav in enumerate(flags) if not nav]
    else:  # the reader did not say: the last two axes are the image
        sig = list(range(max(0, ndim - 2), ndim))
    spectral = [i for i, a in enumerate(axes) if is_spectral(a)]
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
        note = "first of " + " x ".join(f"{axes[i].size} ({axes[i].name or 'axis'})" for i in extra)
        nav = nav[len(extra) :]
    kind = {
        (1, 0): "spectrum",
        (1, 1): "linescan",
        (1, 2): "spectrum-image",
        (2, 0): "image",
        (2, 1): "image-stack",
        (2, 2): "4d",
    }[len(sig), len(nav)]
    return View(kind, data, [axes[i] for i in nav], [axes[i] for i in sig], note)


def real(a: np.ndarray) -> np.ndarray:
    """Numbers to draw: RGB as luminance, complex as amplitude."""
    if a.dtype.names:
        names = {n.upper(): n for n in a.dtype.names}
        if {"R", "G", "B"} <= names.keys():
            return (0.299 * a[names["R"]] + 0.587 * a[names["G"]] + 0.114 * a[names["B"]]).astype(
                np.float32
            )
        return a[a.dtype.names[0]].astype(np.float32)
    if np.iscomplexobj(a):
        return np.abs(a).astype(np.float32)
    if a.dtype.kind not in "biuf":
        raise Unreadable(f"unsupported data type: {a.dtype}")
    return a


def size_of(data: Any) -> int:
    return int(np.prod(data.shape, dtype=np.int64))


def title_of(metadata: dict, name: str) -> str:
    general = metadata.get("General") or {}
    for value in (general.get("title"), general.get("original_filename")):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return PurePosixPath(name).name
