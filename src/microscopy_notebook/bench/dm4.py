"""A DigitalMicrograph 4 writer, for the size benchmark: no library writes .dm4, and a facility's
largest files are often .dm4 (spectrum images, 4D-STEM).

The file is what Gatan's software writes at its simplest: one image in ``ImageList`` with its
data, dimensions and calibrations, tags in the DM4 layout (big-endian tag headers, little-endian
values) that RosettaSciIO's reader parses. Data is given as C-order blocks, so a file of many
gigabytes is written without holding it: the array is C-order over the reversed DM dimensions
(DM lists x first), e.g. a spectrum image (energy, y, x) as GMS stores it, energy plane by plane.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np

_TYPES = {"<i2": 2, "<i4": 3, "<u2": 4, "<u4": 5, "<f4": 6, "<f8": 7, "|u1": 10, "<i8": 11}
_DATA_TYPE = {"<i2": 1, "<f4": 2, "|u1": 6, "<i4": 7, "<u2": 10, "<u4": 11, "<f8": 12}


def _name(tag_id: int, name: str) -> bytes:
    raw = name.encode("latin-1")
    return struct.pack(">BH", tag_id, len(raw)) + raw


def _data(name: str, infos: list[int], payload: bytes) -> bytes:
    body = b"%%%%" + struct.pack(f">Q{len(infos)}Q", len(infos), *infos) + payload
    return _name(21, name) + struct.pack(">Q", len(body)) + body


def _value(name: str, value: float | int, code: str) -> bytes:
    dtype = np.dtype(code)
    return _data(name, [_TYPES[dtype.str]], np.array(value, dtype).tobytes())


def _text(name: str, text: str) -> bytes:
    chars = np.frombuffer(text.encode("utf-16-le"), "<u2")
    return _data(name, [20, 4, len(chars)], chars.tobytes())


def _group(name: str, entries: list[bytes]) -> bytes:
    body = struct.pack(">BBQ", 0, 1, len(entries)) + b"".join(entries)
    return _name(20, name) + struct.pack(">Q", len(body)) + body


def write_dm4(
    path: Path,
    shape: tuple[int, ...],
    dtype: str,
    blocks: Iterable[np.ndarray],
    calibrations: list[tuple[float, float, str]],
    title: str,
    tags: dict[str, str] | None = None,
) -> None:
    """Write ``blocks`` (C order, together ``shape``) as a .dm4 file; ``calibrations`` are
    (origin, scale, units) per axis of ``shape``; ``tags`` go under ImageTags/Meta Data (e.g.
    ``{"Format": "Spectrum image", "Signal": "EELS"}``)."""
    dt = np.dtype(dtype).newbyteorder("<")
    count = math.prod(shape)
    dims = [_value("", n, "<i4") for n in shape[::-1]]
    cal = [
        _group("", [_value("Origin", o, "<f4"), _value("Scale", s, "<f4"), _text("Units", u)])
        for o, s, u in calibrations[::-1]
    ]
    brightness = _group(
        "Brightness",
        [_value("Origin", 0.0, "<f4"), _value("Scale", 1.0, "<f4"), _text("Units", "")],
    )
    data_head = _name(21, "Data")
    infos = [20, _TYPES[dt.str], count]
    body_head = b"%%%%" + struct.pack(f">Q{len(infos)}Q", len(infos), *infos)
    data_size = len(body_head) + count * dt.itemsize
    before = [
        _group("Calibrations", [brightness, _group("Dimension", cal)]),
    ]
    after = [
        _value("DataType", _DATA_TYPE[dt.str], "<i4"),
        _group("Dimensions", dims),
        _value("PixelDepth", dt.itemsize, "<i4"),
    ]
    meta = [_text(k, v) for k, v in (tags or {}).items()]
    rest = _group("ImageTags", [_group("Meta Data", meta)]) + _text("Name", title)
    image_entries = len(before) + 1 + len(after)
    image_data_body = (
        struct.pack(">BBQ", 0, 1, image_entries)
        + b"".join(before)
        + data_head
        + struct.pack(">Q", data_size)
        + body_head
    )
    image_data_len = len(image_data_body) + count * dt.itemsize + sum(len(a) for a in after)
    image_body_head = struct.pack(">BBQ", 0, 1, 3)  # ImageData, ImageTags, Name
    image_len = len(image_body_head) + len(_name(20, "ImageData")) + 8 + image_data_len + len(rest)
    list_body_head = struct.pack(">BBQ", 0, 1, 1)
    list_len = len(list_body_head) + len(_name(20, "")) + 8 + image_len
    root_head = struct.pack(">BBQ", 0, 1, 1)
    root_len = len(root_head) + len(_name(20, "ImageList")) + 8 + list_len
    with path.open("wb") as fh:
        fh.write(struct.pack(">IQI", 4, root_len, 1))  # version, length less 24, little-endian
        fh.write(root_head + _name(20, "ImageList") + struct.pack(">Q", list_len))
        fh.write(list_body_head + _name(20, "") + struct.pack(">Q", image_len))
        fh.write(image_body_head + _name(20, "ImageData") + struct.pack(">Q", image_data_len))
        fh.write(image_data_body)
        written = 0
        for block in blocks:
            block = np.ascontiguousarray(block, dt)
            fh.write(block.tobytes())
            written += block.size
        if written != count:
            raise ValueError(f"{written} values written, the shape holds {count}")
        fh.write(b"".join(after) + rest)
        fh.write(b"\x00" * 8)  # DM4 files end with eight zero bytes
