"""Linear filters and scratch memory behind the windowed fusion metrics (SSIM, VIF, Q^AB/F).

Every filter takes float64 batches (..., H, W) and returns the 'valid' outputs (windows that
fit inside the image), with no Python loop over pixels: separable 1-D correlations as small
banded matrix products (BLAS) for the Gaussian windows of VIF, running sums by doubling for
the uniform SSIM window, shifted slices for the Sobel operator.

Outputs and temporaries come from a :class:`Workspace`: the metrics of one 256 x 256 slice
touch megabytes of temporaries, and fresh numpy arrays of that size are fresh pages from the
operating system each time (glibc returns them when they are freed); the page faults took a
large part of the CPU time on a virtual machine. Reusing the buffers from slice to slice
removes them. The metrics live in :mod:`EDPSNLib.metrics.maps`
and :mod:`EDPSNLib.metrics.local`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import DTypeLike

#: Outputs per band block of :func:`filter_valid`, and the largest tile across the band: each
#: BLAS product is then at most 16 x 256 x (15 stride + taps) multiply-adds, below the size at
#: which OpenBLAS starts threads (whose spin-waiting costs more than such a product).
BAND_BLOCK = 16
BAND_TILE = 256


class Workspace:
    """Named scratch arrays reused between calls, one per thread.

    ``get`` returns a view of a buffer that only grows; two arrays in use at the same time need
    different names.

    Example:
        >>> ws = Workspace()
        >>> a = ws.get("x", (2, 3))
        >>> ws.get("x", (3,)).base is a.base  # the same memory, reshaped
        True
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: DTypeLike = np.float64) -> np.ndarray:
        """An uninitialised C-ordered array of ``shape`` backed by the buffer ``name``.

        Args:
            name: the buffer's name.
            shape: the shape wanted.
            dtype: its dtype (a buffer of another dtype is replaced).

        Returns:
            A view of the buffer (its old contents: write before reading).
        """
        need = math.prod(shape)
        buf = self._buffers.get(name)
        if buf is None or buf.size < need or buf.dtype != np.dtype(dtype):
            buf = self._buffers[name] = np.empty(max(need, 1), dtype=dtype)
        return buf[:need].reshape(shape)

    def arange(self, n: int) -> np.ndarray:
        """0, 1, ..., n - 1 (intp), kept between calls.

        Args:
            n: the length.

        Returns:
            A view of the kept range.
        """
        buf = self._buffers.get("_arange")
        if buf is None or buf.size < n:
            buf = self._buffers["_arange"] = np.arange(n, dtype=np.intp)
        return buf[:n]


def workspace(ws: Workspace | None) -> Workspace:
    """``ws``, or a fresh (throw-away) workspace.

    Args:
        ws: a workspace or None.

    Returns:
        A workspace.
    """
    return Workspace() if ws is None else ws


def gaussian_kernel_1d(n: int, sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian; its outer product is MATLAB's ``fspecial('gaussian', n, sigma)``.

    MATLAB zeroes taps below eps * max before normalising; for the VIF windows (sigma = n / 5)
    no tap is that small, so the 2-D window is exactly separable.

    Args:
        n: number of taps.
        sigma: standard deviation in taps.

    Returns:
        float64 (n,) summing to 1.

    Example:
        >>> gaussian_kernel_1d(3, 1.0).round(4).tolist()
        [0.2741, 0.4519, 0.2741]
    """
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    k = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return k / k.sum()


def filter_valid(
    x: np.ndarray, k: np.ndarray, stride: int = 1, ws: Workspace | None = None, name: str = "f"
) -> np.ndarray:
    """'valid' correlation of (..., H, W) with the separable window k (x) k, every ``stride`` pixels.

    Args:
        x: float64 (..., H, W).
        k: 1-D kernel (n,).
        stride: keep every ``stride``-th output in both directions.
        ws: workspace for the outputs (a fresh one if None).
        name: the result is a view of this workspace buffer (``name + "_w"`` holds the rows pass).

    Returns:
        (..., (H - n) // stride + 1, (W - n) // stride + 1).

    Example:
        >>> filter_valid(np.ones((5, 6)), np.full(3, 1 / 3)).round(12).tolist()
        [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
    """
    ws = workspace(ws)
    count = [(d - len(k)) // stride + 1 for d in x.shape[-2:]]
    rows = ws.get(name + "_w", (*x.shape[:-1], count[1]))
    _banded_valid(x, k, -1, stride, rows)
    return _banded_valid(rows, k, -2, stride, ws.get(name, (*x.shape[:-2], *count)))


def _band_matrix(k: np.ndarray, stride: int) -> np.ndarray:
    """(stride (BAND_BLOCK - 1) + n, BAND_BLOCK): column j holds k from row stride * j."""
    n = len(k)
    band = np.zeros((stride * (BAND_BLOCK - 1) + n, BAND_BLOCK))
    cols = np.arange(BAND_BLOCK)
    band[stride * cols[:, None] + np.arange(n), cols[:, None]] = k
    return band


def _banded_valid(
    x: np.ndarray, k: np.ndarray, axis: int, stride: int, out: np.ndarray
) -> np.ndarray:
    """'valid' correlation with k along ``axis`` (-1 or -2), every ``stride``-th output, into out.

    Blocks of BAND_BLOCK outputs are one small matrix product with a band of k each: BLAS runs
    them vectorised (scipy's correlate1d is a scalar loop), although about half of the band is
    zeros.
    Tiles of at most BAND_TILE along the other axis keep every product small enough that
    OpenBLAS stays on the calling thread.
    """
    band, n = _band_matrix(k, stride), len(k)
    for j in range(0, out.shape[axis], BAND_BLOCK):
        b = min(BAND_BLOCK, out.shape[axis] - j)
        m = band[: stride * (b - 1) + n, :b]
        src = slice(stride * j, stride * (j + b - 1) + n)
        for t in range(0, out.shape[-1 if axis == -2 else -2], BAND_TILE):
            tile = slice(t, t + BAND_TILE)
            if axis == -1:
                np.matmul(x[..., tile, src], m, out=out[..., tile, j : j + b])
            else:
                np.matmul(m.T, x[..., src, tile], out=out[..., j : j + b, tile])
    return out


def crop_valid(mask: np.ndarray, n: int, stride: int = 1) -> np.ndarray:
    """The mask at the centre pixels of the 'valid' outputs of an n x n window (as filter_valid).

    Args:
        mask: (..., H, W).
        n: the window side.
        stride: as :func:`filter_valid`.

    Returns:
        A view (..., H - n + 1 (strided), W - n + 1 (strided)).

    Example:
        >>> crop_valid(np.arange(25).reshape(5, 5), 3).tolist()
        [[6, 7, 8], [11, 12, 13], [16, 17, 18]]
    """
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
    """'valid' n x n window sums of (..., H, W), not divided (running sums by doubling).

    Args:
        x: float64 (..., H, W).
        n: the window side.
        out: (..., H - n + 1, W - n + 1) to write into.
        ws: workspace for the temporaries.

    Returns:
        ``out``.

    Example:
        >>> out = np.empty((2, 2))
        >>> box_sum_valid(np.ones((3, 3)), 2, out, Workspace()).tolist()
        [[4.0, 4.0], [4.0, 4.0]]
    """
    tmp = ws.get("box_rows", (*x.shape[:-2], out.shape[-2], x.shape[-1]))
    return _window_sums(_window_sums(x, n, -2, tmp, ws), n, -1, out, ws)


def sobel_valid(p: np.ndarray, ws: Workspace) -> tuple[np.ndarray, np.ndarray]:
    """3x3 Sobel responses (s_x, s_y) at the inner pixels of (..., H + 2, W + 2).

    Correlation as MATLAB's ``filter2``: s_x = right - left (along W), s_y = bottom - top;
    pass the image zero-padded by one pixel (:func:`zero_pad`) for zero padding.

    Args:
        p: float64 (..., H + 2, W + 2).
        ws: workspace for the outputs.

    Returns:
        (s_x, s_y), each (..., H, W).

    Example:
        >>> ramp = np.tile(np.arange(4.0), (4, 1))  # rises by 1 per column
        >>> sx, sy = sobel_valid(ramp, Workspace())
        >>> sx.tolist(), sy.tolist()
        ([[8.0, 8.0], [8.0, 8.0]], [[0.0, 0.0], [0.0, 0.0]])
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
    """(..., H, W) padded with one zero row and column on each side.

    Args:
        x: (..., H, W).
        ws: workspace for the output.
        name: its buffer name.

    Returns:
        (..., H + 2, W + 2).

    Example:
        >>> zero_pad(np.ones((1, 1)), Workspace()).tolist()
        [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    """
    p = ws.get(name, (*x.shape[:-2], x.shape[-2] + 2, x.shape[-1] + 2))
    p[..., 0, :] = p[..., -1, :] = p[..., :, 0] = p[..., :, -1] = 0.0
    p[..., 1:-1, 1:-1] = x
    return p
