"""What every kind of preview shares: the canvas, fonts, text, the scalebar, the PNG encoding.

A preview is ``PREVIEW_SIZE`` pixels square: the title from the file's metadata on top, a grey line
under it naming the file and what is drawn, then the data (``HEADER`` pixels down). Drawing uses
Pillow only, with matplotlib's bundled DejaVu Sans (no figure is made), and the PNG is encoded here
(see ``encode_png``). The scalebar has a round length (1, 2 or 5 x 10^n, about a quarter of the
width) in the file's calibrated units.
"""

from __future__ import annotations

import importlib.util
import math
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .reduce import limits, reduce_to, stretch
from .signals import Axis

PREVIEW_SIZE = 500
SIZE = PREVIEW_SIZE
HEADER = 58  # title and subtitle band
WHITE, BLACK, GREY, INK = "#ffffff", "#000000", "#666666", "#222222"
LINE, FILL, GRID = "#1f5fa8", "#c9dbf0", "#e4e4e4"


@dataclass(frozen=True)
class ScaleBar:
    value: float  # length in `units`
    units: str
    label: str  # e.g. "50 nm"
    pixels: float  # length on the preview


_LENGTH = {
    "m": 1.0,
    "mm": 1e-3,
    "µm": 1e-6,
    "μm": 1e-6,
    "um": 1e-6,
    "micron": 1e-6,
    "nm": 1e-9,
    "pm": 1e-12,
    "Å": 1e-10,
    "å": 1e-10,
    "A": 1e-10,
    "angstrom": 1e-10,
}
_ANGLE = {"rad": 1.0, "mrad": 1e-3, "µrad": 1e-6, "μrad": 1e-6, "urad": 1e-6}
# units a label is written in, smallest first: the first that reads below 1000 is used
_LENGTH_OUT = (("pm", 1e-12), ("nm", 1e-9), ("µm", 1e-6), ("mm", 1e-3), ("m", 1.0))
_RECIP_OUT = (("m⁻¹", 1.0), ("mm⁻¹", 1e3), ("µm⁻¹", 1e6), ("nm⁻¹", 1e9), ("pm⁻¹", 1e12))
_ANGLE_OUT = (("µrad", 1e-6), ("mrad", 1e-3), ("rad", 1.0))


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


def scalebar(
    scale: float, units: str | None, pixels: int, display_pixels: int, fraction: float = 0.25
) -> ScaleBar | None:
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


def pixel_aspect(ay: Axis, ax: Axis) -> float:
    """Displayed height of a pixel over its width: physical when both axes share units."""
    if ay.units and ay.units == ax.units and ay.scale and ax.scale:
        ratio = abs(ay.scale / ax.scale)
        if 0.1 <= ratio <= 10:
            return ratio
    return 1.0


def display_size(h: int, w: int, aspect: float, box_w: int, box_h: int) -> tuple[int, int]:
    s = min(box_w / w, box_h / (h * aspect))
    return max(1, round(w * s)), max(1, round(h * aspect * s))


def to_image(u8: np.ndarray, dw: int, dh: int) -> Image.Image:
    im = Image.fromarray(u8)
    if im.size == (dw, dh):
        return im
    # enlarged 2x or more: keep the pixels square and honest
    up = dw >= 2 * u8.shape[1] or dh >= 2 * u8.shape[0]
    return im.resize((dw, dh), Image.Resampling.NEAREST if up else Image.Resampling.LANCZOS)


@lru_cache(maxsize=16)
def load_font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    """matplotlib's bundled DejaVu Sans, found without importing matplotlib (~0.2 s)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec and spec.submodule_search_locations:
        ttf = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"
        path = ttf / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")
        if path.exists():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size)


def clip(text: str, font: ImageFont.FreeTypeFont, width: float) -> str:
    """The text, cut with an ellipsis to fit width."""
    text = " ".join(text.split())
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text.rstrip() + "…"


def wrap(text: str, font: ImageFont.FreeTypeFont, width: float, lines: int) -> list[str]:
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
            cut = max(
                (i for i in range(1, len(word)) if font.getlength(word[:i]) <= width), default=1
            )
            out.append(word[:cut])
            word = word[cut:]
        line = word
    if line:
        out.append(line)
    if len(out) > lines:
        out = out[: lines - 1] + [clip(" ".join(out[lines - 1 :]), font, width)]
    return out


def clip_middle(text: str, font: ImageFont.FreeTypeFont, width: float) -> str:
    """The text with its middle replaced by an ellipsis to fit width (names differ at the end)."""
    text = " ".join(text.split())
    head, tail = len(text) // 2, len(text) // 2
    while head > 1 and font.getlength(text[:head] + "…" + text[-tail:]) > width:
        head, tail = head - 1, tail - 1 if tail > head else tail
    return text if font.getlength(text) <= width else text[:head] + "…" + text[-tail:]


def new_canvas(mode: str, title: str, subtitle: str) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new(mode, (SIZE, SIZE), WHITE)
    draw = ImageDraw.Draw(img)
    font = next(
        (
            load_font(size, True)
            for size in (18, 16, 14)
            if load_font(size, True).getlength(title) <= SIZE - 20
        ),
        load_font(14, True),
    )
    draw.text((10, 26), clip_middle(title, font, SIZE - 20), font=font, fill=BLACK, anchor="ls")
    draw.text((10, 34), clip(subtitle, load_font(13), SIZE - 20), font=load_font(13), fill=GREY)
    return img, draw


BAR_PAD, BAR_H, BAR_GAP, BAR_MARGIN = 5, 5, 3, 8  # scalebar box: padding, bar, gap, margin


def scalebar_box(bar: ScaleBar) -> tuple[int, int]:
    """Width and height of the scalebar's black box."""
    font = load_font(13)
    ascent, descent = font.getmetrics()
    inner = max(round(bar.pixels), math.ceil(font.getlength(bar.label)))
    return inner + 2 * BAR_PAD, 2 * BAR_PAD + ascent + descent + BAR_GAP + BAR_H


def fitting_scalebar(ax: Axis, pixels: int, dw: int, dh: int) -> ScaleBar | None:
    """A scalebar whose box fits the displayed image; longer (up to 60%) for narrow images."""
    for fraction in (0.25, 0.4, 0.6):
        bar = scalebar(ax.scale, ax.units, pixels, dw, fraction)
        if bar is None:
            return None
        w, h = scalebar_box(bar)
        if w + 2 * BAR_MARGIN <= dw and h + 2 * BAR_MARGIN <= dh:
            return bar
    return None


def draw_scalebar(draw: ImageDraw.ImageDraw, bar: ScaleBar, left: int, bottom: int) -> None:
    """White bar and label on a black box, its bottom left corner a margin off (left, bottom)."""
    font = load_font(13)
    pad, bar_h = BAR_PAD, BAR_H
    text_w = font.getlength(bar.label)
    bar_px = max(1, round(bar.pixels))
    box_w, box_h = scalebar_box(bar)
    inner = box_w - 2 * pad
    x0, y1 = left + BAR_MARGIN, bottom - BAR_MARGIN
    y0 = y1 - box_h + 1
    draw.rectangle((x0, y0, x0 + box_w - 1, y1), fill=BLACK)
    bx = x0 + pad + (inner - bar_px) // 2
    draw.rectangle((bx, y1 - pad - bar_h + 1, bx + bar_px - 1, y1 - pad), fill=WHITE)
    draw.text((x0 + pad + (inner - text_w) / 2, y0 + pad), bar.label, font=font, fill=WHITE)


def draw_caption(draw: ImageDraw.ImageDraw, text: str, x: int, y: int, width: int) -> None:
    font = load_font(12)
    text = clip(text, font, width)
    draw.text((x + (width - font.getlength(text)) / 2, y), text, font=font, fill=INK)


def image_panel(
    canvas: Image.Image,
    draw: ImageDraw.ImageDraw,
    data: Any,
    ay: Axis,
    ax: Axis,
    box: tuple[int, int, int, int],
    log: bool = False,
    clear_rows: int = 0,
    bar_top: bool = False,
) -> ScaleBar | None:
    """Draw a 2D array fitted and centred in box (left, top, right, bottom) and its scalebar:
    bottom left, above the last clear_rows data rows, or top left."""
    h, w = data.shape
    dw, dh = display_size(h, w, pixel_aspect(ay, ax), box[2] - box[0], box[3] - box[1])
    img = reduce_to(data, dw, dh)
    if log:
        img = np.log1p(np.maximum(img - np.nanmin(img), 0))
    u8 = stretch(img, *limits(img))
    x0 = box[0] + (box[2] - box[0] - dw) // 2
    y0 = box[1] + (box[3] - box[1] - dh) // 2
    canvas.paste(to_image(u8, dw, dh), (x0, y0))
    usable = dh - round(clear_rows * dh / h)
    bar = fitting_scalebar(ax, w, dw, usable)
    if bar is not None:
        bottom = y0 + scalebar_box(bar)[1] + 2 * BAR_MARGIN if bar_top else y0 + usable
        draw_scalebar(draw, bar, x0, bottom)
    return bar


def vertical_text(
    canvas: Image.Image, text: str, font: ImageFont.FreeTypeFont, x: int, middle: float
) -> None:
    """Text turned 90 degrees (reading upwards), its left edge at x, centred on middle."""
    _, _, x1, y1 = font.getbbox(text)
    mask = Image.new("L", (max(1, x1), y1 + 2), 0)
    ImageDraw.Draw(mask).text((0, 0), text, font=font, fill=255)
    mask = mask.rotate(90, expand=True)
    canvas.paste(INK, (x, round(middle - mask.height / 2)), mask)


@dataclass
class Drawn:
    image: Image.Image
    shown: str  # what, e.g. "image" or "image stack: frames 1, 2 of 2"
    scalebar: ScaleBar | None = None
    axis_label: str | None = None


def join_parts(*parts: str) -> str:
    return " · ".join(p for p in parts if p)


def dims(sizes: list[int]) -> str:
    return "×".join(str(s) for s in sizes)


def every(stride: int) -> str:
    return f" (1 in {stride} scan positions each way)" if stride > 1 else ""


def in_order(y: np.ndarray, axis: Axis) -> np.ndarray:
    """Channels in increasing x (a few readers give descending axes)."""
    return y[::-1] if axis.scale < 0 else y


def encode_png(img: Image.Image) -> bytes:
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
        for tag, data in ((b"IHDR", header), (b"IDAT", idat), (b"IEND", b""))
    )
