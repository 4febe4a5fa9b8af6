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
                    A colour image (an exported .png or .jpg) keeps its colours, unstretched.
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

Large files: what the header says a file decodes to decides how it is read. Past
``signals.LAZY_BYTES`` the data stays in the file and is read in pieces, in the order its bytes lie
(``stored``); a file decoding to more than ``budget`` (``signals.BUDGET``) whose format is read
only whole, or whose pieces are each larger, gets a placeholder: "too large to preview: decodes
to 6.7 GiB, more than the 512 MiB a preview may hold, ...".

Where the rest is: ``formats`` (which files, which reader), ``signals`` (reading, kinds),
``reduce`` (bounded memory: data read in bands; spectrum images and 4D data read at most
``READ_BUDGET`` bytes, beyond that one scan position in n each way, as ``Preview.shown`` says),
``canvas`` (title, fonts, scalebar, PNG encoding) and ``draw/`` (one module per kind).
"""

from __future__ import annotations

import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageDraw

from .canvas import INK, PREVIEW_SIZE, SIZE, Drawn, encode_png, join_parts, load_font, wrap
from .draw.fourd import draw_4d
from .draw.linescan import draw_linescan
from .draw.micrograph import draw_micrograph
from .draw.picture import colour_fields, draw_picture
from .draw.spectrum import draw_spectrum
from .draw.spectrum_image import draw_spectrum_image, navigator_for
from .draw.stack import draw_stack
from .formats import COMPANION_ONLY, READERS, companion_names, truncation
from .signals import (
    BUDGET,
    Beside,
    Signal,
    Unreadable,
    View,
    read_signals,
    size_of,
    title_of,
    view_of,
)

__all__ = ["PREVIEW_SIZE", "Preview", "make_preview"]

_RANK = {"spectrum": 0, "linescan": 1, "image": 2, "image-stack": 3, "4d": 4, "spectrum-image": 5}


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


def _reason(exc: BaseException, path: Path, base: str) -> str:
    if isinstance(exc, Unreadable):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "too large to preview: out of memory"
    text = str(exc)
    eof = re.search(r"truncated file: eof = (\d+).*?stored_eof = (\d+)", text)  # HDF5
    if eof:
        return f"unreadable: file is truncated (has {eof[1]} of {eof[2]} bytes)"
    try:  # the header's own length, when the format states one: the most exact reason
        truncated = truncation(path, PurePosixPath(base).suffix.lower())
    except (OSError, struct.error):
        truncated = None
    if "mmap length is greater than file size" in text:  # a memory map past the file's end
        why = truncated or "its data runs past the end of the file"
        return f"unreadable: file is truncated ({why})"
    if isinstance(exc, ModuleNotFoundError):
        return f"unreadable: needs the Python package '{exc.name}'"
    lines = str(exc).replace(str(path), base).strip().splitlines()
    message = " ".join(lines[0].split()) if lines else ""
    short_read = re.search(r"failed to read (\d+) bytes, got (\d+)", message)  # tifffile
    if truncated or short_read:
        return f"unreadable: file is truncated ({truncated or short_read[0]})"
    message = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    if len(message) > 160:
        message = message[:159] + "…"
    reason = f"unreadable: {message}"
    missing = [c for c in companion_names(base, Beside(path)) if not path.with_name(c).exists()]
    if missing:
        reason += f" (its companion {missing[0]} was not beside it)"
    return reason


def _placeholder(name: str, title: str, reason: str, signals: int = 0) -> Preview:
    img = Image.new("RGB", (SIZE, SIZE), "#f3f3f3")
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, SIZE - 1, SIZE - 1), outline="#b0b0b0", width=2)
    draw.text((SIZE / 2, 150), "No preview", font=load_font(30, True), fill="#a03030", anchor="ma")
    y = 205
    for line in wrap(name, load_font(15, True), SIZE - 60, 3):
        draw.text((SIZE / 2, y), line, font=load_font(15, True), fill=INK, anchor="ma")
        y += 21
    y += 12
    for line in wrap(reason, load_font(14), SIZE - 60, 6):
        draw.text((SIZE / 2, y), line, font=load_font(14), fill=INK, anchor="ma")
        y += 20
    return Preview(encode_png(img), False, "placeholder", title, signals, "placeholder", reason)


def make_preview(path: Path, name: str | None = None, budget: int = BUDGET) -> Preview:
    """The preview of one file. Never raises for bad file content: an unreadable or unsupported
    file gives a placeholder with ``ok=False`` and ``error`` set. ``name`` is the object name
    used in messages (defaults to the file name). ``budget``: the most decoded data the preview
    may hold at once; larger files are read in pieces, or get a placeholder saying why."""
    path = Path(path)
    name = name or path.name
    base = PurePosixPath(name).name
    suffix = PurePosixPath(base).suffix.lower()
    if suffix not in READERS:
        what = COMPANION_ONLY.get(suffix, "")
        reason = f"unsupported file type '{suffix or base}'" + (f": {what}" if what else "")
        return _placeholder(name, base, reason)
    try:
        if path.stat().st_size == 0:
            return _placeholder(name, base, "empty file (0 bytes)")
    except OSError as exc:
        return _placeholder(name, base, f"unreadable: {exc.strerror or exc}")
    signals: list[Signal] = []
    title = base
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            signals = read_signals(path, base, budget)
            if not signals:
                raise Unreadable("unreadable: no data found in the file")
            views = [view_of(s) for s in signals]
            pick = max(
                range(len(views)), key=lambda i: (_RANK[views[i].kind], size_of(views[i].data))
            )
            view, signal = views[pick], signals[pick]
            title = title_of(signal.metadata, name)
            subtitle = join_parts(
                base if title != base else "",
                f"signal {pick + 1} of {len(signals)}" if len(signals) > 1 else "",
                view.note,
            )
            drawn = _draw(view, views, signals, pick, title, subtitle, name)
            png = encode_png(drawn.image)
    except Exception as exc:  # any failure to read or draw is the file's: say why
        return _placeholder(name, title, _reason(exc, path, base), len(signals))
    shown = f"{title} {drawn.shown}"
    if view.note:
        shown += f" ({view.note})"
    if len(signals) > 1:
        shown += f" (signal {pick + 1} of {len(signals)})"
    return Preview(
        png,
        True,
        view.kind,
        title,
        len(signals),
        shown,
        None,
        drawn.scalebar.label if drawn.scalebar else None,
        drawn.axis_label,
    )


def _draw(
    view: View,
    views: list[View],
    signals: list[Signal],
    pick: int,
    title: str,
    subtitle: str,
    name: str,
) -> Drawn:
    metadata = signals[pick].metadata
    if view.kind == "image" and colour_fields(view.data):
        return draw_picture(view, title, subtitle)
    if view.kind == "image":
        return draw_micrograph(view, title, subtitle, signals[pick].original)
    if view.kind == "image-stack":
        return draw_stack(view, title, subtitle)
    if view.kind == "spectrum":
        return draw_spectrum(view, title, subtitle, metadata)
    if view.kind == "linescan":
        return draw_linescan(view, title, subtitle, metadata)
    if view.kind == "spectrum-image":
        navigator = navigator_for(view, views, signals, name)
        return draw_spectrum_image(view, title, subtitle, metadata, navigator)
    return draw_4d(view, title, subtitle)
