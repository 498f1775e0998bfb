"""Linear filters and scratch memory behind the windowed fusion metrics (SSIM, VIF, Q^AB/F).

Every filter takes float64 batches (..., H, W) and returns the 'valid' outputs (windows that
fit inside the image), with no Python loop over pixels: separable 1-D correlations
(``scipy.ndimage.correlate1d``) for the Gaussian windows of VIF, running sums by doubling
for the uniform SSIM window, shifted slices for the Sobel operator.

Outputs and temporaries come from a :class:`Workspace`: the metrics of one 256 x 256 slice
touch megabytes of temporaries, and fresh numpy arrays of that size are fresh pages from the
operating system each time (glibc returns them when they are freed); the page faults took a
large part of the CPU time on a virtual machine. Reusing the buffers from slice to slice
removes them. The metrics live in :mod:`EDPSNLib.metrics_maps`
and :mod:`EDPSNLib.metrics_local`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import DTypeLike
from scipy import ndimage


class Workspace:
    """Named scratch arrays reused between calls: ``get`` returns a view of a buffer that only
    grows. Two arrays in use at the same time need different names; one per thread."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: DTypeLike = np.float64) -> np.ndarray:
        """An uninitialised C-ordered array of ``shape`` backed by the buffer ``name``."""
        need = math.prod(shape)
        buf = self._buffers.get(name)
        if buf is None or buf.size < need or buf.dtype != np.dtype(dtype):
            buf = self._buffers[name] = np.empty(max(need, 1), dtype=dtype)
        return buf[:need].reshape(shape)

    def arange(self, n: int) -> np.ndarray:
        """0, 1, ..., n - 1 (intp), kept between calls."""
        buf = self._buffers.get("_arange")
        if buf is None or buf.size < n:
            buf = self._buffers["_arange"] = np.arange(n, dtype=np.intp)
        return buf[:n]


def workspace(ws: Workspace | None) -> Workspace:
    """``ws``, or a fresh (throw-away) workspace."""
    return Workspace() if ws is None else ws


def gaussian_kernel_1d(n: int, sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian of length ``n``; its outer product is ``fspecial('gaussian', n, sigma)``.

    MATLAB zeroes taps below eps * max before normalising; for the VIF windows (sigma = n / 5)
    no tap is that small, so the 2-D window is exactly separable.
    """
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    k = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return k / k.sum()


def filter_valid(
    x: np.ndarray, k: np.ndarray, stride: int = 1, ws: Workspace | None = None, name: str = "f"
) -> np.ndarray:
    """'valid' correlation of (..., H, W) with the window k (x) k, kept every ``stride`` pixels.

    The result is a view of the workspace buffer ``name`` (``name + "_w"`` holds the rows pass).
    """
    ws, r = workspace(ws), len(k) // 2
    h, w = x.shape[-2:]
    if stride > 1:  # only the kept outputs: shifted strided slices, 1 / stride of the work
        rows = _strided_valid(x, k, -1, stride, ws, name + "_w")
        return _strided_valid(rows, k, -2, stride, ws, name)
    rows = ndimage.correlate1d(x, k, axis=-1, mode="constant", output=ws.get(name + "_w", x.shape))
    rows = rows[..., r : w - r]
    out = ndimage.correlate1d(rows, k, axis=-2, mode="constant", output=ws.get(name, rows.shape))
    return out[..., r : h - r, :]


def _strided_valid(
    x: np.ndarray, k: np.ndarray, axis: int, stride: int, ws: Workspace, name: str
) -> np.ndarray:
    """'valid' correlation with the symmetric k along ``axis``, every ``stride``-th output."""
    n = len(k)
    count = (x.shape[axis] - n) // stride + 1

    def tap(t: int) -> np.ndarray:
        index = [slice(None)] * x.ndim
        index[axis] = slice(t, t + stride * (count - 1) + 1, stride)
        return x[tuple(index)]

    shape = list(x.shape)
    shape[axis] = count
    out = np.multiply(tap(n // 2), k[n // 2], out=ws.get(name, tuple(shape)))
    pair = ws.get(name + "_pair", tuple(shape))
    for t in range(n // 2):  # k[t] = k[n - 1 - t]: one multiply per pair of taps
        np.add(tap(t), tap(n - 1 - t), out=pair)
        pair *= k[t]
        out += pair
    return out


def crop_valid(mask: np.ndarray, n: int, stride: int = 1) -> np.ndarray:
    """The mask at the centre pixels of the 'valid' outputs of an n x n window (see filter_valid)."""
    r = n // 2
    return mask[..., r : mask.shape[-2] - r : stride, r : mask.shape[-1] - r : stride]


def _take(a: np.ndarray, axis: int, start: int, length: int) -> np.ndarray:
    index = [slice(None)] * a.ndim
    index[axis] = slice(start, start + length)
    return a[tuple(index)]


def _window_sums(x: np.ndarray, n: int, axis: int, out: np.ndarray, ws: Workspace) -> np.ndarray:
    """Sums of ``n`` consecutive elements along ``axis`` ('valid') into ``out``, by doubling."""
    out_len = out.shape[axis]
    parts, pos, size, block = [], 0, 1, x  # block[i] = sum of x[i : i + size]
    while n:
        if n & 1:
            parts.append(_take(block, axis, pos, out_len))
            pos += size
        n >>= 1
        if n:
            length = block.shape[axis] - size
            shape = list(block.shape)
            shape[axis] = length
            nxt = ws.get(f"win{size}", tuple(shape))  # win1, win2, ...: distinct while in use
            block = np.add(_take(block, axis, 0, length), _take(block, axis, size, length), out=nxt)
            size *= 2
    if len(parts) == 1:
        out[...] = parts[0]
        return out
    np.add(parts[0], parts[1], out=out)
    for p in parts[2:]:
        out += p
    return out


def box_sum_valid(x: np.ndarray, n: int, out: np.ndarray, ws: Workspace) -> np.ndarray:
    """'valid' n x n window sums of (..., H, W) into ``out`` (..., H-n+1, W-n+1), not divided."""
    tmp = ws.get("box_rows", (*x.shape[:-2], out.shape[-2], x.shape[-1]))
    return _window_sums(_window_sums(x, n, -2, tmp, ws), n, -1, out, ws)


def sobel_valid(p: np.ndarray, ws: Workspace) -> tuple[np.ndarray, np.ndarray]:
    """3x3 Sobel responses (s_x, s_y) of (..., H+2, W+2) at the (..., H, W) inner pixels.

    Correlation, s_x along W; pass the image zero-padded by one pixel for zero padding.
    """
    lead, (h, w) = p.shape[:-2], (p.shape[-2] - 2, p.shape[-1] - 2)
    dx = np.subtract(p[..., :, 2:], p[..., :, :-2], out=ws.get("sobel_d", (*lead, h + 2, w)))
    sx = np.add(dx[..., :-2, :], dx[..., 2:, :], out=ws.get("sobel_x", (*lead, h, w)))
    sx += dx[..., 1:-1, :]
    sx += dx[..., 1:-1, :]  # [-1, 0, 1] along W, then [1, 2, 1] along H
    sm = np.add(p[..., :, :-2], p[..., :, 2:], out=dx)
    sm += p[..., :, 1:-1]
    sm += p[..., :, 1:-1]  # [1, 2, 1] along W, then [-1, 0, 1] along H
    sy = np.subtract(sm[..., 2:, :], sm[..., :-2, :], out=ws.get("sobel_y", (*lead, h, w)))
    return sx, sy


def zero_pad(x: np.ndarray, ws: Workspace, name: str = "pad") -> np.ndarray:
    """(..., H, W) padded with one zero row and column on each side."""
    p = ws.get(name, (*x.shape[:-2], x.shape[-2] + 2, x.shape[-1] + 2))
    p[..., 0, :] = p[..., -1, :] = p[..., :, 0] = p[..., :, -1] = 0.0
    p[..., 1:-1, 1:-1] = x
    return p
