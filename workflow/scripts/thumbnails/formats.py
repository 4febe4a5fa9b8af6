"""The file formats the thumbnail job reads: the one table of them in the repository.

For each extension: the RosettaSciIO reader (``READERS``), whether it is read whole even when large
(``EAGER``), the first bytes a file of it starts with (``MAGIC``), the files that must sit beside
it (``companion_names``: a TIA ``.ser`` and its ``.emi``), and how long its header says it is
(``truncation``). Standard library only: planning imports this without numpy or Pillow.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Container
from pathlib import Path, PurePosixPath

# extension -> rosettasciio plugin
READERS = {
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
EAGER = {"tia", "msa"}
# files read with a file beside them, rather than previewed on their own: why, for the placeholder
COMPANION_ONLY = {".emi": "metadata of TIA .ser files, previewed with them"}
SER_SERIES = re.compile(r"^(?P<stem>.+)_\d+\.ser$", re.IGNORECASE)

# first bytes of each format: a file without them is not worth handing to the reader
_DM = ((b"\x00\x00\x00\x03", b"\x00\x00\x00\x04"), "DigitalMicrograph")
_TIF = ((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), "TIFF")
MAGIC = {
    ".dm3": _DM,
    ".dm4": _DM,
    ".tif": _TIF,
    ".tiff": _TIF,
    ".ser": ((b"II\x97\x01",), "TIA .ser"),
    ".emd": ((b"\x89HDF\r\n\x1a\n",), "HDF5 (EMD)"),
    ".bcf": ((b"AAMVHFSS",), "Bruker .bcf"),
    ".spx": ((b"<", b"\xef\xbb\xbf<"), "Bruker .spx"),
}


def is_previewable(name: str) -> bool:
    """Whether a file of this name gets a preview of its own (by extension, any case)."""
    return PurePosixPath(name).suffix.lower() in READERS


def companion_names(name: str, listed: Container[str] | None = None) -> list[str]:
    """Other object names that must sit beside ``name`` to read it fully: a TIA ``foo_1.ser``
    keeps its metadata (calibration units, date) in ``foo.emi``. With ``listed`` (the names
    there are), each as it is spelled there: ``foo.EMI`` beside ``foo_1.ser`` is its companion."""
    match = SER_SERIES.match(name)
    if not match:
        return []
    spelt = [match["stem"] + (".EMI" if name.endswith(".SER") else ".emi")]
    if listed is not None:
        spelt += [match["stem"] + ext for ext in (".emi", ".EMI", ".Emi")]
    return [next((c for c in spelt if c in listed), spelt[0]) if listed is not None else spelt[0]]


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


_SER_ITEM = {1: 1, 2: 2, 3: 4, 4: 1, 5: 2, 6: 4, 7: 4, 8: 8, 9: 8, 10: 16}  # TIA data type: bytes


def truncation(path: Path, suffix: str) -> str | None:
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
