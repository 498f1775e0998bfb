"""The fixed fusions the intensity loss pulls towards, scored like the protocol scores a network.

Targets: ``a * max + (1 - a) * mean`` (the mean pull of ``--w-mean-intensity``) and
``max + k * highpass(min)`` (``--detail-gain k``, :func:`EDPSNLib.training.losses.detail_target`,
the very function the loss uses). For each contrast shift, each target's wins of 7 against the
five baselines, its margins against the pixel maximum and its uptake loss. A target that cannot
beat the baselines cannot teach a network to; one that can is worth training. Run on validation
cases only (the default), never on test:

    .venv/bin/python benchmarks/bench_loss_targets.py MRI-PET --stride 2
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch

from EDPSNLib.data.harvard import PAIR_NAMES, list_pairs, load_pairs
from EDPSNLib.data.shifts import SHIFTS
from EDPSNLib.fusion.baselines import BASELINES, fuse_luminance
from EDPSNLib.fusion.normalize import to_uint8
from EDPSNLib.metrics import METRIC_NAMES, fusion_metrics_batch
from EDPSNLib.metrics.uptake import uptake_figures
from EDPSNLib.training.losses import detail_target

GreyRule = Callable[[np.ndarray, np.ndarray], np.ndarray]


def blend_rule(alpha: float) -> GreyRule:
    """Grey rule alpha * max(a, b) + (1 - alpha) * (a + b) / 2."""
    return lambda a, b: alpha * np.maximum(a, b) + (1.0 - alpha) * 0.5 * (a + b)


def detail_rule(gain: float, sigma: float = 2.0, same_sign: bool = False) -> GreyRule:
    """Grey rule of the loss's detail target, on (H, W) arrays."""

    def rule(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        t = [torch.from_numpy(np.asarray(x, dtype=np.float64))[None, None] for x in (a, b)]
        return detail_target(t[0], t[1], gain, sigma, same_sign)[0, 0].numpy()

    return rule


def targets() -> dict[str, GreyRule]:
    """The candidate targets, by name."""
    return {
        "0.8 max + 0.2 mean": blend_rule(0.8),
        "max + 0.3 detail": detail_rule(0.3),
        "max + 0.6 detail": detail_rule(0.6),
        "max + 0.6 same-sign detail": detail_rule(0.6, same_sign=True),
    }


def score(rule: GreyRule, mri: np.ndarray, func: np.ndarray) -> dict[str, float]:
    """Mean of the seven metrics and the uptake loss of one grey rule over uint8 pairs."""
    fused = to_uint8(
        np.stack([fuse_luminance(rule, m / 255.0, f / 255.0) for m, f in zip(mri, func)])
    )
    res = fusion_metrics_batch(mri, func, fused)
    res["uptake_loss"] = uptake_figures(mri, func, fused)["uptake_loss"]
    return {k: float(np.nanmean(v)) for k, v in res.items()}


def main() -> None:
    """Print one Markdown table per target: a row per shift."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pair", choices=PAIR_NAMES)
    ap.add_argument("--split", default="case-fold-0/val", help="never a test split")
    ap.add_argument("--stride", type=int, default=1, help="every Nth slice")
    ap.add_argument("--shifts", default=",".join(SHIFTS))
    args = ap.parse_args()
    mri0, func0 = load_pairs(list_pairs(args.pair, args.split)[:: args.stride])
    rows: dict[str, list[str]] = {name: [] for name in targets()}
    for shift in args.shifts.split(","):
        a, b = SHIFTS[shift](mri0 / 255.0, func0 / 255.0)
        mri, func = to_uint8(a), to_uint8(b)
        base = {name: score(rule, mri, func) for name, rule in BASELINES.items()}
        for name, rule in targets().items():
            res = score(rule, mri, func)
            wins = [sum(res[k] > base[m][k] for k in METRIC_NAMES) for m in BASELINES]
            margins = " ".join(f"{k} {res[k] - base['max'][k]:+.3f}" for k in METRIC_NAMES)
            rows[name].append(
                f"| {shift} | {' / '.join(map(str, wins))} | {margins} | {res['uptake_loss']:.2f} |"
            )
    print(f"{args.pair} `{args.split}`, every {args.stride}. slice ({len(mri0)} pairs)")
    for name, lines in rows.items():
        print(
            f"\n{name}\n\n| shift | wins of 7 vs {' / '.join(BASELINES)} | minus max | uptake loss |"
        )
        print("|---|---|---|---:|")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
