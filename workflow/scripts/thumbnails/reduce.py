"""Reductions in bounded memory: data read in pieces, reduced as it comes.

Memory stays bounded by the reduced result plus one piece (``BAND_BYTES``): bands of rows of an
array in memory, blocks in the file's own order of one left in its file (``stored.pieces``), so
the sums below never ask for the axes in an order that makes the file be read twice. Images are
block-averaged to the smallest size that still fills their place before the contrast stretch, so
an 8192x8192 image costs about as much as one of 500x500 after reading. Spectrum images and 4D
data read at most ``READ_BUDGET`` bytes: beyond that, one scan position in n each way.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .signals import real
from .stored import Stored, pieces

READ_BUDGET = 256 * 2**20  # at most this much of a spectrum image or 4D dataset is read
BAND_BYTES = 16 * 2**20  # data reduced this much at a time
LOW_PERCENTILE, HIGH_PERCENTILE = 0.5, 99.5


def block_mean(arr: Any, k: int) -> np.ndarray:
    """Mean over k x k blocks of a 2D array (numpy, memmap or dask), read in bands of rows; the
    last partial block of each axis is dropped (less than k pixels)."""
    h, w = arr.shape
    if k <= 1:
        return np.asarray(real(np.asarray(arr)), dtype=np.float32)
    hh, ww = h // k, w // k
    if isinstance(arr, Stored):
        return _stored_block_mean(arr, k)
    out = np.empty((hh, ww), np.float32)
    step = max(1, BAND_BYTES // (k * w * arr.dtype.itemsize))  # output rows per band
    for r in range(0, hh, step):
        n = min(step, hh - r)
        band = real(np.asarray(arr[r * k : (r + n) * k, : ww * k]))
        out[r : r + n] = band.reshape(n, k, ww, k).sum(axis=(1, 3), dtype=np.float32)
    out *= 1.0 / (k * k)
    return out


def _stored_block_mean(arr: Stored, k: int) -> np.ndarray:
    """`block_mean` of an array in a file, whose pieces (strips, tiles, chunks) need not start
    on a block's edge: each piece's sums go to the blocks it covers."""
    hh, ww = arr.shape[0] // k, arr.shape[1] // k
    out = np.zeros((hh, ww), np.float64)
    for (rows, cols), block in arr[: hh * k, : ww * k].pieces(BAND_BYTES):
        band = real(block)
        r0, r1 = rows.start, rows.stop
        # a part of a block of rows at either end of the piece, whole blocks between them
        head = min(r1, -(-r0 // k) * k)
        body = max(head, r1 // k * k)
        for a, b in ((r0, head), (head, body), (body, r1)):
            if b <= a:
                continue
            part = band[a - r0 : b - r0]
            if a % k == 0 and (b - a) % k == 0:
                sums = part.reshape((b - a) // k, k, -1).sum(axis=1, dtype=np.float32)
            else:  # rows of one block
                sums = part.sum(axis=0, dtype=np.float32)[None]
            c0, c1 = cols.start, cols.stop
            if c0 % k == 0 and (c1 - c0) % k == 0:
                binned = sums.reshape(len(sums), -1, k).sum(axis=2)
            else:
                index = np.arange(c0, c1) // k
                binned = np.add.reduceat(sums, np.flatnonzero(np.diff(index, prepend=-1)), axis=1)
            out[a // k : a // k + len(binned), c0 // k : c0 // k + binned.shape[1]] += binned
    return (out * (1.0 / (k * k))).astype(np.float32)


def limits(values: np.ndarray) -> tuple[float, float]:
    """Contrast limits: the low and high percentiles of the finite values."""
    v = values.ravel()
    if not np.isfinite(v).all():
        v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    lo_i = int(LOW_PERCENTILE / 100 * (v.size - 1))
    hi_i = int(round(HIGH_PERCENTILE / 100 * (v.size - 1)))
    part = np.partition(v, (lo_i, hi_i))
    lo, hi = float(part[lo_i]), float(part[hi_i])
    if hi <= lo:
        lo, hi = float(v.min()), float(v.max())
    return lo, hi


def stretch(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    gain = 255.0 / (hi - lo) if hi > lo else 0.0
    out = (img - np.float32(lo)) * np.float32(gain)
    np.clip(out, 0, 255, out=out)
    out[~np.isfinite(out)] = 0
    return out.astype(np.uint8)


def reduce_to(arr: Any, dw: int, dh: int) -> np.ndarray:
    """Block mean to the smallest size that still covers dw x dh (no upsampling after)."""
    h, w = arr.shape
    return block_mean(arr, max(1, min(w // dw, h // dh)))


def stride_for(nav_shape: tuple[int, ...], signal_bytes: int) -> int:
    """Step between scan positions (each direction) that keeps the read within READ_BUDGET."""
    s = 1
    while math.prod(math.ceil(n / s) for n in nav_shape) * signal_bytes > READ_BUDGET:
        s += 1
    return s


def scan_view(data: Any, stride: int) -> Any:
    """Every stride-th scan position each way (the navigation axes come first)."""
    return data[(slice(None, None, stride),) * min(2, data.ndim - 1)] if stride > 1 else data


def spectrum_sums(data: Any, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Navigator (sum over the last axis) and sum spectrum of a linescan or spectrum image."""
    view = scan_view(data, stride)
    nav = np.zeros(view.shape[:-1], np.float64)
    spectrum = np.zeros(data.shape[-1], np.float64)
    for where, block in pieces(view, BAND_BYTES):
        band = real(block)
        nav[where[:-1]] += band.sum(axis=-1, dtype=np.float64)
        if band.flags.c_contiguous:
            spectrum[where[-1]] += band.reshape(-1, band.shape[-1]).sum(axis=0, dtype=np.float64)
        else:  # energy planes of a file stored plane by plane
            spectrum[where[-1]] += band.sum(axis=tuple(range(band.ndim - 1)), dtype=np.float64)
    return nav, spectrum
