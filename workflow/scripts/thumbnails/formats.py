"""The file formats the thumbnail job reads: the one table of them in the repository.

``FORMATS`` has a row per format: its extensions, its reader (a RosettaSciIO plugin, or
``pillow`` for exported pictures, which `thumbnails.signals` reads with Pillow), who makes such
files and what they hold, the first bytes a file of it starts with, whether it is read whole even
when large, and the file that sits beside it. The book's formats page is made from this table.
From it: ``READERS`` (extension -> reader), ``EAGER``, ``MAGIC``, ``companion_names`` (a TIA
``.ser`` and its ``.emi``), and how long a file's header says it is (``truncation``). Standard
library only: planning imports this without numpy or Pillow.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


@dataclass(frozen=True)
class Format:
    name: str  # e.g. "Gatan DigitalMicrograph"
    extensions: tuple[str, ...]  # lower case, with the dot; the first is the usual one
    reader: str  # the RosettaSciIO plugin, or "pillow"
    holds: str  # what such files hold, as the formats page says it
    magic: tuple[bytes, ...] = ()  # a file starts with one of these (after blanks), if given
    short: str = ""  # the name in "not a ... file", when not `name`
    eager: bool = False  # read whole even when large (the reader cannot read lazily)
    companion: str = ""  # the file beside it that the reader also reads, e.g. "foo.emi"


_HDF5 = (b"\x89HDF\r\n\x1a\n",)
_ZIP = (b"PK\x03\x04",)
FORMATS: tuple[Format, ...] = (
    Format(
        "Gatan DigitalMicrograph",
        (".dm3", ".dm4"),
        "digitalmicrograph",
        "images, image stacks, spectra, spectrum images and 4D-STEM scans",
        (b"\x00\x00\x00\x03", b"\x00\x00\x00\x04"),
        "DigitalMicrograph",
    ),
    Format(
        "FEI/Thermo Fisher TIA",
        (".ser",),
        "tia",
        "images, image stacks, spectra, line scans, spectrum images and diffraction scans",
        (b"II\x97\x01",),
        "TIA .ser",
        eager=True,  # the TIA reader loads the whole .ser even when lazy (twice, in fact)
        companion="the .emi of the same name without _1, _2, ...: its calibration and metadata",
    ),
    Format(
        "TIFF",
        (".tif", ".tiff"),
        "tiff",
        "SEM and TEM images, calibrated from FEI/Thermo Fisher, Zeiss, TVIPS, Olympus, JEOL tags",
        (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
    ),
    Format(
        "EMSA/MSA",
        (".msa", ".emsa"),
        "msa",
        "a spectrum, as text",
        eager=True,  # small text
    ),
    Format(
        "Electron Microscopy Dataset (Velox, NCEM, prismatic)",
        (".emd",),
        "emd",
        "images, spectrum images with their HAADF image, 4D-STEM scans",
        _HDF5,
        "HDF5 (EMD)",
    ),
    Format(
        "Bruker Esprit spectrum image",
        (".bcf",),
        "bruker",
        "EDS spectrum images with their SEM images",
        (b"AAMVHFSS",),
        "Bruker .bcf",
    ),
    Format(
        "Bruker Esprit spectrum",
        (".spx",),
        "bruker",
        "an EDS spectrum",
        (b"<", b"\xef\xbb\xbf<"),
        "Bruker .spx",
    ),
    Format(
        "EDAX TEAM/Genesis spectrum",
        (".spc",),
        "edax",
        "an EDS spectrum",
        eager=True,  # a few kilobytes
    ),
    Format(
        "MRC",
        (".mrc",),
        "mrc",
        "images, tilt series and volumes (tomography, cryo-EM), DE camera movies",
    ),
    Format(
        "HyperSpy HDF5",
        (".hspy",),
        "hspy",
        "any signal saved by HyperSpy",
        _HDF5,
        "HDF5 (HyperSpy)",
    ),
    Format(
        "HyperSpy zarr, zipped",
        (".zspy",),
        "zspy",
        "any signal saved by HyperSpy with a zip store (a .zspy folder is many objects: not read)",
        _ZIP,
        "zipped .zspy",
    ),
    Format(
        "Quantum Detectors Merlin",
        (".mib",),
        "quantumdetector",
        "4D-STEM scans and image series from a Merlin camera",
        (b"MQ1,",),
        "Merlin .mib",
        companion="the .hdr of the same name: the scan's shape",
    ),
    Format(
        "NanoMegas ASTAR blockfile",
        (".blo",),
        "blockfile",
        "precession diffraction scans (4D)",
        (b"IMGBLO",),
        "ASTAR .blo",
    ),
    Format(
        "CEOS Panta Rhei",
        (".prz",),
        "pantarhei",
        "images and stacks; calibrated when written by Panta Rhei 24.03 or later",
        _ZIP,
        "Panta Rhei .prz",
        # its lazy mode maps data.npy inside the zip, which fails when the zip is compressed,
        # as HyperSpy writes it ("mmap length is greater than file size")
        eager=True,
    ),
    Format(
        "PNG picture",
        (".png",),
        "pillow",
        "an exported image or screenshot, in its colours",
        (b"\x89PNG\r\n\x1a\n",),
        "PNG",
    ),
    Format(
        "JPEG picture",
        (".jpg", ".jpeg"),
        "pillow",
        "an exported image or photograph, in its colours",
        (b"\xff\xd8\xff",),
        "JPEG",
    ),
)
BY_EXTENSION = {ext: f for f in FORMATS for ext in f.extensions}
READERS = {ext: f.reader for ext, f in BY_EXTENSION.items()}  # extension -> reader
EAGER = {f.reader for f in FORMATS if f.eager}
# files read with a file beside them, rather than previewed on their own: why, for the placeholder
COMPANION_ONLY = {
    ".emi": "metadata of TIA .ser files, previewed with them",
    ".hdr": "settings of Merlin .mib files, previewed with them",
}
SER_SERIES = re.compile(r"^(?P<stem>.+)_\d+\.ser$", re.IGNORECASE)

# first bytes of each format: a file without them is not worth handing to the reader
MAGIC = {ext: (f.magic, f.short or f.name) for ext, f in BY_EXTENSION.items() if f.magic}


def is_previewable(name: str) -> bool:
    """Whether a file of this name gets a preview of its own (by extension, any case)."""
    return PurePosixPath(name).suffix.lower() in READERS


def companion_names(name: str, listed: Container[str] | None = None) -> list[str]:
    """Other object names that must sit beside ``name`` to read it fully: a TIA ``foo_1.ser``
    keeps its metadata (calibration units, date) in ``foo.emi``, a Merlin ``foo.mib`` the shape
    of its scan in ``foo.hdr``. With ``listed`` (the names there are), each as it is spelled
    there: ``foo.EMI`` beside ``foo_1.ser`` is its companion."""
    match = SER_SERIES.match(name)
    if match:
        spelt = [match["stem"] + (".EMI" if name.endswith(".SER") else ".emi")]
        if listed is None:
            return spelt
        spelt += [match["stem"] + ext for ext in (".emi", ".EMI", ".Emi")]
        return [next((c for c in spelt if c in listed), spelt[0])]
    if name.endswith(".mib"):  # the reader looks for name.replace(".mib", ".hdr") only
        return [name[: -len(".mib")] + ".hdr"]
    return []


def wrong_format(path: Path, suffix: str) -> str | None:
    """E.g. "not a TIFF file" when the file lacks the first bytes of the format its extension
    names; None when it has them (or the format has no such mark)."""
    with path.open("rb") as fh:
        head = fh.read(256)
    if suffix in (".msa", ".emsa"):
        known, what = b"#FORMAT" in head.upper(), "EMSA/MSA"
    elif suffix in MAGIC:
        magics, what = MAGIC[suffix]
        known = head.lstrip(b" \t\r\n").startswith(magics)
    else:
        return None
    return None if known else f"not {'an' if what[0] in 'AEHI' else 'a'} {what} file"


# MRC2014 mode: bytes per value (101: 4-bit integers, two to a byte)
_MRC_ITEM = {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 6: 2, 12: 2, 101: 0.5}
_SER_ITEM = {1: 1, 2: 2, 3: 4, 4: 1, 5: 2, 6: 4, 7: 4, 8: 8, 9: 8, 10: 16}  # TIA data type: bytes


def truncation(path: Path, suffix: str) -> str | None:
    """'has N of M bytes' when a file is shorter than its header says (DM states its length,
    a TIA .ser where its last frame ends, EDAX .spc and MRC their data's offset and size); None
    when it is not, or cannot tell."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(96)
    expected = None
    if suffix in (".dm3", ".dm4") and len(head) >= 16:
        version = struct.unpack(">I", head[:4])[0]
        if version == 3:
            expected = struct.unpack(">I", head[4:8])[0] + 20
        elif version == 4:
            expected = struct.unpack(">Q", head[4:12])[0] + 24
    elif suffix == ".ser" and len(head) >= 30 and head[:4] == b"II\x97\x01":
        expected = _ser_length(path, head, size)
    elif suffix == ".spc" and len(head) >= 34:  # data offset (int32 at 28), channels (int16)
        start, channels = struct.unpack("<i h", head[28:34])
        expected = start + 4 * channels
    elif suffix == ".mrc" and len(head) >= 96:  # columns, rows, sections, mode; extended header
        nx, ny, nz, mode = struct.unpack("<4i", head[:16])
        (extended,) = struct.unpack("<i", head[92:96])
        item = _MRC_ITEM.get(mode)
        if item and min(nx, ny, nz, extended + 1) > 0:
            expected = 1024 + extended + int(nx * ny * nz * item)
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
