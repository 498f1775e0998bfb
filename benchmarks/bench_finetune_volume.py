"""Adapting EDPSN to a scanner from one real volume pair: the porcine phantom's MR-T2 and CT.

The whole user path on real data: ``prepare_volume_pair`` (rigid registration with the
orientation search the pair needs, a held-out block of slices in the middle), the default
MRI-CT weights and the classical baselines scored on that block, a fine-tuning run from the
default weights, and the fine-tuned weights scored on the same block.

Run: .venv/bin/python benchmarks/bench_finetune_volume.py --epochs 12 [--lr 5e-4] --out runs/finetune_phantom
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from EDPSNLib.fusion.baselines import BASELINES
from EDPSNLib.fusion.evaluation import evaluate_method, summary_markdown
from EDPSNLib.fusion.pipeline import FusionOptions
from EDPSNLib.metrics import METRIC_NAMES
from EDPSNLib.models.lookup import default_weights_path
from EDPSNLib.paths import data_root
from EDPSNLib.training.dataset_writer import dataset_summary
from EDPSNLib.training.trainer import TrainConfig, train
from EDPSNLib.training.volume_dataset import prepare_volume_pair

PAIR = "MRI-CT"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/finetune_phantom")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    folder = data_root() / "volumes" / "mridir_porcine_phantom"
    t0 = time.perf_counter()
    prepared = prepare_volume_pair(
        folder / "MR-T2_MRI-DIR-zzmeatphantom_bin2x2x1.nii.gz",
        folder / "CT_MRI-DIR-zzmeatphantom_bin2x2x2.nii.gz",
        FusionOptions("CT", register="rigid", orientation="search", ct_window="soft-tissue"),
        out / "dataset",
        case="phantom",
        test_fraction=0.2,
    )
    t_prep = time.perf_counter() - t0
    counts = dataset_summary(out / "dataset")[PAIR]
    root = out / "dataset"
    evals = [evaluate_method(PAIR, "test", m, root=root) for m in BASELINES]
    before = evaluate_method(PAIR, "test", "edpsn", root=root)
    before.method = "edpsn, default weights"
    t0 = time.perf_counter()
    result = train(
        TrainConfig(
            out=out / "run",
            pair=PAIR,
            data=root,
            epochs=args.epochs,
            lr=args.lr,
            batch_size=args.batch_size,
            crop=128,
            init=default_weights_path(PAIR),
            seed=0,
        )
    )
    t_train = time.perf_counter() - t0
    after = evaluate_method(PAIR, "test", "edpsn", root=root, weights=result.weights)
    after.method = "edpsn, fine-tuned on the phantom"
    print(
        f"Prepared {counts['train']} train and {counts['test']} test slices "
        f"({prepared.size[0]}x{prepared.size[1]}) in {t_prep:.0f} s; fine-tuned "
        f"{args.epochs} epochs in {t_train:.0f} s (best epoch {result.best['epoch']}).\n"
    )
    print(summary_markdown([*evals, before, after]))
    gain = {k: after.mean()[k] - before.mean()[k] for k in METRIC_NAMES}
    print("Fine-tuned minus default: " + ", ".join(f"{k} {v:+.4f}" for k, v in gain.items()))


if __name__ == "__main__":
    main()
