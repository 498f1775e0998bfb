"""Benchmark the seven fusion metrics against a straightforward per-image scipy/skimage version.

Runs on the Harvard test pairs of all three sets (24 names each, fused = the average of the
MRI and the functional luma), times EDPSNLib.metrics batched (one call per set) and unbatched
(one call per pair) against the per-image reference below, checks that the values agree and
prints Markdown tables; every timing is the best of ``--repeat`` runs, the reference's too:

    .venv/bin/python benchmarks/bench_metrics.py [--repeat 3] [--out /tmp/bench_metrics.md]
    .venv/bin/python benchmarks/bench_metrics.py --per-metric   # each metric alone, 8 pairs

The reference follows the definitions in docs/metrics.md literally, one image at a time
(scipy.signal.convolve2d with 2-D windows, skimage SSIM/PSNR, scipy.stats.entropy). The tests
(Testing/test_metrics.py) import it from here as the independent implementation.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy.signal import convolve2d
from scipy.stats import entropy as scipy_entropy
from skimage.metrics import mean_squared_error, structural_similarity

from EDPSNLib.color import rgb_to_luma
from EDPSNLib.data.harvard import PAIR_NAMES, list_pairs, load_pairs
from EDPSNLib.metrics import (
    METRIC_NAMES,
    fusion_metrics,
    fusion_metrics_batch,
    fusion_metrics_regions,
)

# ----------------------------------------------------------------------- per-image reference


def _in(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    return np.ones(shape, dtype=bool) if mask is None else mask


def ref_en(f: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Entropy of the 256-bin histogram of round(F), with scipy.stats.entropy."""
    levels = np.clip(np.round(f), 0, 255).astype(np.int64)[_in(mask, f.shape)]
    return float(scipy_entropy(np.bincount(levels, minlength=256), base=2)) if levels.size else 0.0


def ref_sd(f: np.ndarray, mask: np.ndarray | None = None) -> float:
    return float(np.std(f[_in(mask, f.shape)]))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if np.var(x) <= 1e-20 or np.var(y) <= 1e-20:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def ref_scd(a: np.ndarray, b: np.ndarray, f: np.ndarray, mask: np.ndarray | None = None) -> float:
    m = _in(mask, f.shape)
    return _pearson((f - b)[m], a[m]) + _pearson((f - a)[m], b[m])


def _sobel(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    kx = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    sx = convolve2d(img, kx, mode="same")  # zero padding; the kernel flip only flips signs
    sy = convolve2d(img, kx.T, mode="same")
    angle = np.full(img.shape, math.pi / 2)
    nz = np.abs(sx) > 1e-8  # |s_x| <= 1e-8 is round-off: angle pi/2 (docs/metrics.md)
    angle[nz] = np.arctan(sy[nz] / sx[nz])
    return np.sqrt(sx**2 + sy**2), angle


def _edge_q(g_s: np.ndarray, a_s: np.ndarray, g_f: np.ndarray, a_f: np.ndarray) -> np.ndarray:
    ratio = np.ones_like(g_s)
    lt, gt = g_s < g_f, g_s > g_f
    ratio[lt] = g_s[lt] / g_f[lt]
    ratio[gt] = g_f[gt] / g_s[gt]
    agree = 1 - np.abs(a_s - a_f) / (math.pi / 2)
    return 0.9994 / (1 + np.exp(-15 * (ratio - 0.5))) * 0.9879 / (1 + np.exp(-22 * (agree - 0.8)))


def ref_qabf(a: np.ndarray, b: np.ndarray, f: np.ndarray, mask: np.ndarray | None = None) -> float:
    m = _in(mask, f.shape)
    (ga, aa), (gb, ab), (gf, af) = _sobel(a), _sobel(b), _sobel(f)
    num = np.sum((_edge_q(ga, aa, gf, af) * ga + _edge_q(gb, ab, gf, af) * gb)[m])
    return float(num / np.sum((ga + gb)[m]))


def _fspecial_gaussian(n: int, sigma: float) -> np.ndarray:
    r = (n - 1) / 2
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    h = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    h[h < np.finfo(float).eps * h.max()] = 0
    return h / h.sum()


def ref_vifp(ref: np.ndarray, dist: np.ndarray, mask: np.ndarray | None = None) -> float:
    """vifp_mscale of Sheikh & Bovik, one image, with the mask cropped like the 'valid' outputs."""
    m, eps, sn2, num, den = _in(mask, ref.shape), 1e-10, 2.0, 0.0, 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        win, r = _fspecial_gaussian(n, n / 5), n // 2
        if scale > 1:
            ref = convolve2d(ref, win, mode="valid")[::2, ::2]
            dist = convolve2d(dist, win, mode="valid")[::2, ::2]
            m = m[r:-r, r:-r][::2, ::2]
        mu1, mu2 = convolve2d(ref, win, mode="valid"), convolve2d(dist, win, mode="valid")
        s1 = convolve2d(ref * ref, win, mode="valid") - mu1 * mu1
        s2 = convolve2d(dist * dist, win, mode="valid") - mu2 * mu2
        s12 = convolve2d(ref * dist, win, mode="valid") - mu1 * mu2
        s1[s1 < 0] = 0
        s2[s2 < 0] = 0
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        g[s1 < eps] = 0
        sv[s1 < eps] = s2[s1 < eps]
        s1[s1 < eps] = 0
        g[s2 < eps] = 0
        sv[s2 < eps] = 0
        sv[g < 0] = s2[g < 0]
        g[g < 0] = 0
        sv[sv <= eps] = eps
        mc = m[r:-r, r:-r]
        num += np.sum(np.log10(1 + g * g * s1 / (sv + sn2))[mc])
        den += np.sum(np.log10(1 + s1 / sn2)[mc])
    return float(num / den)


def ref_psnr(a: np.ndarray, b: np.ndarray, f: np.ndarray, mask: np.ndarray | None = None) -> float:
    if mask is None:
        mse = (mean_squared_error(a, f) + mean_squared_error(b, f)) / 2
    else:
        mse = (np.mean((a - f)[mask] ** 2) + np.mean((b - f)[mask] ** 2)) / 2
    return float(10 * np.log10(255.0**2 / mse))


def ref_ssim_index(
    x: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None, data_range: float = 255.0
) -> float:
    """skimage SSIM (uniform 7x7, sample covariance); with a mask, the masked mean of its map."""
    if mask is None:
        return float(structural_similarity(x, y, win_size=7, data_range=data_range))
    _, smap = structural_similarity(x, y, win_size=7, data_range=data_range, full=True)
    return float(np.mean(smap[3:-3, 3:-3][mask[3:-3, 3:-3]]))


def reference_metrics(
    a: np.ndarray, b: np.ndarray, f: np.ndarray, mask: np.ndarray | None = None
) -> dict[str, float]:
    """The seven metrics of one grey/luma float64 triple (H, W), straightforwardly."""
    return {
        "EN": ref_en(f, mask),
        "SD": ref_sd(f, mask),
        "SCD": ref_scd(a, b, f, mask),
        "Qabf": ref_qabf(a, b, f, mask),
        "VIF": ref_vifp(a, f, mask) + ref_vifp(b, f, mask),
        "PSNR": ref_psnr(a, b, f, mask),
        "SSIM": ref_ssim_index(a, f, mask) + ref_ssim_index(b, f, mask),
    }


# ------------------------------------------------------------------------------- benchmark


def harvard_test_triples(pair: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(MRI, functional luma, average) float64 (24, H, W) of a set's test split."""
    mri, func = load_pairs(list_pairs(pair, "test"))
    a, b = mri.astype(np.float64), rgb_to_luma(func)
    return a, b, (a + b) / 2


def _timed(fn, repeat: int) -> tuple[float, float, object]:  # noqa: ANN001
    """Best wall-clock and CPU seconds over ``repeat`` runs (the machine is shared), and the result."""
    wall, cpu, out = math.inf, math.inf, None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = min(wall, time.perf_counter() - w0), min(cpu, time.process_time() - c0)
    return wall, cpu, out


METHODS = ("reference", "unbatched", "batched, 1 thread", "batched, 2 threads")


def run(repeat: int = 3) -> str:
    """Time the four ways on the three test sets (best of ``repeat``); return Markdown tables."""
    wall = {m: {} for m in METHODS}
    cpu = {m: {} for m in METHODS}
    diffs = dict.fromkeys(METRIC_NAMES, 0.0)
    counts = {}
    for pair in PAIR_NAMES:
        a, b, f = harvard_test_triples(pair)
        n = counts[pair] = len(a)
        calls = {
            "reference": lambda: [reference_metrics(a[i], b[i], f[i]) for i in range(n)],  # noqa: B023
            "unbatched": lambda: [fusion_metrics(a[i], b[i], f[i]) for i in range(n)],  # noqa: B023
            "batched, 1 thread": lambda: fusion_metrics_batch(a, b, f, workers=1),  # noqa: B023
            "batched, 2 threads": lambda: fusion_metrics_batch(a, b, f, workers=2),  # noqa: B023
        }
        results = {}
        for method, call in calls.items():
            wall[method][pair], cpu[method][pair], results[method] = _timed(call, repeat)
        ref = {k: np.array([d[k] for d in results["reference"]]) for k in METRIC_NAMES}
        for k in METRIC_NAMES:
            others = [np.array([d[k] for d in results["unbatched"]])]
            others += [results[m][k] for m in METHODS[2:]]
            diffs[k] = max(diffs[k], *(float(np.max(np.abs(o - ref[k]))) for o in others))
        print(f"{pair}: done", file=sys.stderr)
    total = sum(counts.values())
    for table in (wall, cpu):
        for method in METHODS:
            table[method]["all"] = sum(table[method].values())
    counts["all"] = total

    def ms(table: dict, method: str, pair: str) -> float:
        return table[method][pair] / counts[pair] * 1e3

    head = " | ".join(METHODS)
    ups = ("unbatched", "batched, 1 thread", "batched, 2 threads")
    lines = [
        f"Wall-clock ms per pair (best of {repeat}, every column), speed-up against the reference:",
        "",
        f"| set | pairs | {head} | " + " | ".join(f"speed-up {m}" for m in ups) + " |",
        "|---|---:|" + "---:|" * (len(METHODS) + len(ups)),
    ]
    for pair in (*PAIR_NAMES, "all"):
        cells = " | ".join(f"{ms(wall, m, pair):.1f}" for m in METHODS)
        speed = " | ".join(f"{wall['reference'][pair] / wall[m][pair]:.1f}x" for m in ups)
        lines.append(f"| {pair} | {counts[pair]} | {cells} | {speed} |")
    lines += [
        "",
        "CPU ms per pair (all threads, best of each set's runs), all 72 pairs, and speed-up:",
        "",
        f"| {head} |",
        "|" + "---:|" * len(METHODS),
    ]
    lines.append("| " + " | ".join(f"{ms(cpu, m, 'all'):.1f}" for m in METHODS) + " |")
    lines.append(
        "| 1.0x | "
        + " | ".join(f"{cpu['reference']['all'] / cpu[m]['all']:.1f}x" for m in METHODS[1:])
        + " |"
    )
    lines += ["", "| metric | max abs difference to the reference |", "|---|---:|"]
    lines += [f"| {k} | {v:.2e} |" for k, v in diffs.items()]
    return "\n".join(lines) + "\n"


CONVENTIONS = {
    "default (luma not rounded, SSIM L = 255 with sample covariance, PSNR peak 255)": {},
    "SSIM with population covariance (Wang et al.'s formula)": {"ssim_sample_covariance": False},
    "CDDFuse evaluator (rounded luma, SSIM L = 2, PSNR peak = max F)": {
        "round_luma": True,
        "ssim_data_range": 2.0,
        "psnr_peak": None,
    },
}


def conventions_table() -> str:
    """Mean SSIM and PSNR over the 72 test pairs under each convention of docs/metrics.md."""
    lines = ["| convention | set | SSIM | PSNR |", "|---|---|---:|---:|"]
    for pair in PAIR_NAMES:
        a, b, f = harvard_test_triples(pair)
        for name, options in CONVENTIONS.items():
            out = fusion_metrics_batch(a, b, f, **options)
            lines.append(
                f"| {name} | {pair} | {out['SSIM'].mean():.4f} | {out['PSNR'].mean():.3f} |"
            )
    return "\n".join(lines) + "\n"


def per_metric_table(pair: str = "MRI-PET", n: int = 8, repeat: int = 3) -> str:
    """CPU ms per pair of each metric alone, and of all seven: reference per image vs one
    batched call on one thread (best of ``repeat`` for both)."""
    import EDPSNLib.metrics as em

    a, b, f = (x[:n] for x in harvard_test_triples(pair))
    ours = {
        "EN": lambda: em.entropy(f),
        "SD": lambda: em.standard_deviation(f),
        "SCD": lambda: em.scd(a, b, f),
        "Qabf": lambda: em.qabf(a, b, f),
        "VIF": lambda: em.vif(a, b, f),
        "PSNR": lambda: em.psnr(a, b, f),
        "SSIM": lambda: em.ssim(a, b, f),
        "all seven": lambda: em.fusion_metrics_batch(a, b, f, workers=1),
    }
    refs = {
        "EN": lambda i: ref_en(f[i]),
        "SD": lambda i: ref_sd(f[i]),
        "SCD": lambda i: ref_scd(a[i], b[i], f[i]),
        "Qabf": lambda i: ref_qabf(a[i], b[i], f[i]),
        "VIF": lambda i: ref_vifp(a[i], f[i]) + ref_vifp(b[i], f[i]),
        "PSNR": lambda i: ref_psnr(a[i], b[i], f[i]),
        "SSIM": lambda i: ref_ssim_index(a[i], f[i]) + ref_ssim_index(b[i], f[i]),
        "all seven": lambda i: reference_metrics(a[i], b[i], f[i]),
    }
    lines = [
        "| metric | reference CPU ms/pair | EDPSNLib CPU ms/pair | speed-up |",
        "|---|---:|---:|---:|",
    ]
    workers, em.DEFAULT_WORKERS = em.DEFAULT_WORKERS, 1  # one thread: CPU time = work
    try:
        for k in ours:
            _, t_ref, _ = _timed(lambda: [refs[k](i) for i in range(n)], repeat)  # noqa: B023
            _, t_our, _ = _timed(ours[k], repeat)
            lines.append(
                f"| {k} | {t_ref / n * 1e3:.2f} | {t_our / n * 1e3:.2f} | {t_ref / t_our:.1f}x |"
            )
    finally:
        em.DEFAULT_WORKERS = workers
    head = f"Per metric, first {n} test pairs of {pair}, best of {repeat}:"
    return head + "\n\n" + "\n".join(lines) + "\n"


def regions_table(pair: str = "MRI-PET", repeat: int = 3) -> str:
    """Whole image + the three entropy regions: one fusion_metrics_regions call against four
    fusion_metrics_batch calls (one thread, wall-clock ms per pair, best of ``repeat``)."""
    import torch

    from EDPSNLib.network.entropy import region_map

    mri, func = load_pairs(list_pairs(pair, "test"))
    fused = (mri[..., None] + func.astype(np.float64)) / 2 if func.ndim == 4 else (mri + func) / 2
    to01 = lambda x: torch.from_numpy(x / 255.0)[:, None]  # noqa: E731
    labels = region_map(to01(mri.astype(np.float64)), to01(rgb_to_luma(func)))[:, 0].numpy()
    masks = labels[None] == np.arange(3)[:, None, None, None]
    n = len(mri)
    t_one, _, _ = _timed(lambda: fusion_metrics_regions(mri, func, fused, masks, workers=1), repeat)
    t_four, _, _ = _timed(
        lambda: [fusion_metrics_batch(mri, func, fused, mask=m, workers=1) for m in (None, *masks)],
        repeat,
    )
    return (
        f"Whole image + 3 entropy regions, {n} test pairs of {pair}, one thread, best of {repeat}:\n\n"
        "| fusion_metrics_regions (1 call) | fusion_metrics_batch (4 calls) | ratio |\n"
        "|---:|---:|---:|\n"
        f"| {t_one / n * 1e3:.1f} ms/pair | {t_four / n * 1e3:.1f} ms/pair | {t_four / t_one:.1f}x |\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the Markdown table to this file")
    parser.add_argument(
        "--per-metric", action="store_true", help="only time each metric alone (8 pairs)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="best of this many runs, for every timing"
    )
    args = parser.parse_args(argv)
    if args.per_metric:
        print(per_metric_table(repeat=args.repeat))
        return 0
    table = (
        run(args.repeat)
        + "\n"
        + regions_table(repeat=args.repeat)
        + "\nFused = average; mean over the 24 test pairs of each set:\n\n"
        + conventions_table()
    )
    print(table)
    if args.out is not None:
        from EDPSNLib.atomic import write_text_atomic

        write_text_atomic(args.out, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
