"""Ablation on MRI-PET like the paper's: the full model against variants without EEM, ED, DPS
and combinations, each trained from scratch with the same schedule and scored on the test split.

Run: .venv/bin/python benchmarks/run_ablation.py --epochs 6 --out runs/ablation
(prints a Markdown table; about 4 minutes per variant on an idle 2-core CPU)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from EDPSNLib.fusion.evaluation import evaluate_method
from EDPSNLib.metrics import METRIC_NAMES
from EDPSNLib.training.losses import LossConfig
from EDPSNLib.training.trainer import TrainConfig, train

VARIANTS: dict[str, dict[str, bool]] = {
    "full": {},
    "w/o EEM": {"use_eem": False},
    "w/o ED": {"use_ed": False},
    "w/o DPS": {"use_dps": False},
    "w/o ED, DPS": {"use_ed": False, "use_dps": False},
    "w/o EEM, ED, DPS": {"use_eem": False, "use_ed": False, "use_dps": False},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", default="MRI-PET")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--out", default="runs/ablation")
    ap.add_argument("--variants", default=";".join(VARIANTS), help="names separated by ;")
    args = ap.parse_args()
    rows = []
    for name in args.variants.split(";"):
        folder = Path(args.out) / name.replace("/", "").replace(",", "").replace(" ", "_")
        t0 = time.perf_counter()
        cfg = TrainConfig(
            out=folder,
            pair=args.pair,
            epochs=args.epochs,
            batch_size=8,
            lr=args.lr,
            crop=128,
            device="cpu",
            model=VARIANTS[name] or None,
            progress_bar=False,
            loss=LossConfig(w_mean_intensity=0.1, w_gradient=2.0),
        )
        result = train(cfg)
        ev = evaluate_method(args.pair, "test", "edpsn", weights=result.weights)
        rows.append((name, ev.mean(), time.perf_counter() - t0))
        print(f"{name}: {ev.mean()} ({rows[-1][2]:.0f} s)", flush=True)
    print("| variant | " + " | ".join(METRIC_NAMES) + " | train + test s |")
    print("|---|" + "---:|" * (len(METRIC_NAMES) + 1))
    for name, m, secs in rows:
        print(f"| {name} | " + " | ".join(f"{m[k]:.4f}" for k in METRIC_NAMES) + f" | {secs:.0f} |")


if __name__ == "__main__":
    main()
