"""The seven fusion quality metrics: EN, SD, SCD, Q^AB/F, VIF, PSNR and SSIM, batched and masked.

A and B are the two sources (MRI, and CT or PET/SPECT), F the fused image, all on 0..255.
:func:`fusion_metrics` and :func:`fusion_metrics_batch` reduce colour images to BT.601 luma
Y = 0.299 R + 0.587 G + 0.114 B (float64, not rounded unless ``round_luma=True``); the
single-metric functions take grey images (H, W) -> float or (N, H, W) -> (N,). Conventions
follow the evaluator most recent fusion papers use (MMIF-CDDFuse ``utils/Evaluator.py``);
docs/metrics.md lists where it differs and how to reproduce it.

``mask`` restricts every metric to its pixels. A slice where nothing is left to evaluate (an
empty mask, or for SSIM/VIF no window centre inside it) gets 0.0: exclude such slices with
``mask.any(axis=(1, 2))`` before averaging. Degenerate images give defined values, never NaN.
:func:`fusion_metrics_regions` scores several masks (entropy regions) at little more than the
cost of one: the per-pixel maps (:mod:`EDPSNLib.metrics.maps`, :mod:`EDPSNLib.metrics.local`)
are computed once per chunk of slices and only the sums are repeated per mask.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
from numpy.typing import ArrayLike

from EDPSNLib import names
from EDPSNLib.color import LUMA_WEIGHTS
from EDPSNLib.errors import InputError
from EDPSNLib.metrics import local as ml
from EDPSNLib.metrics import maps as mm
from EDPSNLib.metrics.checks import check_options, prepare, region_masks
from EDPSNLib.metrics.filters import Workspace
from EDPSNLib.metrics.local import SSIM_WIN, VIF_MIN_SIZE
from EDPSNLib.metrics.maps import Mask

METRIC_NAMES = names.METRIC_NAMES
#: PSNR is clipped to +-100 dB; +100 dB is also the value for MSE = 0 (identical images).
PSNR_CAP_DB = 100.0
#: A sample whose variance (0..255 scale) is at most this is constant: its correlation is 0.
CONSTANT_VARIANCE = mm.CONSTANT_VARIANCE
#: Threads used by default (numpy and BLAS release the GIL); ``workers=`` overrides.
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)
#: Pixels per chunk: one 256 x 256 slice. Chunks that stay in cache run ~1.5x faster than
#: whole batches, and bound the memory of the moment stacks (8 float64 copies per chunk).
_CHUNK_PIXELS = 1 << 16

Result = dict[str, np.ndarray]


# ---------------------------------------------------------------------------- chunked runner
Core = Callable[..., list[Result]]  # core(lin (k, n, H, W), masks=[Mask], ws) -> Result per mask
_LUMA = np.asarray(LUMA_WEIGHTS, dtype=np.float64)


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


def _run(
    core: Core,
    arrays: list[np.ndarray],
    masks: list[Mask],
    keys: tuple[str, ...],
    round_luma: bool = False,
    workers: int | None = None,
) -> list[Result]:
    """``core`` over cache-sized chunks of the slices on threads; one joined Result per mask.

    Each thread keeps one :class:`Workspace` for all its chunks (no fresh pages per slice).
    """
    workers = DEFAULT_WORKERS if workers is None else int(workers)
    if workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}.")
    local = threading.local()

    def one(s: slice) -> list[Result]:
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


def _metric_core(
    maps: Callable[[np.ndarray, Workspace], object],
    reduce: Callable[[object, Mask, Workspace], np.ndarray],
) -> Core:
    """A core for one metric: ``maps(lin, ws)`` once, ``reduce(maps, mask, ws)`` per mask."""

    def core(lin: np.ndarray, masks: list[Mask], ws: Workspace) -> list[Result]:
        computed = maps(lin, ws)
        return [{"v": reduce(computed, m, ws)} for m in masks]

    return core


def _single_metric(
    core: Core, named: dict[str, ArrayLike], mask: ArrayLike | None, min_size: int = 1
) -> float | np.ndarray:
    arrays, m, single = prepare(named, mask, min_size=min_size)
    values = _run(core, arrays, [m], ("v",))[0]["v"]
    return float(values[0]) if single else values


def _all_metrics(
    abf: np.ndarray,
    *,
    masks: list[Mask],
    ws: Workspace,
    data_range: float,
    sample_cov: bool,
    peak: float | None,
) -> list[Result]:
    """The seven metrics of A, B, F stacked (3, n, H, W) for each mask; the maps (filtering,
    transcendentals) are computed once."""
    f = abf[2]
    prods = ml.moment_products(abf, ws)  # A F, B F, A^2, B^2, F^2: shared by SSIM and VIF
    ssim_map = ml.ssim_maps(abf, data_range, sample_cov, prods, ws)
    vif_maps = ml.vif_maps(abf, prods, ws)
    levels, diffs, qabf_maps = (
        mm.entropy_maps(f, ws),
        mm.difference_maps(abf, ws),
        mm.qabf_maps(abf, ws),
    )
    return [
        {
            "EN": mm.entropy_reduce(levels, m),
            "SD": mm.std_reduce(f, m, ws),
            "SCD": mm.scd_reduce(diffs, abf, m, ws),
            "Qabf": mm.qabf_reduce(qabf_maps, m),
            "VIF": ml.vif_reduce(vif_maps, m, ws).sum(axis=0),
            "PSNR": mm.psnr_reduce(diffs, f, m, peak, PSNR_CAP_DB),
            "SSIM": ml.ssim_reduce(ssim_map, m),
        }
        for m in masks
    ]


# ------------------------------------------------------------------------------- public API
def _seven_metrics(data_range: float, sample_cov: bool, peak: float | None) -> Callable:
    """The per-chunk computation of all seven metrics with the chosen conventions."""
    check_options(data_range, peak)
    return partial(_all_metrics, data_range=data_range, sample_cov=sample_cov, peak=peak)


def fusion_metrics_regions(
    a: ArrayLike,
    b: ArrayLike,
    f: ArrayLike,
    masks: ArrayLike,
    *,
    ssim_data_range: float = 255.0,
    ssim_sample_covariance: bool = True,
    psnr_peak: float | None = 255.0,
    round_luma: bool = False,
    workers: int | None = None,
) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    """The seven metrics of N slices over the whole image and inside each of K masks.

    ``masks`` is (K, N, H, W) bool (e.g. the three entropy regions). Returns the whole-image
    ``{name: (N,)}`` and one such dict per mask, each equal to ``fusion_metrics_batch(a, b, f,
    mask=masks[k])``; the filtered maps are computed once, only the sums are repeated.
    Options as :func:`fusion_metrics_batch`.
    """
    core = _seven_metrics(ssim_data_range, ssim_sample_covariance, psnr_peak)
    arrays, _, _ = prepare({"a": a, "b": b, "f": f}, None, batched=True, min_size=VIF_MIN_SIZE)
    per_mask = region_masks(masks, *arrays[0].shape[:3])
    out = _run(core, arrays, [None, *per_mask], METRIC_NAMES, round_luma, workers)
    return out[0], out[1:]


def fusion_metrics_batch(
    a: ArrayLike,
    b: ArrayLike,
    f: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    ssim_data_range: float = 255.0,
    ssim_sample_covariance: bool = True,
    psnr_peak: float | None = 255.0,
    round_luma: bool = False,
    workers: int | None = None,
) -> dict[str, np.ndarray]:
    """The seven metrics of N fused slices: a, b, f (N, H, W) grey or (N, H, W, 3) RGB on 0..255.

    Returns ``{name: float64 (N,)}`` for :data:`METRIC_NAMES`; ``mask`` (N, H, W) bool restricts
    every metric to its pixels. ``ssim_data_range=2.0``, ``psnr_peak=None`` (peak = max of F)
    and ``round_luma=True`` reproduce the CDDFuse evaluator's conventions. H, W >= 41.
    ``workers`` threads share the slices (default :data:`DEFAULT_WORKERS`).
    """
    core = _seven_metrics(ssim_data_range, ssim_sample_covariance, psnr_peak)
    arrays, m, _ = prepare({"a": a, "b": b, "f": f}, mask, batched=True, min_size=VIF_MIN_SIZE)
    return _run(core, arrays, [m], METRIC_NAMES, round_luma, workers)[0]


def fusion_metrics(
    a: ArrayLike,
    b: ArrayLike,
    f: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    ssim_data_range: float = 255.0,
    ssim_sample_covariance: bool = True,
    psnr_peak: float | None = 255.0,
    round_luma: bool = False,
) -> dict[str, float]:
    """The seven metrics of one fused image: a, b, f (H, W) grey or (H, W, 3) RGB on 0..255.

    Same conventions and options as :func:`fusion_metrics_batch`; ``mask`` is (H, W).
    """
    arrays, m, _ = prepare({"a": a, "b": b, "f": f}, mask, batched=False, min_size=VIF_MIN_SIZE)
    out = fusion_metrics_batch(
        *arrays,
        mask=m,
        ssim_data_range=ssim_data_range,
        ssim_sample_covariance=ssim_sample_covariance,
        psnr_peak=psnr_peak,
        round_luma=round_luma,
    )
    return {k: float(v[0]) for k, v in out.items()}


def _vif_maps(lin: np.ndarray, ws: Workspace) -> list[tuple[np.ndarray, np.ndarray]]:
    return ml.vif_maps(lin, ml.moment_products(lin, ws), ws)


def _ssim_maps(lin: np.ndarray, ws: Workspace, data_range: float, sample_cov: bool) -> np.ndarray:
    return ml.ssim_maps(lin, data_range, sample_cov, ml.moment_products(lin, ws), ws)


def entropy(f: ArrayLike, *, mask: ArrayLike | None = None) -> float | np.ndarray:
    """EN: Shannon entropy (bits) of the 256-bin histogram of F rounded half-to-even, clipped to 0..255.

    Like every function below: grey (H, W) -> float, or a batch (N, H, W) -> (N,).
    """
    core = _metric_core(
        lambda x, ws: mm.entropy_maps(x[0], ws), lambda y, m, ws: mm.entropy_reduce(y, m)
    )
    return _single_metric(core, {"f": f}, mask)


def standard_deviation(f: ArrayLike, *, mask: ArrayLike | None = None) -> float | np.ndarray:
    """SD: population standard deviation of F (not rounded) on 0..255."""
    return _single_metric(_metric_core(lambda x, ws: x[0], mm.std_reduce), {"f": f}, mask)


def scd(
    a: ArrayLike, b: ArrayLike, f: ArrayLike, *, mask: ArrayLike | None = None
) -> float | np.ndarray:
    """SCD: corr(F - B, A) + corr(F - A, B), Pearson over the pixels; a constant's correlation is 0."""
    core = _metric_core(
        lambda x, ws: (mm.difference_maps(x, ws), x), lambda y, m, ws: mm.scd_reduce(*y, m, ws)
    )
    return _single_metric(core, {"a": a, "b": b, "f": f}, mask)


def qabf(
    a: ArrayLike, b: ArrayLike, f: ArrayLike, *, mask: ArrayLike | None = None
) -> float | np.ndarray:
    """Q^AB/F (Xydeas & Petrovic), 3x3 Sobel with zero padding, in [0, 1]; no source edge -> 1 or 0."""
    core = _metric_core(mm.qabf_maps, lambda y, m, ws: mm.qabf_reduce(y, m))
    return _single_metric(core, {"a": a, "b": b, "f": f}, mask)


def vifp(ref: ArrayLike, dist: ArrayLike, *, mask: ArrayLike | None = None) -> float | np.ndarray:
    """Pixel-domain 4-scale VIF of ``dist`` against ``ref`` (Sheikh & Bovik), sigma_n^2 = 2; H, W >= 41."""
    core = _metric_core(_vif_maps, lambda y, m, ws: ml.vif_reduce(y, m, ws)[0])
    return _single_metric(core, {"ref": ref, "dist": dist}, mask, VIF_MIN_SIZE)


def vif(
    a: ArrayLike, b: ArrayLike, f: ArrayLike, *, mask: ArrayLike | None = None
) -> float | np.ndarray:
    """VIF: vifp(A, F) + vifp(B, F)."""
    core = _metric_core(_vif_maps, lambda y, m, ws: ml.vif_reduce(y, m, ws).sum(axis=0))
    return _single_metric(core, {"a": a, "b": b, "f": f}, mask, VIF_MIN_SIZE)


def psnr(
    a: ArrayLike,
    b: ArrayLike,
    f: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    peak: float | None = 255.0,
) -> float | np.ndarray:
    """PSNR: 10 log10(peak^2 / ((MSE(A, F) + MSE(B, F)) / 2)) in dB, clipped to +-100 (MSE 0 -> 100).

    ``peak=None`` takes the maximum of F (inside the mask), as the CDDFuse evaluator does.
    """
    check_options(peak=peak)
    core = _metric_core(
        lambda x, ws: (mm.difference_maps(x, ws), x[2]),
        lambda y, m, ws: mm.psnr_reduce(*y, m, peak, PSNR_CAP_DB),
    )
    return _single_metric(core, {"a": a, "b": b, "f": f}, mask)


def ssim_index(
    x: ArrayLike,
    y: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    data_range: float = 255.0,
    sample_covariance: bool = True,
) -> float | np.ndarray:
    """Mean SSIM of x and y: uniform 7x7 window, K1 = 0.01, K2 = 0.03, over the 'valid' centres.

    Equals ``skimage.metrics.structural_similarity(x, y, win_size=7, data_range=data_range,
    use_sample_covariance=sample_covariance)``.
    """
    check_options(data_range=data_range)
    core = _metric_core(
        partial(_ssim_maps, data_range=data_range, sample_cov=sample_covariance),
        lambda y, m, ws: ml.ssim_reduce(y, m),
    )
    return _single_metric(core, {"x": x, "y": y}, mask, SSIM_WIN)


def ssim(
    a: ArrayLike,
    b: ArrayLike,
    f: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    data_range: float = 255.0,
    sample_covariance: bool = True,
) -> float | np.ndarray:
    """SSIM: ssim_index(A, F) + ssim_index(B, F), a sum in [-2, 2] as MMIF tables report it."""
    check_options(data_range=data_range)
    core = _metric_core(
        partial(_ssim_maps, data_range=data_range, sample_cov=sample_covariance),
        lambda y, m, ws: ml.ssim_reduce(y, m),
    )
    return _single_metric(core, {"a": a, "b": b, "f": f}, mask, SSIM_WIN)
