"""Metrics of the fixed fusions the loss pulls towards: a * max + (1 - a) * mean, beside the baselines.

Run: ``.venv/bin/python benchmarks/bench_loss_targets.py MRI-PET`` (about 1-2 min on 2 cores).
The table justifies the intensity weights of :class:`EDPSNLib.training.losses.LossConfig`.
"""

from __future__ import annotations

import functools
import sys

import numpy as np

from EDPSNLib.data.harvard import list_pairs, load_pairs
from EDPSNLib.fusion.baselines import BASELINES, fuse_luminance
from EDPSNLib.fusion.normalize import to_uint8
from EDPSNLib.metrics import METRIC_NAMES, fusion_metrics_batch


def blend_rule(alpha: float):  # noqa: ANN201
    """Grey rule alpha * max(a, b) + (1 - alpha) * (a + b) / 2."""
    return lambda a, b: alpha * np.maximum(a, b) + (1.0 - alpha) * 0.5 * (a + b)


def main(pair: str = "MRI-PET", split: str = "val") -> None:
    """Print one Markdown row per method with the mean of each metric."""
    mri, func = load_pairs(list_pairs(pair, split))
    methods = dict(BASELINES)
    for alpha in (0.5, 0.67, 0.8):
        methods[f"{alpha} max + {1 - alpha:.2g} mean"] = functools.partial(
            fuse_luminance, blend_rule(alpha)
        )
    print(f"{pair} {split} ({len(mri)} pairs)\n| method | " + " | ".join(METRIC_NAMES) + " |")
    print("|---|" + "---:|" * len(METRIC_NAMES))
    for name, fuse in methods.items():
        fused = np.stack([fuse(m / 255.0, f / 255.0) for m, f in zip(mri, func)])
        res = fusion_metrics_batch(mri, func, to_uint8(fused))
        print(f"| {name} | " + " | ".join(f"{np.mean(res[k]):.4f}" for k in METRIC_NAMES) + " |")


if __name__ == "__main__":
    main(*sys.argv[1:])
