"""An image stack: a montage of up to 9 evenly spaced frames (frame numbers in the corner) under
one common contrast stretch; scalebar on the first frame.
"""

from __future__ import annotations

import math

import numpy as np

from ..canvas import (
    BLACK,
    HEADER,
    SIZE,
    WHITE,
    Drawn,
    dims,
    display_size,
    draw_scalebar,
    fitting_scalebar,
    join_parts,
    load_font,
    new_canvas,
    pixel_aspect,
    to_image,
)
from ..reduce import limits, reduce_to, stretch
from ..signals import View


def draw_stack(view: View, title: str, subtitle: str) -> Drawn:
    ay, ax = view.sig
    n = view.nav[0].size
    frames = np.unique(np.linspace(0, n - 1, min(n, 9)).round().astype(int))
    cols = math.ceil(math.sqrt(len(frames)))
    rows = math.ceil(len(frames) / cols)
    gap = 4
    cell_w = (SIZE - gap * (cols + 1)) // cols
    cell_h = (SIZE - HEADER - gap * rows) // rows
    h, w = view.data.shape[1:]
    dw, dh = display_size(h, w, pixel_aspect(ay, ax), cell_w, cell_h)
    reduced = [reduce_to(view.data[i], dw, dh) for i in frames]
    lo, hi = limits(np.stack(reduced))
    sub = join_parts(subtitle, f"{n} frames of {dims([ax.size, ay.size])}")
    canvas, draw = new_canvas("L", title, sub)
    # the grid centred in the space below the title
    left = (SIZE - cols * dw - (cols - 1) * gap) // 2
    top = HEADER + (SIZE - HEADER - rows * dh - (rows - 1) * gap) // 2
    font = load_font(12)
    for j, (frame, img) in enumerate(zip(frames, reduced, strict=True)):
        r, c = divmod(j, cols)
        x0, y0 = left + c * (dw + gap), top + r * (dh + gap)
        canvas.paste(to_image(stretch(img, lo, hi), dw, dh), (x0, y0))
        label = str(frame + 1)
        draw.rectangle((x0, y0, x0 + font.getlength(label) + 7, y0 + 17), fill=BLACK)
        draw.text((x0 + 4, y0 + 2), label, font=font, fill=WHITE)
    bar = fitting_scalebar(ax, w, dw, dh)
    if bar is not None:
        draw_scalebar(draw, bar, left, top + dh)
    shown = f"image stack: frames {', '.join(str(f + 1) for f in frames)} of {n}"
    return Drawn(canvas, shown, bar)
