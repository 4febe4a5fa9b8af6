"""4D data (a diffraction pattern at each scan position): the mean diffraction pattern (log
scale) beside a virtual annular dark-field image (all intensity outside the central beam, found in
the mean pattern; the plain sum image when no central beam stands out).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..canvas import (
    HEADER,
    SIZE,
    Drawn,
    dims,
    draw_caption,
    every,
    image_panel,
    join_parts,
    new_canvas,
)
from ..reduce import nav_bands, stride_for
from ..signals import Axis, View, real


def central_beam_weights(dp: np.ndarray) -> tuple[np.ndarray, str]:
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


def fourd_sums(data: Any, stride: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Mean diffraction pattern and virtual image of (ny, nx, qy, qx) data."""
    ny, nx, qy, qx = data.shape
    # the central beam, from a few positions spread over the scan
    iy = np.unique(np.linspace(0, ny - 1, min(ny, 4)).astype(int))
    ix = np.unique(np.linspace(0, nx - 1, min(nx, 4)).astype(int))
    sample = np.zeros((qy, qx), np.float64)
    for y in iy:
        for x in ix:
            sample += real(np.asarray(data[y, x]))
    weights, what = central_beam_weights(sample)
    image = np.zeros((math.ceil(ny / stride), math.ceil(nx / stride)), np.float32)
    total = np.zeros(qy * qx, np.float64)
    for r, band in nav_bands(data, stride):
        flat = band.reshape(-1, qy * qx).astype(np.float32, copy=False)
        image[r : r + band.shape[0]] = (flat @ weights).reshape(band.shape[:2])
        total += flat.sum(axis=0, dtype=np.float64)
    return (total / image.size).reshape(qy, qx), image, what


def draw_4d(view: View, title: str, subtitle: str) -> Drawn:
    (ny, nx), (qy, qx) = view.nav, view.sig
    stride = stride_for((ny.size, nx.size), qy.size * qx.size * view.data.dtype.itemsize)
    pattern, image, what = fourd_sums(view.data, stride)
    sub = join_parts(
        subtitle, f"4D: {dims([nx.size, ny.size])} positions of {dims([qx.size, qy.size])}"
    )
    canvas, draw = new_canvas("L", title, sub)
    half = (SIZE - 12) // 2
    top = HEADER + (SIZE - HEADER - half - 20) // 2 + 20  # captions and panels centred
    draw_caption(draw, "mean diffraction pattern (log)", 4, top - 18, half)
    draw_caption(draw, what, 8 + half, top - 18, half)
    image_panel(canvas, draw, pattern, qy, qx, (4, top, 4 + half, top + half), log=True)
    nav_axes = (
        Axis(image.shape[0], ny.scale * stride, 0, ny.units),
        Axis(image.shape[1], nx.scale * stride, 0, nx.units),
    )
    bar = image_panel(canvas, draw, image, *nav_axes, (8 + half, top, 8 + 2 * half, top + half))
    return Drawn(canvas, f"4D: mean diffraction pattern (log) and {what}{every(stride)}", bar)
