"""4D data (a diffraction pattern at each scan position): the mean diffraction pattern (log
scale) beside a virtual annular dark-field image (all intensity outside the central beam, found in
the mean pattern; the plain sum image when no central beam stands out).
"""

from __future__ import annotations

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
from ..reduce import BAND_BYTES, scan_view, stride_for
from ..signals import Axis, View, real
from ..stored import Stored, pieces


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
    """Mean diffraction pattern and virtual image of (ny, nx, qy, qx) data, every stride-th scan
    position each way. The central beam is found in the sum of 16 patterns spread over the scan.

    Read in the order the bytes lie: a scan stored position by position is read once after
    those 16 patterns; one stored detector pixel by detector pixel (RosettaSciIO's EMD, all
    axes reversed) gives the 16 patterns, the mean pattern and the sum image in one pass, then
    the few detector pixels of the central beam are read again to take them out."""
    view = scan_view(data, stride)
    vy, vx = view.shape[:2]
    iy = np.unique(np.linspace(0, vy - 1, min(vy, 4)).astype(int))
    ix = np.unique(np.linspace(0, vx - 1, min(vx, 4)).astype(int))
    if isinstance(view, Stored) and view.stored_first() >= 2:
        return _detector_major(view, iy, ix)
    qy, qx = data.shape[2:]
    sample = np.zeros((qy, qx), np.float64)
    for y in iy:
        for x in ix:
            sample += real(np.asarray(view[y, x]))
    weights, what = central_beam_weights(sample)
    image = np.zeros((vy, vx), np.float32)
    total = np.zeros(qy * qx, np.float64)
    for where, band in pieces(view, BAND_BYTES):
        flat = real(band).reshape(-1, qy * qx).astype(np.float32, copy=False)
        image[where[:2]] = (flat @ weights).reshape(band.shape[:2])
        total += flat.sum(axis=0, dtype=np.float64)
    return (total / image.size).reshape(qy, qx), image, what


def _detector_major(view: Stored, iy: np.ndarray, ix: np.ndarray) -> tuple:
    vy, vx, qy, qx = view.shape
    sample = np.zeros((qy, qx), np.float64)
    total = np.zeros((qy, qx), np.float64)
    image = np.zeros((vy, vx), np.float64)
    for (ys, xs, qys, qxs), block in view.pieces(BAND_BYTES):
        f = real(block).astype(np.float32, copy=False)
        total[qys, qxs] += f.sum(axis=(0, 1), dtype=np.float64)
        image[ys, xs] += f.sum(axis=(2, 3), dtype=np.float64)
        py = iy[(iy >= ys.start) & (iy < ys.stop)] - ys.start
        px = ix[(ix >= xs.start) & (ix < xs.stop)] - xs.start
        sample[qys, qxs] += f[np.ix_(py, px)].sum(axis=(0, 1), dtype=np.float64)
    weights, what = central_beam_weights(sample)
    if what != "sum image":  # the intensity outside the beam: all of it less the beam's
        beam = (weights == 0).reshape(qy, qx)
        rows, cols = np.flatnonzero(beam.any(axis=1)), np.flatnonzero(beam.any(axis=0))
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        inside = beam[r0:r1, c0:c1]
        for (ys, xs, qys, qxs), block in view[:, :, r0:r1, c0:c1].pieces(BAND_BYTES):
            f = real(block).astype(np.float32, copy=False)
            image[ys, xs] -= np.tensordot(f, inside[qys, qxs].astype(np.float32), axes=2)
    return (total / image.size).reshape(qy, qx), image.astype(np.float32), what


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
