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
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
from numpy.typing import ArrayLike

from .color import rgb_to_luma
from .errors import InputError
from .metrics_filters import SSIM_WIN, VIF_MIN_SIZE, crop_valid, qabf_sums, ssim_maps, vif_sums

METRIC_NAMES = ("EN", "SD", "SCD", "Qabf", "VIF", "PSNR", "SSIM")
#: PSNR is clipped to +-100 dB; +100 dB is also the value for MSE = 0 (identical images).
PSNR_CAP_DB = 100.0
#: A sample whose variance (0..255 scale) is at most this is constant: its correlation is 0.
CONSTANT_VARIANCE = 1e-20
#: Threads used by default (numpy and scipy.ndimage release the GIL); ``workers=`` overrides.
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)
#: Pixels per chunk: one 256 x 256 slice. Chunks that stay in cache run ~1.5x faster than
#: whole batches, and bound the memory of the VIF moment stacks (8 float64 copies per chunk).
_CHUNK_PIXELS = 1 << 16

Result = dict[str, np.ndarray]


# ----------------------------------------------------------------------------- input checks
def _numeric(x: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "uif":
        raise InputError(f"{name} has dtype {arr.dtype}; pass a numeric image on 0..255.")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputError(
            f"{name} contains NaN or infinite values; fix or mask them before scoring."
        )
    return arr


def _images(x: ArrayLike, name: str, batched: bool | None) -> tuple[np.ndarray, bool]:
    """(N, H, W[, 3]) view of one image or a batch, and whether it was a single image.

    ``batched=None``: grey only, (H, W) or (N, H, W); True/False: (N,) H, W with optional RGB.
    """
    arr = _numeric(x, name)
    if batched is None:
        if arr.ndim == 3 and arr.shape[-1] == 3:
            raise InputError(
                f"{name} has shape {arr.shape}, which looks like channel-last RGB; reduce it with "
                "EDPSNLib.color.rgb_to_luma first, or use fusion_metrics."
            )
        if arr.ndim not in (2, 3):
            raise InputError(
                f"{name} has shape {arr.shape}; expected (H, W) or (N, H, W) grey images."
            )
        return (arr[None] if arr.ndim == 2 else arr), arr.ndim == 2
    grey = 3 if batched else 2
    if arr.ndim == grey or (arr.ndim == grey + 1 and arr.shape[-1] == 3):
        return (arr if batched else arr[None]), not batched
    want = "(N, H, W) or (N, H, W, 3)" if batched else "(H, W) or (H, W, 3)"
    raise InputError(f"{name} has shape {arr.shape}; expected {want} (grey or RGB) on 0..255.")


def _prepare(
    named: dict[str, ArrayLike],
    mask: ArrayLike | None,
    *,
    batched: bool | None = None,
    min_size: int = 1,
) -> tuple[list[np.ndarray], np.ndarray, bool]:
    """Checked inputs (N, H, W[, 3]), a bool mask (N, H, W) and whether one image was given."""
    arrays, singles = zip(*(_images(x, k, batched) for k, x in named.items()))
    if len({a.shape[:3] for a in arrays}) > 1:
        listed = ", ".join(f"{k} {np.shape(x)}" for k, x in named.items())
        raise InputError(f"The images must have the same number and size; got {listed}.")
    n, h, w = arrays[0].shape[:3]
    if min(h, w) < min_size:
        raise InputError(
            f"Images of {h}x{w} pixels are too small: this needs at least {min_size}x{min_size}."
        )
    if mask is None:
        return list(arrays), np.ones((n, h, w), dtype=bool), singles[0]
    m = np.asarray(mask)
    if m.dtype.kind not in "bui":
        raise InputError(f"mask has dtype {m.dtype}; pass a boolean (or 0/1 integer) array.")
    expected = (h, w) if singles[0] else (n, h, w)
    if m.shape != expected:
        raise InputError(f"mask has shape {m.shape} but the images need {expected}.")
    return list(arrays), m.reshape(n, h, w).astype(bool), singles[0]


def _check_options(data_range: float = 255.0, peak: float | None = 255.0) -> None:
    if not data_range > 0:
        raise InputError(f"SSIM data range must be > 0 (255 for 8-bit images), got {data_range}.")
    if peak is not None and not peak > 0:
        raise InputError(f"PSNR peak must be > 0 (255 for 8-bit images) or None, got {peak}.")


# ---------------------------------------------------------------------------- chunked runner
def _chunks(n: int, h: int, w: int) -> Iterator[slice]:
    step = max(1, _CHUNK_PIXELS // (h * w))
    for start in range(0, n, step):
        yield slice(start, start + step)


def _run(
    core: Callable[..., Result],
    arrays: list[np.ndarray],
    mask: np.ndarray,
    keys: tuple[str, ...],
    round_luma: bool = False,
    workers: int | None = None,
) -> Result:
    """``core(*lumas, mask) -> {key: (n,)}`` over cache-sized chunks on threads, joined."""
    workers = DEFAULT_WORKERS if workers is None else int(workers)
    if workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}.")

    def one(s: slice) -> Result:
        lumas = (rgb_to_luma(a[s]) for a in arrays)
        return core(*((np.round(y) if round_luma else y) for y in lumas), mask[s])

    chunks = list(_chunks(*mask.shape))
    if workers == 1 or len(chunks) < 2:
        parts = [one(s) for s in chunks]
    else:
        with ThreadPoolExecutor(min(workers, len(chunks))) as pool:
            parts = list(pool.map(one, chunks))
    return {k: np.concatenate([p[k] for p in parts]) if parts else np.zeros(0) for k in keys}


def _single_metric(
    fn: Callable[..., np.ndarray],
    named: dict[str, ArrayLike],
    mask: ArrayLike | None,
    min_size: int = 1,
) -> float | np.ndarray:
    arrays, m, single = _prepare(named, mask, min_size=min_size)
    values = _run(lambda *y: {"v": fn(*y)}, arrays, m, ("v",))["v"]
    return float(values[0]) if single else values


# -------------------------------------------- batch cores: float64 (N, H, W) + bool mask -> (N,)
def _count(m: np.ndarray) -> np.ndarray:
    return m.sum(axis=(-2, -1))


def _masked_mean(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    return np.sum(x * m, axis=(-2, -1)) / np.maximum(_count(m), 1)


def _entropy(f: np.ndarray, m: np.ndarray) -> np.ndarray:
    n = len(f)
    levels = np.clip(np.round(f), 0, 255).astype(np.intp) + 256 * np.arange(n)[:, None, None]
    counts = np.bincount(levels[m], minlength=256 * n).reshape(n, 256)
    p = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    return 0.0 - np.sum(p * np.log2(np.where(p > 0, p, 1.0)), axis=1)  # 0 - 0 is +0.0, not -0.0


def _std(f: np.ndarray, m: np.ndarray) -> np.ndarray:
    centred = f - _masked_mean(f, m)[:, None, None]
    return np.sqrt(_masked_mean(centred * centred, m))


def _corr(x: np.ndarray, y: np.ndarray, m: np.ndarray) -> np.ndarray:
    xc, yc = x - _masked_mean(x, m)[:, None, None], y - _masked_mean(y, m)[:, None, None]
    vx, vy, cxy = _masked_mean(xc * xc, m), _masked_mean(yc * yc, m), _masked_mean(xc * yc, m)
    ok = (vx > CONSTANT_VARIANCE) & (vy > CONSTANT_VARIANCE)
    return np.clip(np.divide(cxy, np.sqrt(vx * vy), out=np.zeros_like(cxy), where=ok), -1.0, 1.0)


def _scd(a: np.ndarray, b: np.ndarray, f: np.ndarray, m: np.ndarray) -> np.ndarray:
    return _corr(f - b, a, m) + _corr(f - a, b, m)


def _psnr(
    a: np.ndarray, b: np.ndarray, f: np.ndarray, m: np.ndarray, peak: float | None
) -> np.ndarray:
    mse = (_masked_mean((a - f) ** 2, m) + _masked_mean((b - f) ** 2, m)) / 2.0
    top = (
        np.max(np.where(m, f, 0.0), axis=(-2, -1)) if peak is None else np.full(len(f), float(peak))
    )
    ratio = np.divide(top * top, mse, out=np.full_like(mse, np.inf), where=mse > 0)
    with np.errstate(divide="ignore"):  # a zero peak gives -inf, clipped below
        db = np.clip(10.0 * np.log10(ratio), -PSNR_CAP_DB, PSNR_CAP_DB)
    return np.where(_count(m) > 0, db, 0.0)


def _qabf(a: np.ndarray, b: np.ndarray, f: np.ndarray, m: np.ndarray) -> np.ndarray:
    num, den, fused_edges = qabf_sums(np.stack([a, b, f]), m)
    # No source edge inside the mask: 1 (nothing lost) if F has none either, else 0.
    value = np.divide(num, den, out=np.where(fused_edges, 0.0, 1.0), where=den > 0)
    return np.where(_count(m) > 0, value, 0.0)


def _vifp(refs: np.ndarray, f: np.ndarray, m: np.ndarray) -> np.ndarray:
    """VIFp of F against each of refs (R, N, H, W) -> (R, N)."""
    num, den, count, dist_active = vif_sums(refs, f, m)
    # A reference without local variance holds no information: 1 if F has none either, else 0.
    flat = np.broadcast_to(np.where(dist_active, 0.0, 1.0), num.shape).copy()
    return np.where(count > 0, np.divide(num, den, out=flat, where=den > 0), 0.0)


def _vif(a: np.ndarray, b: np.ndarray, f: np.ndarray, m: np.ndarray) -> np.ndarray:
    return _vifp(np.stack([a, b]), f, m).sum(axis=0)


def _ssim(
    refs: np.ndarray, f: np.ndarray, m: np.ndarray, data_range: float, sample_cov: bool
) -> np.ndarray:
    """Mean SSIM of F against each of refs (R, N, H, W) -> (R, N), over the window centres."""
    mc = crop_valid(m, SSIM_WIN)
    means = _masked_mean(ssim_maps(refs, f, data_range, sample_cov), mc)
    return np.where(_count(mc) > 0, means, 0.0)


def _ssim_one(x: np.ndarray, y: np.ndarray, m: np.ndarray, **options: float) -> np.ndarray:
    return _ssim(x[None], y, m, options["data_range"], bool(options["sample_cov"]))[0]


def _ssim_sum(
    a: np.ndarray, b: np.ndarray, f: np.ndarray, m: np.ndarray, **options: float
) -> np.ndarray:
    return _ssim(np.stack([a, b]), f, m, options["data_range"], bool(options["sample_cov"])).sum(
        axis=0
    )


def _all_metrics(
    a: np.ndarray,
    b: np.ndarray,
    f: np.ndarray,
    m: np.ndarray,
    *,
    data_range: float,
    sample_cov: bool,
    peak: float | None,
) -> Result:
    return {
        "EN": _entropy(f, m),
        "SD": _std(f, m),
        "SCD": _scd(a, b, f, m),
        "Qabf": _qabf(a, b, f, m),
        "VIF": _vif(a, b, f, m),
        "PSNR": _psnr(a, b, f, m, peak),
        "SSIM": _ssim_sum(a, b, f, m, data_range=data_range, sample_cov=sample_cov),
    }


# ------------------------------------------------------------------------------- public API
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
    _check_options(ssim_data_range, psnr_peak)
    arrays, m, _ = _prepare({"a": a, "b": b, "f": f}, mask, batched=True, min_size=VIF_MIN_SIZE)
    core = partial(
        _all_metrics, data_range=ssim_data_range, sample_cov=ssim_sample_covariance, peak=psnr_peak
    )
    return _run(core, arrays, m, METRIC_NAMES, round_luma, workers)


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
    arrays, m, _ = _prepare({"a": a, "b": b, "f": f}, mask, batched=False, min_size=VIF_MIN_SIZE)
    out = fusion_metrics_batch(
        *arrays,
        mask=m,
        ssim_data_range=ssim_data_range,
        ssim_sample_covariance=ssim_sample_covariance,
        psnr_peak=psnr_peak,
        round_luma=round_luma,
    )
    return {k: float(v[0]) for k, v in out.items()}


def entropy(f: ArrayLike, *, mask: ArrayLike | None = None) -> float | np.ndarray:
    """EN: Shannon entropy (bits) of the 256-bin histogram of F rounded half-to-even, clipped to 0..255.

    Like every function below: grey (H, W) -> float, or a batch (N, H, W) -> (N,).
    """
    return _single_metric(_entropy, {"f": f}, mask)


def standard_deviation(f: ArrayLike, *, mask: ArrayLike | None = None) -> float | np.ndarray:
    """SD: population standard deviation of F (not rounded) on 0..255."""
    return _single_metric(_std, {"f": f}, mask)


def scd(
    a: ArrayLike, b: ArrayLike, f: ArrayLike, *, mask: ArrayLike | None = None
) -> float | np.ndarray:
    """SCD: corr(F - B, A) + corr(F - A, B), Pearson over the pixels; a constant's correlation is 0."""
    return _single_metric(_scd, {"a": a, "b": b, "f": f}, mask)


def qabf(
    a: ArrayLike, b: ArrayLike, f: ArrayLike, *, mask: ArrayLike | None = None
) -> float | np.ndarray:
    """Q^AB/F (Xydeas & Petrovic), 3x3 Sobel with zero padding, in [0, 1]; no source edge -> 1 or 0."""
    return _single_metric(_qabf, {"a": a, "b": b, "f": f}, mask)


def vifp(ref: ArrayLike, dist: ArrayLike, *, mask: ArrayLike | None = None) -> float | np.ndarray:
    """Pixel-domain 4-scale VIF of ``dist`` against ``ref`` (Sheikh & Bovik), sigma_n^2 = 2; H, W >= 41."""
    return _single_metric(
        lambda r, d, m: _vifp(r[None], d, m)[0], {"ref": ref, "dist": dist}, mask, VIF_MIN_SIZE
    )


def vif(
    a: ArrayLike, b: ArrayLike, f: ArrayLike, *, mask: ArrayLike | None = None
) -> float | np.ndarray:
    """VIF: vifp(A, F) + vifp(B, F)."""
    return _single_metric(_vif, {"a": a, "b": b, "f": f}, mask, VIF_MIN_SIZE)


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
    _check_options(peak=peak)
    return _single_metric(partial(_psnr, peak=peak), {"a": a, "b": b, "f": f}, mask)


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
    _check_options(data_range=data_range)
    core = partial(_ssim_one, data_range=data_range, sample_cov=sample_covariance)
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
    _check_options(data_range=data_range)
    core = partial(_ssim_sum, data_range=data_range, sample_cov=sample_covariance)
    return _single_metric(core, {"a": a, "b": b, "f": f}, mask, SSIM_WIN)
