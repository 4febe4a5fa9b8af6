"""A micrograph (2-D image data; the report calls its kind `image`): in grey, contrast stretched
between the 0.5th and 99.5th percentiles, with a scalebar bottom left. SEM TIFFs keep their data
bar; the scalebar sits above it (FEI states its height) or top left (Zeiss).
"""

from __future__ import annotations

from ..canvas import HEADER, SIZE, Drawn, dims, image_panel, join_parts, new_canvas
from ..signals import View


def draw_micrograph(view: View, title: str, subtitle: str, original: dict) -> Drawn:
    ay, ax = view.sig
    canvas, draw = new_canvas("L", title, join_parts(subtitle, f"image {dims([ax.size, ay.size])}"))
    bar = image_panel(
        canvas, draw, view.data, ay, ax, (0, HEADER, SIZE, SIZE), **_sem_data_bar(original, ay.size)
    )
    return Drawn(canvas, "image", bar)


def _sem_data_bar(original: dict, rows: int) -> dict:
    """Where the scalebar goes on SEM TIFFs, whose data bar runs along the bottom: above it on
    FEI/Thermo files (they state the image height without it), top left on Zeiss files."""
    fei = (original.get("fei_metadata") or {}).get("Image") or {}
    height = fei.get("ResolutionY")
    if isinstance(height, int | float) and 0 < height < rows:
        return {"clear_rows": rows - int(height)}
    if "CZ_SEM" in original:
        return {"bar_top": True}
    return {}
