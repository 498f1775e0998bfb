"""``edpsn evaluate``: fuse a Harvard split with methods and write images, CSVs and a summary."""

from __future__ import annotations

import argparse

from tqdm import tqdm

from EDPSNLib.data.harvard import PAIR_NAMES, SPLIT_HELP, list_pairs
from EDPSNLib.fusion.methods import method_names


def _split_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edpsn evaluate``."""
    parser.add_argument(
        "--data", help="Harvard-layout folder, or a folder holding harvard/ (default: shared data)"
    )
    parser.add_argument(
        "--pair", default="MRI-PET", help=f"comma list of {', '.join(PAIR_NAMES)}, or 'all'"
    )
    parser.add_argument("--split", default="test", help=SPLIT_HELP)
    parser.add_argument(
        "--method", default="pca", help="comma list of methods, or 'all' (baselines and edpsn)"
    )
    parser.add_argument("--weights", help="EDPSN weights file or name (default: shipped weights)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (edpsn only)")
    parser.add_argument("--out", default="runs/evaluate", help="output folder")
    parser.add_argument("--no-images", action="store_true", help="do not write fused PNGs")


def run(args: argparse.Namespace) -> int:
    """Evaluate each (pair, method), print the summary and write the outputs."""
    from EDPSNLib.errors import InputError
    from EDPSNLib.fusion.evaluation import evaluate_method, summary_markdown, write_evaluations
    from EDPSNLib.fusion.methods import NETWORK
    from EDPSNLib.models.lookup import resolve_weights

    pairs = list(PAIR_NAMES) if args.pair == "all" else _split_list(args.pair)
    methods = method_names() if args.method == "all" else _split_list(args.method)
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    for pair in pairs:  # fail fast on bad names, missing weights or data before any work
        list_pairs(pair, args.split, args.data)
        for method in methods:
            if method == NETWORK:
                resolve_weights(args.weights, pair)
            elif method not in method_names():
                raise InputError(
                    f"Unknown method '{method}'; choose from {', '.join(method_names())}."
                )
    total = sum(len(list_pairs(p, args.split, args.data)) for p in pairs) * len(methods)
    evals = []
    with tqdm(total=total, desc="evaluate", unit="pair") as bar:
        for pair in pairs:
            for method in methods:
                bar.set_postfix_str(f"{pair} {method}")
                evals.append(
                    evaluate_method(
                        pair,
                        args.split,
                        method,
                        weights=args.weights,
                        root=args.data,
                        device=device,
                        progress=bar.update,
                    )
                )
    out = write_evaluations(evals, args.out, save_images=not args.no_images)
    print(summary_markdown(evals))
    print(f"Wrote {out}/summary.md, summary.csv and per-method folders.")
    return 0
