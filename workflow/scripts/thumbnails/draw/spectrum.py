"""A spectrum: intensity against the calibrated axis, e.g. "Energy loss (eV)".

On EDS spectra the detector's noise peak below 0.15 keV is left out of the y range. The plot
(``plot_spectrum``, ``spectrum_plot_spec``) is also drawn under line scans and spectrum images.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ..canvas import (
    FILL,
    GRID,
    HEADER,
    INK,
    LINE,
    SIZE,
    Drawn,
    clip,
    in_order,
    join_parts,
    load_font,
    new_canvas,
    vertical_text,
)
from ..signals import Axis, View, make_axis, real

_UNCALIBRATED = {"", "pix", "px", "pixel", "pixels", "<undefined>", "undefined", "[]", "none"}


@dataclass(frozen=True)
class PlotSpec:
    xlabel: str
    ylabel: str
    x_min: float
    x_max: float
    y_from: float = -math.inf  # channels below this x are left out of the y autoscale


def spectrum_plot_spec(axis: Mapping | Axis, metadata: Mapping | None = None) -> PlotSpec:
    """Axis labels and x range of a spectrum plot, from a rosettasciio axis dict and metadata."""
    ax = axis if isinstance(axis, Axis) else make_axis(axis, int(axis.get("size", 1)))
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
    return [
        f"{v / factor:.{min(digits, 6)}f}{suffix}" if abs(v) > 1e-12 * max(1, top) else "0"
        for v in values
    ]


def plot_spectrum(
    canvas: Image.Image,
    draw: ImageDraw.ImageDraw,
    y: np.ndarray,
    spec: PlotSpec,
    box: tuple[int, int, int, int],
) -> tuple[int, int]:
    """Line plot of y (channels evenly spread over spec's x range) in box; returns the plot's
    left and right edges in pixels."""
    font, label_font = load_font(12), load_font(13)
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
        draw.line((px(v), top, px(v), bottom), fill=GRID)
        draw.line((px(v), bottom, px(v), bottom + 4), fill=INK)
        draw.text((px(v), bottom + 6), text, font=font, fill=INK, anchor="ma")
    for v, text in zip(yt, _tick_labels(yt, ystep), strict=True):
        draw.line((left, py(v), right, py(v)), fill=GRID)
        draw.line((left - 4, py(v), left, py(v)), fill=INK)
        draw.text((left - 7, py(v)), text, font=font, fill=INK, anchor="rm")

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
    draw.polygon([(xs[0], base), *upper, (xs[-1], base)], fill=FILL)
    if n > width:
        draw.polygon(upper + lower[::-1], fill=LINE)
    draw.line(upper, fill=LINE, width=2 if n <= width else 1, joint="curve")
    draw.rectangle((left, top, right, bottom), outline=INK)

    draw.text(
        ((left + right) / 2, bottom + 24),
        clip(spec.xlabel, label_font, width),
        font=label_font,
        fill=INK,
        anchor="ma",
    )
    vertical_text(
        canvas,
        clip(spec.ylabel, label_font, bottom - top),
        label_font,
        box[0] + 4,
        (top + bottom) / 2,
    )
    return left, right


def draw_spectrum(view: View, title: str, subtitle: str, metadata: dict) -> Drawn:
    (axis,) = view.sig
    spec = spectrum_plot_spec(axis, metadata)
    y = in_order(real(np.asarray(view.data)), axis)
    canvas, draw = new_canvas("RGB", title, join_parts(subtitle, f"spectrum, {axis.size} channels"))
    plot_spectrum(canvas, draw, y, spec, (0, HEADER, SIZE, SIZE))
    return Drawn(canvas, "spectrum", None, spec.xlabel)
