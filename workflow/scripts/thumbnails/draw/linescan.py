"""A line scan: spectra along a line, the position x energy image above the sum spectrum, the
energy axes aligned.
"""

from __future__ import annotations

import numpy as np

from ..canvas import (
    HEADER,
    SIZE,
    Drawn,
    every,
    in_order,
    join_parts,
    load_font,
    new_canvas,
    to_image,
    vertical_text,
)
from ..reduce import limits, reduce_to, spectrum_sums, stretch, stride_for
from ..signals import View
from .spectrum import plot_spectrum, spectrum_plot_spec


def draw_linescan(view: View, title: str, subtitle: str, metadata: dict) -> Drawn:
    (pos,), (axis,) = view.nav, view.sig
    spec = spectrum_plot_spec(axis, metadata)
    stride = stride_for((pos.size,), axis.size * view.data.dtype.itemsize)
    _, spectrum = spectrum_sums(view.data, stride)
    sub = join_parts(subtitle, f"line scan of {pos.size} spectra, {axis.size} channels")
    canvas, draw = new_canvas("RGB", title, sub)
    top_h = 150
    left, right = plot_spectrum(
        canvas, draw, in_order(spectrum, axis), spec, (0, HEADER + top_h + 4, SIZE, SIZE)
    )
    # the position x energy image, its energy axis aligned with the plot below
    data = view.data[::stride] if stride > 1 else view.data
    dw, dh = right - left + 1, top_h
    img = reduce_to(data, dw, dh)
    u8 = in_order(stretch(img, *limits(img)).T, axis).T
    canvas.paste(to_image(np.ascontiguousarray(u8), dw, dh).convert("RGB"), (left, HEADER + 2))
    vertical_text(canvas, "position", load_font(13), 4 + 16, HEADER + 2 + dh / 2)
    shown = f"line scan: position × {spec.xlabel.split(' (')[0].lower()} image and sum spectrum"
    return Drawn(canvas, shown + every(stride), None, spec.xlabel)
