"""Arrays left in their file and read in pieces, in the order their bytes lie.

A ``Stored`` array behaves as much like a numpy array as the drawing code needs (``shape``,
``dtype``, ``transpose``, basic indexing, ``np.asarray`` of a small part), and has ``pieces``: the
array in blocks of about a given size, in the order the file holds them, each with the part of
the array it covers. A spectrum image stored energy plane by energy plane (DigitalMicrograph) or a
4D-STEM scan stored transposed (RosettaSciIO's EMD) is then read once, front to back, however the
reduction wants its axes; reading bands of scan rows would touch every part of the file each time.

The file's own unit of reading decides the blocks: a whole compressed strip or tile of a TIFF, a
whole HDF5 chunk; a raw array (DigitalMicrograph, uncompressed TIFF or HDF5) is read with
``readinto`` rather than memory-mapped, so the pages read never count in the process's memory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

Box = tuple[tuple[int, int], ...]  # (start, stop) for each stored axis


class Raw:
    """An uncompressed array at ``offset`` in a file, C order."""

    def __init__(self, path: str | os.PathLike, offset: int, shape: tuple, dtype: Any) -> None:
        self.path, self.offset = os.fspath(path), int(offset)
        self.shape, self.dtype = tuple(int(n) for n in shape), np.dtype(dtype)
        self.unit = (1,) * len(self.shape)  # any box can be read
        self._fh = None

    def read(self, box: Box) -> np.ndarray:
        if self._fh is None:
            self._fh = open(self.path, "rb", buffering=0)  # noqa: SIM115 (kept for the reads)
        shape = tuple(b - a for a, b in box)
        out = np.empty(shape, self.dtype)
        # the longest run of whole trailing axes: each run of the box is one read
        j = len(box)
        while j > 0 and box[j - 1] == (0, self.shape[j - 1]):
            j -= 1
        j = max(j - 1, 0)
        run = out.reshape(*shape[:j], -1) if shape else out.reshape(1)
        strides = np.array([math.prod(self.shape[k + 1 :]) for k in range(len(self.shape))])
        item = self.dtype.itemsize
        for outer in np.ndindex(*shape[:j]):
            first = sum((box[k][0] + outer[k]) * strides[k] for k in range(j))
            first += box[j][0] * strides[j] if box else 0
            view = memoryview(run[outer]).cast("B")
            self._fh.seek(self.offset + int(first) * item)
            got = self._fh.readinto(view)
            if got != len(view):
                raise OSError(f"file is truncated (a read of {len(view)} bytes got {got})")
        return out

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class H5:
    """An HDF5 dataset (h5py), read whole chunk by chunk."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.shape, self.dtype = tuple(dataset.shape), np.dtype(dataset.dtype)
        self.unit = tuple(dataset.chunks) if dataset.chunks else (1,) * len(self.shape)

    def read(self, box: Box) -> np.ndarray:
        out = np.empty(tuple(b - a for a, b in box), self.dtype)
        if out.size:
            self.dataset.read_direct(out, tuple(slice(a, b) for a, b in box))
        return out

    def close(self) -> None:
        pass


class TiffPages:
    """The pages of a TIFF series (tifffile), strips or tiles decoded one at a time: shape
    ``leading + page.shape`` for pages of one or three contiguous samples."""

    def __init__(self, series: Any) -> None:
        self.pages = list(series.pages)
        page = self.pages[0]
        self.page_shape = tuple(page.shape)
        self.leading = tuple(series.shape[: len(series.shape) - len(self.page_shape)])
        if math.prod(self.leading) != len(self.pages) or page.planarconfig == 2:
            raise ValueError("pages of another layout")
        self.shape, self.dtype = self.leading + self.page_shape, np.dtype(page.dtype)
        seg_h = page.tilelength if page.is_tiled else page.rowsperstrip
        seg_w = page.tilewidth if page.is_tiled else page.imagewidth
        samples = self.page_shape[2:]
        self.unit = (1,) * len(self.leading) + (min(seg_h, page.imagelength), seg_w) + samples
        self.fh = series.parent.filehandle

    def read(self, box: Box) -> np.ndarray:
        out = np.empty(tuple(b - a for a, b in box), self.dtype)
        lead, (y0, y1), (x0, x1) = box[: len(self.leading)], *box[len(self.leading) :][:2]
        for index in np.ndindex(*(b - a for a, b in lead)):
            number = (
                np.ravel_multi_index(
                    tuple(a + i for (a, _), i in zip(lead, index, strict=True)), self.leading
                )
                if lead
                else 0
            )
            self._page_into(self.pages[number], out[index], y0, y1, x0, x1)
        return out

    def _page_into(self, page: Any, out: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> None:
        seg_h, seg_w = self.unit[len(self.leading)], self.unit[len(self.leading) + 1]
        across = -(-page.imagewidth // seg_w)
        for sy in range(y0 // seg_h, -(-y1 // seg_h)):
            for sx in range(x0 // seg_w, -(-x1 // seg_w)):
                index = sy * across + sx
                self.fh.seek(page.dataoffsets[index])
                data = self.fh.read(page.databytecounts[index])
                segment, _, shape = page.decode(data or None, index, jpegtables=page.jpegtables)
                top, left = sy * seg_h, sx * seg_w
                if segment is None:  # a strip the writer left out: zeros, as tifffile reads it
                    segment = np.zeros((1, seg_h, seg_w, 1), self.dtype)
                seg = segment[0, : shape[1], : shape[2]]
                seg = seg[..., 0] if len(self.page_shape) == 2 else seg
                a, b = max(y0, top), min(y1, top + seg.shape[0])
                c, d = max(x0, left), min(x1, left + seg.shape[1])
                out[a - y0 : b - y0, c - x0 : d - x0] = seg[a - top : b - top, c - left : d - left]

    def close(self) -> None:
        pass


class Samples:
    """A backend whose last axis holds the samples of a pixel (RGB), as one structured value."""

    def __init__(self, backend: Any, dtype: Any) -> None:
        self.backend, self.dtype = backend, np.dtype(dtype)
        self.shape, self.unit = backend.shape[:-1], backend.unit[:-1]
        self.samples = len(self.dtype.names)

    def read(self, box: Box) -> np.ndarray:
        block = self.backend.read((*box, (0, self.samples)))
        return np.ascontiguousarray(block).view(self.dtype)[..., 0]

    def close(self) -> None:
        self.backend.close()


class Stored:
    """A view of a stored array (a backend above): a selection on each stored axis (a ``range``
    or an index) and the order of the kept axes."""

    def __init__(
        self,
        backend: Any,
        sel: list | None = None,
        perm: list[int] | None = None,
        most: int | None = None,
    ) -> None:
        self.backend, self.most = backend, most  # most: bytes a piece may have (but one unit)
        self.sel = sel if sel is not None else [range(n) for n in backend.shape]
        kept = [k for k, s in enumerate(self.sel) if isinstance(s, range)]
        self.perm = perm if perm is not None else kept
        self.dtype = backend.dtype

    # -- what numpy-like code reads -------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(self.sel[k]) for k in self.perm)

    @property
    def ndim(self) -> int:
        return len(self.perm)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def transpose(self, *axes: Any) -> Stored:
        axes = axes[0] if len(axes) == 1 and not isinstance(axes[0], int) else axes
        axes = list(axes) if axes else list(range(self.ndim))[::-1]
        return Stored(self.backend, self.sel, [self.perm[a] for a in axes], self.most)

    def __getitem__(self, key: Any) -> Stored:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1 :]
        key = key + (slice(None),) * (self.ndim - len(key))
        sel = list(self.sel)
        perm = []
        for axis, k in zip(self.perm, key, strict=True):
            if isinstance(k, slice):
                sel[axis] = sel[axis][k]
                if sel[axis].step < 0 or not len(sel[axis]):
                    raise IndexError("stored arrays are read forwards, and not as nothing")
                perm.append(axis)
            else:
                sel[axis] = sel[axis][int(k)]
        return Stored(self.backend, sel, perm, self.most)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.empty(self.shape, self.dtype)
        for where, block in self.pieces(max(self.nbytes, 1)):
            out[where] = block
        return out if dtype is None else out.astype(dtype)

    # -- reading in storage order ---------------------------------------------------------------
    def stored_first(self) -> int:
        """The logical axis that varies slowest in the file."""
        return min(range(self.ndim), key=lambda i: self.perm[i])

    def pieces(self, target: int) -> Iterator[tuple[tuple[slice, ...], np.ndarray]]:
        """(where, block): blocks of about ``target`` bytes (never less than the file's unit of
        reading), in the file's order, ``where`` the logical slices of this view each covers."""
        shape, unit, item = self.backend.shape, self.backend.unit, self.dtype.itemsize
        target = min(target, self.most or target)
        spans = [(s.start, s[-1] + 1) if isinstance(s, range) else (s, s + 1) for s in self.sel]
        lo = [a // u * u for (a, _), u in zip(spans, unit, strict=True)]
        hi = [min(n, -(-b // u) * u) for (_, b), u, n in zip(spans, unit, shape, strict=True)]
        ext = [b - a for a, b in zip(lo, hi, strict=True)]
        n = len(shape)
        if n == 0:
            yield self._select(())
            return

        def unit_block(g: int) -> int:  # bytes of one unit along axes <= g, all of those after
            return math.prod(unit[: g + 1]) * math.prod(ext[g + 1 :]) * item

        # the outermost axis whose unit blocks fit: blocks then run over whole trailing extents
        g = next((g for g in range(n) if unit_block(g) <= target), n - 1)
        per = max(1, target // unit_block(g)) * unit[g]
        steps = [*unit[:g], per]
        grids = [self._starts(k, lo[k], hi[k], steps[k]) for k in range(g + 1)]
        for starts in _product(grids):
            box = [(a, min(a + steps[k], hi[k])) for k, a in enumerate(starts)]
            box += [(lo[k], hi[k]) for k in range(g + 1, n)]
            yield self._select(tuple(box))

    def _starts(self, k: int, lo: int, hi: int, step: int) -> list[int]:
        """Box starts along stored axis k that hold at least one selected index."""
        s = self.sel[k]
        wanted = np.asarray(s) if isinstance(s, range) else np.array([s])
        return sorted({lo + int(i) // step * step for i in wanted - lo})

    def _select(self, box: Box) -> tuple[tuple[slice, ...], np.ndarray]:
        block = self.backend.read(box)
        local, where = [], {}
        for k, ((a, b), s) in enumerate(zip(box, self.sel, strict=True)):
            if not isinstance(s, range):
                local.append(s - a)
                continue
            first = max(0, -(-(a - s.start) // s.step))
            last = min(len(s), -(-(b - s.start) // s.step))
            local.append(slice(s[first] - a, s[last - 1] - a + 1, s.step))
            where[k] = slice(first, last)
        part = block[tuple(local)]
        kept = [k for k in range(len(box)) if isinstance(self.sel[k], range)]
        part = part.transpose([kept.index(k) for k in self.perm])
        return tuple(where[k] for k in self.perm), part


def _product(grids: list[list[int]]) -> Iterator[tuple[int, ...]]:
    if not grids:
        yield ()
        return
    for first in grids[0]:
        for rest in _product(grids[1:]):
            yield (first, *rest)


def pieces(data: Any, target: int) -> Iterator[tuple[tuple[slice, ...], np.ndarray]]:
    """Blocks of any array: a ``Stored`` one in its file's order, others (numpy, memmap, dask)
    in bands of its first axis."""
    if isinstance(data, Stored):
        yield from data.pieces(target)
        return
    row = math.prod(data.shape[1:]) * data.dtype.itemsize
    step = max(1, target // max(1, row))
    rest = (slice(None),) * (data.ndim - 1)
    for r in range(0, data.shape[0], step):
        yield (slice(r, min(r + step, data.shape[0])), *rest), np.asarray(data[r : r + step])
