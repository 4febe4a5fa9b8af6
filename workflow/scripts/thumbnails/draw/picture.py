"""A colour image (an exported .png or .jpg, an RGB TIFF): in its own colours, fitted and centred
below the title, without a contrast stretch when it has 8 bits a colour (its maker chose how it
looks); a scalebar when its axes are calibrated. Block-averaged per colour before it is shown.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from ..canvas import (
    HEADER,
    SIZE,
    Drawn,
    dims,
    display_size,
    draw_scalebar,
    fitting_scalebar,
    join_parts,
    new_canvas,
    pixel_aspect,
)
from ..reduce import block_mean, limits, stretch
from ..signals import View


def colour_fields(data: Any) -> list[str] | None:
    """The names of the R, G, B fields of an image's values, or None when it is not in colour."""
    names = {n.upper(): n for n in (data.dtype.names or ())}
    if not {"R", "G", "B"} <= names.keys():
        return None
    return [names[c] for c in "RGB"]


def draw_picture(view: View, title: str, subtitle: str) -> Drawn:
    ay, ax = view.sig
    fields = colour_fields(view.data)
    assert fields is not None, "draw_picture draws colour images"
    h, w = view.data.shape
    dw, dh = display_size(h, w, pixel_aspect(ay, ax), SIZE, SIZE - HEADER)
    k = max(1, min(w // dw, h // dh))
    rgb = np.stack([block_mean(view.data[f], k) for f in fields], axis=-1)
    if view.data.dtype[fields[0]] == np.uint8:
        u8 = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    else:  # 16-bit colour: one stretch for the three, so the hues stay
        u8 = stretch(rgb, *limits(rgb))
    canvas, draw = new_canvas(
        "RGB", title, join_parts(subtitle, f"colour image {dims([ax.size, ay.size])}")
    )
    img = Image.fromarray(u8, "RGB")
    if img.size != (dw, dh):
        up = dw >= 2 * img.width or dh >= 2 * img.height  # enlarged: keep the pixels square
        img = img.resize((dw, dh), Image.Resampling.NEAREST if up else Image.Resampling.LANCZOS)
    x0, y0 = (SIZE - dw) // 2, HEADER + (SIZE - HEADER - dh) // 2
    canvas.paste(img, (x0, y0))
    bar = fitting_scalebar(ax, w, dw, dh)
    if bar is not None:
        draw_scalebar(draw, bar, x0, y0 + dh)
    return Drawn(canvas, "colour image", bar)
