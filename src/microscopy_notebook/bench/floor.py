"""The benchmark's floor, and our renderer on the same files, in one process.

The floor reads and decodes each file with its rosettasciio reader (the job's own table of them,
``thumbnails.formats.READERS``), reduces the largest signal to at most 500x500 by block means,
stretches it to 8 bits and encodes a 500x500 PNG: what any preview must pay, with nothing drawn.
Run as ``python -m microscopy_notebook.bench.floor FILE...``; prints one JSON object with seconds
per file for the floor and for ``thumbnails.preview.make_preview``.
"""

from __future__ import annotations

import importlib
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image


def floor(path: Path, readers: dict[str, str]) -> int:
    reader = importlib.import_module(f"rsciio.{readers[path.suffix.lower()]}")
    signals = reader.file_reader(str(path))
    data = max((s["data"] for s in signals), key=lambda d: np.asarray(d).size)
    a = np.asarray(data, dtype=np.float32)
    while a.ndim > 2:
        a = a.mean(axis=0)
    if a.ndim == 1:
        a = a[np.newaxis, :]
    ky, kx = (max(1, -(-n // 500)) for n in a.shape)
    h, w = (a.shape[0] // ky) * ky, (a.shape[1] // kx) * kx
    a = a[:h, :w].reshape(h // ky, ky, w // kx, kx).mean(axis=(1, 3))
    lo, hi = np.percentile(a, (0.5, 99.5))
    u8 = (np.clip((a - lo) / ((hi - lo) or 1.0), 0, 1) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8).resize((500, 500), Image.Resampling.NEAREST).save(buf, format="PNG")
    return len(buf.getvalue())


def main(argv: list[str]) -> dict:
    from thumbnails.formats import READERS  # the job's library: installed editable, like ours
    from thumbnails.preview import make_preview

    paths = [Path(p) for p in argv]
    for path in paths[: len(READERS)]:  # both pay their imports before the clock starts
        floor(path, READERS)
        make_preview(path)
    start = time.perf_counter()
    for path in paths:
        floor(path, READERS)
    t_floor = time.perf_counter() - start
    start = time.perf_counter()
    for path in paths:
        make_preview(path)
    t_ours = time.perf_counter() - start
    return {"floor": t_floor / len(paths), "ours_render": t_ours / len(paths)}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
