"""`nox -s bench -- --sizes`: the renderer on files of a facility's sizes, against the floor.

Generates, in a scratch folder, files in every previewable format a writer exists for, at real
sizes and in the layouts their writers produce: TIFF images of 4096² float32 and 8192² uint16
(RosettaSciIO's writer, plain and deflate-compressed), an EELS spectrum image of 100×100×2048 as
.dm4 (energy plane by plane, as Gatan's software stores it; ``bench.dm4``) and as EMD
(RosettaSciIO's NCEM writer, all axes reversed), and a 4D-STEM scan of 256×256 positions of
128×128 uint16 (2 GiB) as that EMD, plain and gzip-compressed, and as .dm4 (position by position).

For each file, in processes of their own: the floor (reading its bytes once, from the page cache
as the preview does; for a compressed file also decoding them once with the format's own codec:
zlib for TIFF strips, HDF5's gzip filter for EMD chunks), then the preview as a batch makes it
(the second file of its process: imports and first use paid before), its time, the ratio to the
floor, MB/s of file bytes and the process's peak RSS. The target is met when the preview takes at
most 3x the floor or runs at 500 MB/s or more, whichever allows more time, within 1 GiB of RSS.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from microscopy_notebook.bench.common import machine, table

TARGET_RATIO, TARGET_MB_S, TARGET_RSS_MIB = 3.0, 500.0, 1024.0


# -- the files ----------------------------------------------------------------------------------
def _image(h: int, w: int, dtype: str, seed: int) -> np.ndarray:
    """A micrograph-like image: smooth structure, grain and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.ogrid[0:h, 0:w]
    img = 1000 + 400 * np.sin(x / 97.0) * np.cos(y / 131.0) + 200 * np.sin((x + y) / 23.0)
    out = (img + rng.normal(0, 40, (h, w))).astype(dtype)
    return out


def _tiff(path: Path, data: np.ndarray, **kwds) -> None:
    from rsciio.tiff import file_writer

    axes = [
        dict(name=n, size=s, scale=0.5, offset=0.0, units="nm", navigate=False)
        for n, s in zip("yx", data.shape, strict=True)
    ]
    signal = {"data": data, "axes": axes, "metadata": {}, "original_metadata": {}}
    file_writer(str(path), signal, **kwds)


def _spectra(ny: int, nx: int, channels: int, seed: int) -> np.ndarray:
    """EELS-like spectra (a power-law background, an edge whose height maps the sample, noise),
    (y, x, energy) float32."""
    rng = np.random.default_rng(seed)
    energy = np.linspace(100, 1100, channels, dtype=np.float32)
    background = 1e7 * energy**-2.5
    edge = np.where(energy > 532, (energy / 532) ** -3, 0).astype(np.float32)
    yy, xx = np.mgrid[0:ny, 0:nx]
    amount = (0.5 + 0.5 * np.sin(xx / 9) * np.cos(yy / 13)).astype(np.float32)
    data = background + 300 * amount[..., None] * edge
    return (data + rng.normal(0, 5, data.shape)).astype(np.float32)


def _scan_row(y: int, nx: int, q: int, rng: np.random.Generator) -> np.ndarray:
    """One row of a 4D-STEM scan: a central disk dimmed where the sample is thick, diffuse
    scattering growing with thickness, counting noise; (nx, q, q) uint16."""
    yy, xx = np.mgrid[0:q, 0:q]
    r = np.hypot(yy - q / 2 + 3, xx - q / 2 - 2)
    disk, diffuse = (r < q / 10).astype(np.float32), np.exp(-r / (q / 6)).astype(np.float32)
    t = (0.5 + 0.5 * np.sin(y / 17.0) * np.cos(np.arange(nx) / 23.0)).astype(np.float32)
    row = 2000 * disk * (1 - 0.6 * t)[:, None, None] + 300 * diffuse * t[:, None, None]
    return (row + rng.integers(0, 16, row.shape)).astype(np.uint16)


def _4d(ny: int, nx: int, q: int) -> np.ndarray:
    rng = np.random.default_rng(4)
    data = np.empty((ny, nx, q, q), np.uint16)
    for y in range(ny):
        data[y] = _scan_row(y, nx, q, rng)
    return data


def _emd(path: Path, data: np.ndarray, units: list[str], title: str, **kwds) -> None:
    from rsciio.emd import file_writer

    names = ["y", "x", "ky", "kx"] if data.ndim == 4 else ["y", "x", "Energy loss"]
    navigate = [True, True, False, False] if data.ndim == 4 else [True, True, False]
    axes = [
        dict(name=n, size=s, scale=0.5, offset=0.0, units=u, navigate=nav)
        for n, s, u, nav in zip(names, data.shape, units, navigate, strict=True)
    ]
    signal = {
        "data": data,
        "axes": axes,
        "original_metadata": {},
        "metadata": {"General": {"title": title}, "Signal": {}},
    }
    file_writer(str(path), signal, **kwds)


def generate(folder: Path, scale: int = 1) -> list[tuple[str, Path, str]]:
    """(what, path, codec) of each benchmark file, written into folder. ``scale`` divides every
    size (the benchmark's own test runs it small)."""
    from microscopy_notebook.bench.dm4 import write_dm4

    made = []

    def add(what: str, name: str, codec: str = "") -> Path:
        path = folder / name
        made.append((what, path, codec))
        print(f"writing {name}", flush=True)
        return path

    n4, n8 = 4096 // scale, 8192 // scale
    img = _image(n4, n4, "float32", 1)
    _tiff(add(f"TIFF {n4}² float32", "image-4k-float32.tif"), img)
    _tiff(
        add(f"TIFF {n4}² float32, deflate", "image-4k-float32-deflate.tif", "zlib"),
        img,
        compression="zlib",
    )
    img = _image(n8, n8, "uint16", 2)
    _tiff(add(f"TIFF {n8}² uint16", "image-8k-uint16.tif"), img)
    _tiff(
        add(f"TIFF {n8}² uint16, deflate", "image-8k-uint16-deflate.tif", "zlib"),
        img,
        compression="zlib",
    )
    del img
    ny = nx = 100 // scale
    si = _spectra(ny, nx, 2048, 3)
    write_dm4(
        add(f"EELS SI {ny}×{nx}×2048 float32 .dm4 (energy planes)", "eels-si.dm4"),
        (2048, ny, nx),
        "<f4",
        (
            np.ascontiguousarray(si[..., e : e + 256].transpose(2, 0, 1))
            for e in range(0, 2048, 256)
        ),
        [(0.0, 0.5, "eV"), (0.0, 2.0, "nm"), (0.0, 2.0, "nm")],
        "EELS SI",
        {"Format": "Spectrum image", "Signal": "EELS"},
    )
    _emd(
        add(f"EELS SI {ny}×{nx}×2048 float32 EMD (axes reversed)", "eels-si.emd"),
        si,
        ["nm", "nm", "eV"],
        "EELS SI",
    )
    del si
    s, q = 256 // scale, 128 // scale
    data = _4d(s, s, q)
    gib = data.nbytes / 2**30
    _emd(
        add(f"4D-STEM {s}²×{q}² uint16 ({gib:.2g} GiB) EMD (axes reversed)", "4d.emd"),
        data,
        ["nm", "nm", "1/nm", "1/nm"],
        "4D-STEM scan",
    )
    _emd(
        add(f"4D-STEM {s}²×{q}² uint16 EMD (axes reversed), gzip", "4d-gzip.emd", "gzip"),
        data,
        ["nm", "nm", "1/nm", "1/nm"],
        "4D-STEM scan",
        compression="gzip",
    )
    write_dm4(
        add(f"4D-STEM {s}²×{q}² uint16 ({gib:.2g} GiB) .dm4 (positions)", "4d.dm4"),
        data.shape,
        "<u2",
        (data[y] for y in range(s)),
        [(0.0, 0.5, "nm"), (0.0, 0.5, "nm"), (0.0, 0.05, "1/nm"), (0.0, 0.05, "1/nm")],
        "4D-STEM scan",
    )
    return made


# -- measuring, in a process of its own ------------------------------------------------------------
def floor(path: str, codec: str) -> dict:
    """Seconds to read the file's bytes once (after a first read: from the page cache, as the
    preview reads it) and, for a compressed file, to decode them once with the format's codec."""
    import time

    buf = bytearray(16 * 2**20)
    view = memoryview(buf)

    def read_once() -> float:
        start = time.perf_counter()
        with open(path, "rb", buffering=0) as fh:
            while fh.readinto(view):
                pass
        return time.perf_counter() - start

    read_once()
    result = {"read_s": min(read_once() for _ in range(3)), "decode_s": 0.0}
    if codec == "zlib":  # every strip of every page, through zlib as tifffile does
        import zlib

        import tifffile

        start = time.perf_counter()
        with tifffile.TiffFile(path) as tif, open(path, "rb") as fh:
            for page in tif.pages:
                for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
                    fh.seek(offset)
                    zlib.decompress(fh.read(count))
        result["decode_s"] = time.perf_counter() - start
    elif codec == "gzip":  # every chunk of every dataset, through HDF5's own filter
        import h5py

        start = time.perf_counter()
        with h5py.File(path, "r") as f:
            sets: list = []
            f.visititems(lambda _, o: sets.append(o) if isinstance(o, h5py.Dataset) else None)
            for dset in sets:
                if dset.compression:
                    out = np.empty(dset.chunks, dset.dtype)
                    for chunk in dset.iter_chunks():
                        dset.read_direct(
                            out, chunk, tuple(slice(0, s.stop - s.start) for s in chunk)
                        )
        result["decode_s"] = time.perf_counter() - start - 0.0
    return result


def preview(path: str) -> dict:
    """The preview as a batch makes it: the file's second in this process, the first paying for
    the imports and first use."""
    import time

    from thumbnails.preview import make_preview

    make_preview(Path(path))
    start = time.perf_counter()
    p = make_preview(Path(path))
    elapsed = time.perf_counter() - start
    # VmHWM, the peak of this process's own memory: ru_maxrss would carry the peak of the
    # benchmark that started it (Linux keeps it across exec)
    with open("/proc/self/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    return {"preview_s": elapsed, "rss_mib": rss, "ok": p.ok, "shown": p.shown, "error": p.error}


def _child(what: str, path: Path, codec: str) -> dict:
    code = (
        "import json, sys; from microscopy_notebook.bench import sizes;"
        f"print(json.dumps(sizes.{what}(*sys.argv[1:])))"
    )
    args = [str(path)] + ([codec] if what == "floor" else [])
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{what} of {path.name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(files: list[tuple[str, Path, str]]) -> list[dict]:
    rows = []
    for what, path, codec in files:
        size = path.stat().st_size
        print(f"measuring {path.name} ({size / 2**20:.0f} MiB)", flush=True)
        f = _child("floor", path, codec)
        p = _child("preview", path, codec)
        floor_s = f["read_s"] + f["decode_s"]
        allowed = max(TARGET_RATIO * floor_s, size / (TARGET_MB_S * 1e6))
        rows.append(
            {
                "file": what,
                "name": path.name,
                "bytes": size,
                **f,
                "floor_s": floor_s,
                **p,
                "ratio": p["preview_s"] / floor_s,
                "mb_s": size / p["preview_s"] / 1e6,
                "allowed_s": allowed,
                "time_met": p["preview_s"] <= allowed,
                "rss_met": p["rss_mib"] <= TARGET_RSS_MIB,
            }
        )
    return rows


def main(args) -> int:
    scratch = Path(tempfile.mkdtemp(prefix="bench-sizes-", dir=args.scratch))
    free = shutil.disk_usage(scratch).free
    need = 7 * 2**30 // args.size_scale**2
    if free < need + 2 * 2**30:
        sys.exit(
            f"{scratch}: {free / 2**30:.1f} GiB free, the benchmark files need {need / 2**30:.1f}"
        )
    try:
        files = generate(scratch, args.size_scale)
        rows = measure(files)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    header = ("file", "MiB", "floor s", "preview s", "ratio", "MB/s", "RSS MiB", "target")
    lines = [header]
    for r in rows:
        lines.append(
            (
                r["file"],
                f"{r['bytes'] / 2**20:.0f}",
                f"{r['read_s']:.3f}" + (f"+{r['decode_s']:.3f}" if r["decode_s"] else ""),
                f"{r['preview_s']:.3f}",
                f"{r['ratio']:.1f}",
                f"{r['mb_s']:.0f}",
                f"{r['rss_mib']:.0f}",
                ("met" if r["time_met"] and r["rss_met"] else "NOT met")
                + ("" if r["ok"] else f" ({r['error']})"),
            )
        )
    print()
    print(table(lines))
    report = {
        "mode": "sizes",
        "machine": machine(),
        "targets": {"ratio": TARGET_RATIO, "mb_s": TARGET_MB_S, "rss_mib": TARGET_RSS_MIB},
        "files": rows,
        "mb_s_all": sum(r["bytes"] for r in rows) / sum(r["preview_s"] for r in rows) / 1e6,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    return 0
