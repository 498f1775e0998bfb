"""Benchmark the seven fusion metrics against a straightforward per-image scipy/skimage version.

Runs on the Harvard test pairs of all three sets (24 names each, fused = the average of the
MRI and the functional luma), times EDPSNLib.metrics batched (one call per set) and unbatched
(one call per pair) against a per-image reference, checks that the values agree and
prints Markdown tables; every timing is the best of ``--repeat`` runs, the reference's too:

    .venv/bin/python benchmarks/bench_metrics.py [--repeat 3] [--out /tmp/bench_metrics.md]
    .venv/bin/python benchmarks/bench_metrics.py --per-metric   # each metric alone, 8 pairs

The reference (Testing/metrics_reference.py, which the tests compare against) follows the
definitions in docs/metrics.md literally, one image at a time (scipy.signal 2-D windows,
skimage SSIM/PSNR, scipy.stats.entropy).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from EDPSNLib.color import rgb_to_luma
from EDPSNLib.data.harvard import PAIR_NAMES, list_pairs, load_pairs
from EDPSNLib.metrics import (
    CDDFUSE_EVALUATOR,
    METRIC_NAMES,
    MetricOptions,
    fusion_metrics,
    fusion_metrics_batch,
    fusion_metrics_regions,
)

# The per-image reference lives with the tests, which compare EDPSNLib.metrics against it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))
from metrics_reference import (  # noqa: E402
    ref_en,
    ref_psnr,
    ref_qabf,
    ref_scd,
    ref_sd,
    ref_ssim_index,
    ref_vifp,
    reference_metrics,
)

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
    "default (luma not rounded, SSIM L = 255 with sample covariance, PSNR peak 255)": (
        MetricOptions()
    ),
    "SSIM with population covariance (Wang et al.'s formula)": MetricOptions(
        ssim_sample_covariance=False
    ),
    "CDDFUSE_EVALUATOR (rounded luma, SSIM L = 255, PSNR peak = max F, its Q^AB/F)": (
        CDDFUSE_EVALUATOR
    ),
    "CDDFuse evaluator with old scikit-image (as above, SSIM L = 2)": replace(
        CDDFUSE_EVALUATOR, ssim_data_range=2.0
    ),
}


def conventions_table() -> str:
    """Mean SSIM, PSNR and Q^AB/F over the 72 test pairs under each convention of
    docs/metrics.md."""
    lines = ["| convention | set | SSIM | PSNR | Qabf |", "|---|---|---:|---:|---:|"]
    for pair in PAIR_NAMES:
        a, b, f = harvard_test_triples(pair)
        for name, options in CONVENTIONS.items():
            out = fusion_metrics_batch(a, b, f, options=options)
            lines.append(
                f"| {name} | {pair} | {out['SSIM'].mean():.4f} | {out['PSNR'].mean():.3f} "
                f"| {out['Qabf'].mean():.4f} |"
            )
    return "\n".join(lines) + "\n"


def per_metric_table(pair: str = "MRI-PET", n: int = 8, repeat: int = 3) -> str:
    """CPU ms per pair of each metric alone, and of all seven: reference per image vs one
    batched call on one thread (best of ``repeat`` for both)."""
    import EDPSNLib.metrics as em
    import EDPSNLib.metrics.runner as runner

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
    # One thread (the single-metric calls use the runner's default): CPU time = work.
    workers, runner.DEFAULT_WORKERS = runner.DEFAULT_WORKERS, 1
    try:
        for k in ours:
            _, t_ref, _ = _timed(lambda: [refs[k](i) for i in range(n)], repeat)  # noqa: B023
            _, t_our, _ = _timed(ours[k], repeat)
            lines.append(
                f"| {k} | {t_ref / n * 1e3:.2f} | {t_our / n * 1e3:.2f} | {t_ref / t_our:.1f}x |"
            )
    finally:
        runner.DEFAULT_WORKERS = workers
    head = f"Per metric, first {n} test pairs of {pair}, one thread, CPU time, best of {repeat}:"
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
        + per_metric_table(repeat=args.repeat)
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
