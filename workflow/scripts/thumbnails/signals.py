"""Reading: a file's signals through its RosettaSciIO reader, and which of them is what kind.

Readers are imported on first use, straight from ``rsciio`` (no ``hyperspy.api``). What a file
decodes to is read from its header first (``header_of``): data of more than ``LAZY_BYTES`` is left
in the file and read in pieces in the order its bytes lie (``stored``), and data of more than the
budget that its format cannot read in pieces gets a reason instead (``Unreadable``). A ``Signal``
is the data with its calibrated axes and metadata; a ``View`` is a signal laid out for drawing,
navigation axes first, with its kind: spectrum, linescan, image, image-stack, spectrum-image or 4d.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import math
import struct
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .formats import EAGER, READERS, companion_names, truncation, wrong_format

LAZY_BYTES = 64 * 2**20  # data decoding to more than this is read in pieces where it can be
BUDGET = 512 * 2**20  # the most decoded data one preview may hold at once

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


def read_signals(path: Path, base: str, budget: int = BUDGET) -> list[Signal]:
    """The signals in the file at path, whose object name ends in base (it gives the format).

    What the header says the data decodes to decides how it is read: whole when small; left in
    the file and read in pieces (``stored``) when large; and, when it is larger than ``budget``
    and its format cannot be read in pieces, not at all (`Unreadable`, saying so)."""
    suffix = PurePosixPath(base).suffix.lower()
    plugin = READERS[suffix]
    wrong = wrong_format(path, suffix)
    if wrong:
        raise Unreadable(f"unreadable: {wrong}")
    if plugin == "pillow":  # decoded at a reduced size, with a limit of its own
        return [_signal(d) for d in _read_picture(path)]
    head = header_of(path, plugin)
    if head.decoded <= min(LAZY_BYTES, budget):
        if plugin == "tia":
            dicts = _read_ser(path, base)
        elif head.parsed is not None:  # a DM file's tags, parsed once for its header
            dicts = _dm_dicts(path, head.parsed)
        else:
            dicts = import_reader(plugin).file_reader(str(path))
        return [_signal(d) for d in dicts]
    if head.pieces is not None and head.piece <= budget:
        return [_signal(d) for d in _read_in_pieces(path, plugin, head, budget)]
    if head.decoded > budget:
        how = (
            f"its pieces decode to {size_text(head.piece)} each"
            if head.pieces is not None
            else f"{FORMAT_NAMES.get(plugin, plugin)} files are read whole"
        )
        raise Unreadable(
            f"too large to preview: decodes to {size_text(head.decoded)}, more than the "
            f"{size_text(budget)} a preview may hold, and {how}"
        )
    if plugin == "tia":
        return [_signal(d) for d in _read_ser(path, base)]
    if plugin in EAGER:
        return [_signal(d) for d in import_reader(plugin).file_reader(str(path))]
    import dask

    reader = import_reader(plugin)
    # small chunks: a band of rows then reads little more than itself
    with dask.config.set({"array.chunk-size": "16MiB"}):
        dicts = reader.file_reader(str(path), lazy=True)
    return [_signal(d) for d in dicts]


FORMAT_NAMES = {"tia": "TIA", "bruker": "Bruker", "msa": "MSA"}


def size_text(n: int) -> str:
    """Bytes as people say them: "6.7 GiB", "512 MiB"."""
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= factor:
            return f"{n / factor:.3g} {unit}"
    return f"{n} bytes"


@dataclass
class Header:
    """What a file's header says of its data before any of it is decoded."""

    decoded: int  # bytes of all its arrays, decoded
    piece: int = 0  # bytes of the largest piece decoded whole when read in pieces
    pieces: Any = None  # how to read it in pieces (format-specific), None: it cannot be
    parsed: Any = field(default=None, repr=False)  # DM: the reader with its tags parsed


def header_of(path: Path, plugin: str) -> Header:
    """The decoded size from the header: TIFF tags, DigitalMicrograph tags, HDF5 dataset shapes,
    the TIA offset table; other formats are taken as decoding to their file size."""
    size = path.stat().st_size
    try:
        if plugin == "tiff":
            return _tiff_header(path)
        if plugin == "digitalmicrograph":
            return _dm_header(path, size)
        if plugin == "emd":
            return _hdf5_header(path)
        if plugin == "tia":
            return Header(max(size, _ser_decoded(path)))
    except Unreadable:
        raise
    except Exception:  # noqa: BLE001 - the reader itself says what is wrong, when it tries
        return Header(size)
    return Header(size)


def _tiff_header(path: Path) -> Header:
    import tifffile

    from .stored import TiffPages

    with tifffile.TiffFile(path) as tif:
        decoded, piece, streams = 0, 0, True
        for series in tif.series:
            decoded += math.prod(series.shape) * np.dtype(series.dtype).itemsize
            try:
                unit = TiffPages(series).unit
            except Exception:  # noqa: BLE001 - a layout TiffPages cannot step through is read whole
                streams = False
                continue
            if series.dataoffset is None:  # compressed or scattered: strips decoded whole
                piece = max(piece, math.prod(unit) * np.dtype(series.dtype).itemsize)
    return Header(decoded, piece, "tiff" if streams else None)


# The DigitalMicrograph tag parser's element types (rsciio ``get_data_reader``) as `struct` codes:
# the values its per-element readers give, each of these the same Python object.
_DM_CODES = {
    2: "h",
    3: "l",
    4: "H",
    5: "L",
    6: "f",
    7: "d",
    8: "B",
    9: "c",
    10: "b",
    11: "q",
    12: "Q",
}


@functools.cache
def _dm_reader() -> type:
    """rsciio's DigitalMicrograph tag parser, reading a tag's array or string in one call where
    it reads element by element, one ``read`` and one unpack each (tens of thousands in a spectrum
    image's tags: most of the parse). The tags it gives are the same; where a read comes back
    short (a truncated file), the reader's own code reads it again, and fails as it does."""
    import_reader("digitalmicrograph")  # with its lazy mode's imports deferred
    api = importlib.import_module("rsciio.digitalmicrograph._api")

    class Reader(api.DigitalMicrographReader):
        def read_array(self, size, enc_eltype, extra=None, skip=False):
            code = _DM_CODES.get(enc_eltype)
            if skip is True or code is None or self.endian not in ("little", "big") or size <= 0:
                return super().read_array(size, enc_eltype, extra, skip)
            unpack = struct.Struct(f"{'<' if self.endian == 'little' else '>'}{size}{code}")
            start = self.f.tell()
            raw = self.f.read(unpack.size)
            if len(raw) < unpack.size:
                self.f.seek(start)
                return super().read_array(size, enc_eltype, extra, skip)
            data = list(unpack.unpack(raw))
            if enc_eltype == 4:  # it's actually a string (as the reader says)
                return "".join([chr(i) for i in data])
            return data

        def read_string(self, length, skip=False):
            if skip is True or self.endian not in ("little", "big") or length <= 0:
                return super().read_string(length, skip)
            start = self.f.tell()
            data = self.f.read(length)
            if len(data) < length:
                self.f.seek(start)
                return super().read_string(length, skip)
            try:
                return data.decode("utf8")
            except Exception:  # noqa: BLE001 - as the reader: latin-1 when it is not UTF-8
                return data.decode("latin-1", errors="ignore")

    return Reader


def _dm_header(path: Path, size: int) -> Header:
    """From the DigitalMicrograph reader's tag parser, which reads no data: each image's size
    and where it starts, which must lie inside the file."""
    with path.open("rb") as fh:
        dm = _dm_reader()(fh)
        try:
            dm.parse_file()
        except Exception:  # a data count past the end derails the tags after it: say so
            _data_inside(dm.tags_dict, size, path)
            raise
        images = dm.get_image_dictionaries() or []
    for image in images:
        _data_inside(image, size, path)
    decoded = sum(int(i["ImageData"]["Data"]["size_bytes"]) for i in images)
    return Header(decoded, 0, "dm", dm if images else None)


def _dm_dicts(path: Path, dm: Any) -> list[dict]:
    """The data, axes, metadata and original metadata the DigitalMicrograph reader's
    ``file_reader(path)`` gives (rsciio 0.15; not HyperSpy's mapping, unused here), from tags
    already parsed for the header: the file's tag tree is parsed once, not twice (the parse is
    most of a small DM file's reading). Nor is that tree deep-copied for each signal, as the
    reader does because it then changes it: here each signal's ``original_metadata`` is a new
    dict holding its own image's tags beside the others, which are shared and only read."""
    api = importlib.import_module("rsciio.digitalmicrograph._api")
    with path.open("rb") as f:
        images = [api.ImageObject(imdict, f) for imdict in dm.get_image_dictionaries()]
        others = {k: v for k, v in dm.tags_dict.items() if k != "ImageList"}
        dicts = []
        for image in images:
            image.filename = str(path)
            metadata = image.get_metadata()
            metadata["General"]["original_filename"] = path.name
            dicts.append(
                {
                    "data": image.get_data(False, "auto"),
                    "axes": image.get_axes_dict(),
                    "metadata": metadata,
                    "original_metadata": {
                        **others,
                        "ImageList": {"TagGroup0": image.imdict.to_dict()},
                    },
                }
            )
    return dicts


def _data_inside(tags: Any, size: int, path: Path) -> None:
    """Raise `Unreadable` for an array of the parsed tags that runs past the file's end."""
    if not isinstance(tags, dict):
        return
    if "offset" in tags and "size_bytes" in tags:
        end = int(tags["offset"]) + int(tags["size_bytes"])
        if end > size:
            short = (
                truncation(path, path.suffix.lower()) if path.suffix.lower() in READERS else None
            )
            if short:  # the file's own length says it was cut short
                raise Unreadable(f"unreadable: file is truncated ({short})")
            raise Unreadable(
                "unreadable: its header claims more data than the file holds (data to byte "
                f"{end}, the file has {size} bytes)"
            )
    for value in tags.values():
        _data_inside(value, size, path)


def _hdf5_header(path: Path) -> Header:
    import h5py

    found: list[Any] = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda _, o: found.append(o) if isinstance(o, h5py.Dataset) else None)
        decoded = sum(d.size * d.dtype.itemsize for d in found)
        piece = max((math.prod(d.chunks) * d.dtype.itemsize for d in found if d.chunks), default=0)
    return Header(decoded, piece, "hdf5")


def _ser_decoded(path: Path) -> int:
    """A TIA .ser's elements, decoded: the first one's size times their number."""
    import struct

    with path.open("rb") as fh:
        head = fh.read(30)
        version, data_type, total = struct.unpack("<H I 4x I", head[4:18])
        wide = version >= 0x220
        fh.seek(struct.unpack("<Q" if wide else "<I", head[22:30] if wide else head[22:26])[0])
        first = struct.unpack("<Q" if wide else "<I", fh.read(8 if wide else 4))[0]
        fh.seek(first)
        element = fh.read(50)
    items = {1: 1, 2: 2, 3: 4, 4: 1, 5: 2, 6: 4, 7: 4, 8: 8, 9: 8, 10: 16}
    if data_type == 0x4120:
        kind, n = struct.unpack("<H I", element[20:26])
        return total * n * items.get(kind, 0)
    kind, w, h = struct.unpack("<H I I", element[40:50])
    return total * w * h * items.get(kind, 0)


def _read_in_pieces(path: Path, plugin: str, head: Header, budget: int) -> list[dict]:
    """The reader's signals with their data left in the file (``stored.Stored``): the reader
    gives the axes and metadata (lazily, reading no data), the file's own layout the array."""
    import dask

    from . import stored

    most = max(1, budget // 4)  # a piece, its reduction and the results within the budget
    size = path.stat().st_size

    def left(backend: Any) -> stored.Stored:
        if isinstance(backend, stored.Raw):
            end = backend.offset + math.prod(backend.shape) * backend.dtype.itemsize
            if end > size:
                raise Unreadable(f"unreadable: file is truncated (has {size} of {end} bytes)")
        return stored.Stored(backend, most=most)

    with dask.config.set({"array.chunk-size": "16MiB"}):
        dicts = import_reader(plugin).file_reader(str(path), lazy=True)
    if head.pieces == "tiff":
        import tifffile

        tif = tifffile.TiffFile(path)
        for d, series in zip(dicts, tif.series, strict=True):
            if series.dataoffset is not None:  # uncompressed, in one run: read as it lies
                dtype = np.dtype(series.dtype).newbyteorder(tif.byteorder)
                backend = stored.Raw(path, series.dataoffset, series.shape, dtype)
            else:
                backend = stored.TiffPages(series)
            if d["data"].dtype.names:  # RGB(A) as the reader gives it: one structured value
                backend = stored.Samples(backend, d["data"].dtype)
            d["data"] = _checked(left(backend), d["data"])
    elif head.pieces == "dm":
        for d in dicts:
            data = d["original_metadata"]["ImageList"]["TagGroup0"]["ImageData"]["Data"]
            order = "<" if data.get("endian", "little") == "little" else ">"
            dtype = d["data"].dtype.newbyteorder(order)
            raw = stored.Raw(path, data["offset"], d["data"].shape, dtype)
            d["data"] = _checked(left(raw), d["data"])
    elif head.pieces == "hdf5":
        import h5py

        f = h5py.File(path, "r")
        sets: list[Any] = []
        f.visititems(lambda _, o: sets.append(o) if isinstance(o, h5py.Dataset) else None)
        for d in dicts:
            d["data"] = _matching_dataset(d["data"], sets, stored, most)
    return dicts


def _checked(array: Any, lazy: Any) -> Any:
    """The stored array where it has the reader's shape and type; the reader's own otherwise."""
    ok = array.shape == tuple(lazy.shape) and array.dtype == lazy.dtype
    return array if ok else lazy


def _matching_dataset(lazy: Any, sets: list[Any], stored: types.ModuleType, most: int) -> Any:
    """The HDF5 dataset the reader's array is, read in pieces, in the reader's axis order: the
    EMD readers give datasets transposed (NCEM: all axes reversed; Velox: frames first), so the
    order is the one whose values agree with the reader's at a few places."""
    import itertools

    shape = tuple(lazy.shape)
    for dset in sets:
        if dset.dtype != lazy.dtype or sorted(dset.shape) != sorted(shape) or dset.ndim < 2:
            continue
        base = stored.Stored(stored.H5(dset), most=most)
        perms = {
            p
            for p in itertools.permutations(range(dset.ndim))
            if tuple(dset.shape[i] for i in p) == shape
        }
        rng = np.random.default_rng(0)
        probes = [tuple(int(rng.integers(n)) for n in shape) for _ in range(3)]
        for perm in sorted(perms, key=lambda p: p != tuple(range(len(p)))[::-1]):
            view = base.transpose(perm)
            if all(np.asarray(view[p]) == np.asarray(lazy[p]) for p in probes):
                return view
    return lazy


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


class Beside:
    """The names of files in the folder of ``path``, for ``formats.companion_names``."""

    def __init__(self, path: Path) -> None:
        self.folder = path.parent

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (self.folder / PurePosixPath(name).name).exists()


def _read_ser(path: Path, base: str) -> list[dict]:
    """A .ser with the metadata of its .emi when that sits beside it (diffraction patterns are
    then in 1/nm rather than a guessed nm); alone otherwise."""
    # the public file_reader takes a .ser alone, or an .emi with all its .ser files
    tia = importlib.import_module("rsciio.tia._api")
    if not hasattr(tia, "ser_reader"):  # a later rosettasciio moved it: lose the .emi only
        return importlib.import_module("rsciio.tia").file_reader(str(path))
    objects = None
    for companion in companion_names(base, Beside(path)):
        emi = path.with_name(PurePosixPath(companion).name)
        if emi.exists():
            try:
                objects = tia.get_xml_info_from_emi(str(emi)) or None
            except Exception:  # noqa: BLE001 - a broken .emi must not cost the data its preview
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
