"""A spectrum image: a navigator image above the sum spectrum.

The navigator is an image of the same area stored in the same file (Velox HAADF, Bruker BSE/SE)
when there is one (``navigator_for``), else the spectrum image summed over energy.
"""

from __future__ import annotations

from ..canvas import (
    HEADER,
    SIZE,
    Drawn,
    dims,
    draw_caption,
    every,
    image_panel,
    in_order,
    join_parts,
    new_canvas,
)
from ..reduce import spectrum_sums, stride_for
from ..signals import Axis, Signal, View, title_of
from .spectrum import plot_spectrum, spectrum_plot_spec


def draw_spectrum_image(
    view: View, title: str, subtitle: str, metadata: dict, navigator: tuple[str, Signal] | None
) -> Drawn:
    (ay, ax), (axis,) = view.nav, view.sig
    spec = spectrum_plot_spec(axis, metadata)
    stride = stride_for((ay.size, ax.size), axis.size * view.data.dtype.itemsize)
    sums, spectrum = spectrum_sums(view.data, stride)
    sub = join_parts(subtitle, f"spectrum image {dims([ax.size, ay.size])}, {axis.size} channels")
    canvas, draw = new_canvas("RGB", title, sub)
    top = (0, HEADER + 18, SIZE, HEADER + 218)
    if navigator is not None:
        name, image = navigator
        caption, what = f"{name} (navigator)", f"the {name} image"
        bar = image_panel(canvas, draw, image.data, *image.axes, top)
    else:
        caption = what = "sum over " + (spec.xlabel.split(" (")[0].lower() or "the spectrum")
        sums_axes = [
            Axis(sums.shape[0], ay.scale * stride, 0, ay.units),
            Axis(sums.shape[1], ax.scale * stride, 0, ax.units),
        ]
        bar = image_panel(canvas, draw, sums, *sums_axes, top)
    draw_caption(draw, caption, 0, HEADER + 1, SIZE)
    plot_spectrum(canvas, draw, in_order(spectrum, axis), spec, (0, top[3] + 4, SIZE, SIZE))
    return Drawn(
        canvas, f"spectrum image: {what} and sum spectrum{every(stride)}", bar, spec.xlabel
    )


def navigator_for(
    view: View, views: list[View], signals: list[Signal], name: str
) -> tuple[str, Signal] | None:
    """An image in the same file with the spectrum image's shape (Velox HAADF, Bruker BSE)."""
    ny, nx = (a.size for a in view.nav)
    best = None
    for v, s in zip(views, signals, strict=True):
        if v.kind == "image":
            h, w = v.data.shape
            if abs(h / w - ny / nx) <= 0.02 * ny / nx and (best is None or h * w > best[0]):
                best = (h * w, title_of(s.metadata, name), Signal(v.data, v.sig, s.metadata))
    return None if best is None else (best[1], best[2])
