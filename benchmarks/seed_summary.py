"""One figure over several seeds: the protocol's per-shift wins on the seed mean, with the spread.

Each ``--csv`` is the per-image record file of one ``eval_protocol.py`` run (``--csv``) of the
same images and shifts; each network row in it (``--network``) is one seed's weights. The
network's figures are the mean over seeds of the fold means; the baselines are the same in
every file (deterministic methods on the same images) and are taken from the first. The table
gives the wins of the seed mean against each baseline, how many seeds meet the bar on their
own, and the range (min-max) over seeds of the uptake loss, so the count is read with its
noise.

Run (docs/protocol.md, section ``mean25-3seeds-MRI-PET``):
    .venv/bin/python benchmarks/seed_summary.py --section mean25-3seeds-MRI-PET \
        --csv runs/protocol/mean25-MRI-PET.csv --csv runs/protocol/mean25-seed1-MRI-PET.csv \
        --csv runs/protocol/mean25-seed2-MRI-PET.csv
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
from pathlib import Path

import numpy as np
from eval_protocol import (
    BASELINE_METHODS,
    ROOT,
    UPTAKE_NAMES,
    bar_met,
    fold_means,
    wins,
    write_section,
)

from EDPSNLib.metrics import METRIC_NAMES

NETWORK = "network"


def read_seeds(path: Path) -> list[list[dict]]:
    """A protocol CSV as one record list per network row (a seed each), renamed ``network``.

    The baseline records are in every list, so each list is one complete protocol run.
    """
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    nets = sorted({r["method"] for r in rows} - set(BASELINE_METHODS))
    if not nets:
        raise SystemExit(f"{path}: no network rows besides the baselines")
    records = []
    for r in rows:
        rec = {k: r[k] for k in ("pair", "shift", "method", "name")}
        rec["fold"] = int(r["fold"])
        rec.update({k: float(r[k]) for k in (*METRIC_NAMES, *UPTAKE_NAMES)})
        records.append(rec)
    base = [r for r in records if r["method"] in BASELINE_METHODS]
    return [
        base + [{**r, "method": NETWORK} for r in records if r["method"] == net] for net in nets
    ]


def seed_means(per_seed: list[dict]) -> dict:
    """Fold means of each seed -> one table whose network row is the mean over seeds."""
    merged = dict(per_seed[0])
    for key in merged:
        if key[2] == NETWORK:
            merged[key] = {k: float(np.mean([s[key][k] for s in per_seed])) for k in merged[key]}
    return merged


def _num(value: float) -> str:
    """A table cell: three decimals, or "-" where there is no value (no colour for MRI-CT)."""
    return "-" if np.isnan(value) else f"{value:.3f}"


def markdown(per_seed: list[dict], command: str, files: list[str]) -> str:
    """Per pair, one row per shift: wins of the seed mean, seeds meeting the bar, uptake range."""
    mean = seed_means(per_seed)
    pairs = sorted({k[0] for k in mean})
    shifts = list(dict.fromkeys(k[1] for k in mean))
    n = len(per_seed)
    lines = [
        f"Command: `{command}`",
        "",
        f"Seeds: {n} ({', '.join(f'`{f}`' for f in files)}). Wins are those of the mean over "
        "seeds of each fold-mean metric; the last columns say on how many seeds alone the bar "
        "is met, and the range of the uptake loss over seeds.",
        "",
    ]
    for pair in pairs:
        lines += [
            f"#### {pair}: mean of {n} seeds against the baselines, per shift",
            "",
            "| shift | wins of 7 vs " + " / ".join(BASELINE_METHODS) + " | uptake loss, mean "
            "(min-max) | bar met by the mean | seeds meeting the bar |",
            "|---|---|---|---|---|",
        ]
        for shift in shifts:
            w = wins(mean, pair, shift, NETWORK)
            ups = [s[(pair, shift, NETWORK)]["uptake_loss"] for s in per_seed]
            alone = sum(bar_met(s, pair, shift, NETWORK) for s in per_seed)
            lines.append(
                f"| {shift} | {' / '.join(str(v) for v in w.values())} | "
                f"{np.mean(ups):.1f} ({min(ups):.1f}-{max(ups):.1f}) | "
                f"{'yes' if bar_met(mean, pair, shift, NETWORK) else 'no'} | {alone} of {n} |"
            )
        lines += ["", f"#### {pair}: the network's metrics over seeds (mean ± sd, no shift)", ""]
        cols = (*METRIC_NAMES, *UPTAKE_NAMES)
        lines.append("| method | " + " | ".join(cols) + " |")
        lines.append("|---|" + "---:|" * len(cols))
        for b in BASELINE_METHODS:
            row = mean[(pair, "none", b)]
            lines.append(f"| {b} | " + " | ".join(_num(row[k]) for k in cols) + " |")
        cells = []
        for k in cols:
            vals = np.array([s[(pair, "none", NETWORK)][k] for s in per_seed])
            spread = vals.std(ddof=1) if n > 1 else 0.0
            cells.append("-" if np.isnan(vals).all() else f"{vals.mean():.3f} ± {spread:.3f}")
        lines.append("| edpsn | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--csv", action="append", required=True, help="a protocol CSV; each network row is a seed"
    )
    ap.add_argument("--section", required=True, help="name of the block in --doc")
    ap.add_argument("--doc", default=str(ROOT / "docs" / "protocol.md"))
    args = ap.parse_args()
    per_seed = [fold_means(seed) for f in args.csv for seed in read_seeds(Path(f))]
    keys = [set(s) for s in per_seed]
    if any(k != keys[0] for k in keys):
        raise SystemExit("the CSVs do not cover the same pairs, shifts and methods")
    command = shlex.join(["python", "benchmarks/seed_summary.py", *sys.argv[1:]])
    text = markdown(per_seed, command, args.csv)
    write_section(Path(args.doc), args.section, text)
    print(text)


if __name__ == "__main__":
    main()
