"""Results of the shipped EDPSN weights against every classical baseline on the Harvard test
split: one table per pair plus, per baseline, on how many of the seven metrics EDPSN is better.

Run: .venv/bin/python benchmarks/make_results.py --out runs/results > /tmp/results.md
(all seven metrics are "higher is better"; fused images and CSVs land in --out)
"""

from __future__ import annotations

import argparse

from EDPSNLib.data.harvard import PAIR_NAMES
from EDPSNLib.fusion.baselines import BASELINES
from EDPSNLib.fusion.evaluation import evaluate_method, summary_markdown, write_evaluations
from EDPSNLib.metrics import METRIC_NAMES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/results")
    ap.add_argument("--split", default="test")
    args = ap.parse_args()
    evals = [
        evaluate_method(pair, args.split, method)
        for pair in PAIR_NAMES
        for method in (*BASELINES, "edpsn")
    ]
    write_evaluations(evals, args.out, save_images=True)
    print(summary_markdown(evals))
    print("### EDPSN against each baseline: metrics on which EDPSN is better (of 7)\n")
    print("| pair | " + " | ".join(BASELINES) + " | bar met (>= 5 against every baseline) |")
    print("|---|" + "---:|" * len(BASELINES) + "---|")
    for pair in PAIR_NAMES:
        by = {ev.method: ev.mean() for ev in evals if ev.pair == pair}
        wins = {b: [k for k in METRIC_NAMES if by["edpsn"][k] > by[b][k]] for b in BASELINES}
        cells = " | ".join(
            f"{len(w)} (loses {', '.join(k for k in METRIC_NAMES if k not in w) or '-'})"
            for w in wins.values()
        )
        met = all(len(w) >= 5 for w in wins.values())
        print(f"| {pair} | {cells} | {'yes' if met else 'no'} |")


if __name__ == "__main__":
    main()
