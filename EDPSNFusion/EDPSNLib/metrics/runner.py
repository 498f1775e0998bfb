"""The chunked, threaded runner behind every public metric call of :mod:`EDPSNLib.metrics`.

A *core* computes per-pixel maps of a chunk of slices once and reduces them over each mask.
:func:`run` cuts the slices into cache-sized chunks, converts colour to BT.601 luma into a
per-thread :class:`~EDPSNLib.metrics.filters.Workspace`, runs the core on threads (numpy and
BLAS release the GIL) and joins the per-chunk results.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import ArrayLike

from EDPSNLib.color import LUMA_WEIGHTS
from EDPSNLib.errors import InputError
from EDPSNLib.metrics.checks import prepare
from EDPSNLib.metrics.filters import Workspace
from EDPSNLib.metrics.maps import Mask

#: Threads used by default (numpy and BLAS release the GIL); ``workers=`` overrides.
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)
#: Pixels per chunk: one 256 x 256 slice. Chunks that stay in cache run ~1.5x faster than
#: whole batches, and bound the memory of the moment stacks (8 float64 copies per chunk).
_CHUNK_PIXELS = 1 << 16
_LUMA = np.asarray(LUMA_WEIGHTS, dtype=np.float64)

Result = dict[str, np.ndarray]
#: core(lin (k, n, H, W), masks=[Mask], ws=Workspace) -> one Result per mask
Core = Callable[..., list[Result]]


def _chunks(n: int, h: int, w: int) -> Iterator[slice]:
    step = max(1, _CHUNK_PIXELS // (h * w))
    for start in range(0, n, step):
        yield slice(start, start + step)


def _luma_into(x: np.ndarray, out: np.ndarray, ws: Workspace) -> None:
    """Float64 luma of (n, H, W[, 3]) into ``out``, bit for bit as ``color.rgb_to_luma``."""
    if x.ndim == out.ndim + 1:
        rgb = ws.get("rgb", x.shape)
        rgb[...] = x
        np.matmul(rgb, _LUMA, out=out)
    else:
        out[...] = x


def run(
    core: Core,
    arrays: list[np.ndarray],
    masks: list[Mask],
    keys: tuple[str, ...],
    round_luma: bool = False,
    workers: int | None = None,
) -> list[Result]:
    """``core`` over cache-sized chunks of the slices on threads; one joined Result per mask.

    Args:
        core: the per-chunk computation (see :data:`Core`).
        arrays: checked images (N, H, W) or (N, H, W, 3), the same N, H, W.
        masks: None (all pixels) or a bool (N, H, W) mask, one entry per result wanted.
        keys: the names in each Result.
        round_luma: round the luma half to even before the core sees it.
        workers: threads (default :data:`DEFAULT_WORKERS`); each keeps one Workspace for all
            its chunks (no fresh pages per slice).

    Returns:
        One ``{key: (N,)}`` per mask.
    """
    workers = DEFAULT_WORKERS if workers is None else int(workers)
    if workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}.")
    local = threading.local()

    def one(s: slice) -> list[Result]:
        """Luma of chunk ``s`` of every array in this thread's Workspace, then ``core`` on it."""
        ws = local.__dict__.setdefault("ws", Workspace())
        first = arrays[0][s]
        lin = ws.get("lin", (len(arrays), *first.shape[:3]))
        for i, a in enumerate(arrays):
            _luma_into(a[s], lin[i], ws)
        if round_luma:
            np.round(lin, out=lin)
        return core(lin, masks=[None if m is None else m[s] for m in masks], ws=ws)

    chunks = list(_chunks(*arrays[0].shape[:3]))
    if workers == 1 or len(chunks) < 2:
        parts = [one(s) for s in chunks]
    else:
        with ThreadPoolExecutor(min(workers, len(chunks))) as pool:
            parts = list(pool.map(one, chunks))
    return [
        {k: np.concatenate([p[j][k] for p in parts]) if parts else np.zeros(0) for k in keys}
        for j in range(len(masks))
    ]


def metric_core(
    maps: Callable[[np.ndarray, Workspace], object],
    reduce: Callable[[object, Mask, Workspace], np.ndarray],
) -> Core:
    """A core for one metric: ``maps(lin, ws)`` once per chunk, ``reduce(maps, mask, ws)`` per mask.

    Args:
        maps: the costly per-pixel part.
        reduce: the per-mask sums, one value per slice.

    Returns:
        A core for :func:`run`, with results under the key ``v``.
    """

    def core(lin: np.ndarray, masks: list[Mask], ws: Workspace) -> list[Result]:
        """``maps`` once on the luma ``lin`` (k, n, H, W), then ``{"v": reduce(...)}`` per mask."""
        computed = maps(lin, ws)
        return [{"v": reduce(computed, m, ws)} for m in masks]

    return core


def single_metric(
    core: Core, named: dict[str, ArrayLike], mask: ArrayLike | None, min_size: int = 1
) -> float | np.ndarray:
    """One metric of grey images on the default workers.

    Args:
        core: from :func:`metric_core`.
        named: the images by name (``f``, or ``a``, ``b``, ``f``, ...), (H, W) or (N, H, W).
        mask: bool of the images' shape, or None.
        min_size: the smallest H and W the metric accepts.

    Returns:
        A float for one image, float64 (N,) for a batch.
    """
    arrays, m, single = prepare(named, mask, min_size=min_size)
    values = run(core, arrays, [m], ("v",))[0]["v"]
    return float(values[0]) if single else values
