"""The case-grouped protocol: every fold's held-out cases, every contrast shift, every method.

For each pair, each case fold (``case-fold-<k>``, data/splits.py) and each shift of
``EDPSNLib.data.shifts.SHIFTS``, the held-out pairs are shifted, quantised to 8 bits and fused
by each method; the seven metrics and the uptake figures (metrics/uptake.py) are computed
against the shifted sources. A figure is the mean over a fold's images, then the mean over
folds. The network's weights may differ per fold (``--weights`` with ``{fold}`` and
``{pair}``), as weights trained on fold k's training cases must be.

The Markdown goes between ``<!-- protocol:SECTION -->`` and ``<!-- /protocol:SECTION -->`` in
``--doc`` (added at the end if absent), so hand-written text around it stays. The montages of
the four (image, shift) cases with the highest uptake loss of the network go to
``figures/protocol_<section>_<pair>.png`` beside ``--doc``: MRI (shifted), functional,
network, pixel max.

Run (the docs/protocol.md blocks; 10-25 CPU minutes each on a shared 2-core machine):
    nice -n 10 .venv/bin/python benchmarks/eval_protocol.py --pairs MRI-PET --stride 2 \
        --section shipped-MRI-PET --network "edpsn (shipped)="
Select loss weights on the validation cases with ``--part val``, never on ``test``.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import shlex
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from EDPSNLib.atomic import write_bytes_atomic, write_text_atomic
from EDPSNLib.data.harvard import PAIR_NAMES, list_pairs, load_pairs, split_names
from EDPSNLib.data.shifts import SHIFTS
from EDPSNLib.data.splits import fold_count
from EDPSNLib.fusion.methods import fusion_method
from EDPSNLib.fusion.normalize import to_uint8
from EDPSNLib.metrics import METRIC_NAMES, fusion_metrics_batch
from EDPSNLib.metrics.uptake import uptake_figures

BASELINE_METHODS = ("mean", "max", "pca", "dwt", "laplacian")
UPTAKE_NAMES = ("uptake_loss", "hue_diff")
#: The bar of issue 10: at least this many of the seven metrics against every baseline...
WINS_NEEDED = 5
#: ... and an uptake loss of at most this many grey levels.
UPTAKE_BAR = 10.0
ROOT = Path(__file__).resolve().parents[1]


def _fuse(fuse, mri: np.ndarray, func: np.ndarray, batch: int = 16) -> np.ndarray:
    """uint8 sources -> uint8 fused, in batches."""
    out = []
    for s in range(0, len(mri), batch):
        out.append(to_uint8(fuse(mri[s : s + batch] / 255.0, func[s : s + batch] / 255.0)))
    return np.concatenate(out)


def _shifted(shift: str, mri: np.ndarray, func: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A shift applied to uint8 images, back to uint8 (the shifted scan as an 8-bit image)."""
    a, b = SHIFTS[shift](mri / 255.0, func / 255.0)
    return to_uint8(a), to_uint8(b)


def _weights(pattern: str | None, fold: int, pair: str) -> str | None:
    """A network's weights for one fold: the pattern with {fold} and {pair} filled in."""
    return pattern.format(fold=fold, pair=pair) if pattern else None


def evaluate(args: argparse.Namespace) -> list[dict]:
    """One record per (pair, fold, shift, method, image): metrics and uptake figures."""
    records = []
    for pair in args.pairs:
        for fold in range(fold_count(split_names(pair, "all"))):
            if args.folds is not None and fold not in args.folds:
                continue
            pairs = list_pairs(pair, f"case-fold-{fold}/{args.part}")[:: args.stride]
            mri0, func0 = load_pairs(pairs)
            fusers = {m: fusion_method(m, pair) for m in BASELINE_METHODS}
            for label, pattern in args.networks:
                fusers[label] = fusion_method("edpsn", pair, weights=_weights(pattern, fold, pair))
            for shift in args.shifts:
                mri, func = _shifted(shift, mri0, func0)
                for method, fuse in fusers.items():
                    fused = _fuse(fuse, mri, func)
                    scores = fusion_metrics_batch(mri, func, fused)
                    scores.update(uptake_figures(mri, func, fused))
                    for i, p in enumerate(pairs):
                        rec = dict(pair=pair, fold=fold, shift=shift, method=method, name=p.name)
                        rec.update({k: float(v[i]) for k, v in scores.items()})
                        records.append(rec)
                print(f"{pair} fold {fold} {shift}: {len(pairs)} pairs", file=sys.stderr)
    return records


def fold_means(records: list[dict]) -> dict[tuple[str, str, str], dict[str, float]]:
    """(pair, shift, method) -> mean over folds of each fold's mean (NaN-aware for uptake)."""
    by_fold: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        by_fold[(r["pair"], r["shift"], r["method"], r["fold"])].append(r)
    per_fold: dict[tuple, list[dict[str, float]]] = defaultdict(list)
    for (pair, shift, method, _fold), rows in by_fold.items():
        means = {}
        for k in (*METRIC_NAMES, *UPTAKE_NAMES):
            vals = np.array([r[k] for r in rows], dtype=np.float64)
            means[k] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
        per_fold[(pair, shift, method)].append(means)
    out = {}
    for key, folds in per_fold.items():
        out[key] = {}
        for k in folds[0]:
            vals = np.array([f[k] for f in folds])
            out[key][k] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
    return out


def _cell(value: float, best: bool) -> str:
    text = "-" if not np.isfinite(value) else f"{value:.3f}"
    return f"**{text}**" if best else text


def wins(means: dict, pair: str, shift: str, label: str) -> dict[str, int]:
    """For each baseline: on how many of the seven metrics the network is higher."""
    net = means[(pair, shift, label)]
    return {
        b: sum(net[k] > means[(pair, shift, b)][k] for k in METRIC_NAMES) for b in BASELINE_METHODS
    }


def bar_met(means: dict, pair: str, shift: str, label: str) -> bool:
    """The issue's bar on one shift: >= WINS_NEEDED wins against each baseline, uptake <= bar."""
    enough = min(wins(means, pair, shift, label).values()) >= WINS_NEEDED
    return enough and means[(pair, shift, label)]["uptake_loss"] <= UPTAKE_BAR


def markdown(means: dict, args: argparse.Namespace, n_images: dict[str, int]) -> str:
    """The section text: a summary per pair (rows: shifts), then one table per (pair, shift)."""
    labels = [label for label, _ in args.networks]
    methods = [*BASELINE_METHODS, *labels]
    lines = [
        f"Command: `{args.command}`",
        "",
        "Weights: "
        + "; ".join(f"`{label}`: {w or 'the shipped defaults'}" for label, w in args.networks)
        + ". "
        f"Images: every {args.stride}. slice of each fold's `{args.part}` cases: "
        + ", ".join(f"{p} {n}" for p, n in n_images.items())
        + ". Columns: the seven metrics (higher is better), then the uptake loss (grey levels, "
        "lower is better) and the hue difference (degrees, lower is better).",
        "",
    ]
    for pair in args.pairs:
        for label in labels:
            lines += [
                f"#### {pair}: {label} against the baselines, per shift",
                "",
                "| shift | wins of 7 vs " + " / ".join(BASELINE_METHODS) + " | uptake loss "
                f"{label} / mean / max | bar met (>= {WINS_NEEDED} vs each, uptake <= "
                f"{UPTAKE_BAR:g}) |",
                "|---|---|---|---|",
            ]
            for shift in args.shifts:
                w = wins(means, pair, shift, label)
                up = [means[(pair, shift, m)]["uptake_loss"] for m in (label, "mean", "max")]
                met = bar_met(means, pair, shift, label)
                lines.append(
                    f"| {shift} | {' / '.join(str(v) for v in w.values())} | "
                    f"{' / '.join(f'{u:.1f}' for u in up)} | {'yes' if met else 'no'} |"
                )
            lines.append("")
        for shift in args.shifts:
            cols = (*METRIC_NAMES, *UPTAKE_NAMES)
            rows = {m: means[(pair, shift, m)] for m in methods}
            lines += [f"##### {pair}, shift `{shift}`", ""]
            lines.append("| method | " + " | ".join(cols) + " |")
            lines.append("|---|" + "---:|" * len(cols))
            for m, vals in rows.items():
                cells = []
                for k in cols:
                    column = [r[k] for r in rows.values() if np.isfinite(r[k])]
                    target = (min if k in UPTAKE_NAMES else max)(column) if column else None
                    cells.append(_cell(vals[k], vals[k] == target))
                lines.append(f"| {m} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def _tile(image: np.ndarray, size: int, caption: str) -> np.ndarray:
    rgb = np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image
    img = Image.fromarray(rgb).resize((size, size), Image.BILINEAR)
    ImageDraw.Draw(img).text((3, 2), caption, fill=(255, 255, 255))
    return np.asarray(img)


def worst_montage(
    records: list[dict], pair: str, network: tuple[str, str | None], args: argparse.Namespace
) -> Path | None:
    """The four (image, shift) cases with the network's highest uptake loss, as a PNG."""
    label, pattern = network
    mine = [r for r in records if r["pair"] == pair and r["method"] == label]
    mine = [r for r in mine if np.isfinite(r["uptake_loss"])]
    worst = sorted(mine, key=lambda r: -r["uptake_loss"])[:4]
    if not worst:
        return None
    rows = []
    for r in worst:
        p = [
            q for q in list_pairs(pair, f"case-fold-{r['fold']}/{args.part}") if q.name == r["name"]
        ]
        mri, func = _shifted(r["shift"], *load_pairs(p))
        weights = _weights(pattern, r["fold"], pair)
        net = _fuse(fusion_method("edpsn", pair, weights=weights), mri, func)
        mx = _fuse(fusion_method("max", pair), mri, func)
        size = 160
        rows.append(
            np.concatenate(
                [
                    _tile(mri[0], size, f"MRI {r['name']} {r['shift']}"),
                    _tile(func[0], size, pair.split("-")[1]),
                    _tile(net[0], size, f"uptake loss {r['uptake_loss']:.0f}"),
                    _tile(mx[0], size, "pixel max"),
                ],
                axis=1,
            )
        )
    slug = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-")
    name = f"protocol_{args.section}_{pair}_{slug}.png"
    path = Path(args.doc).resolve().parent / "figures" / name
    buf = io.BytesIO()
    Image.fromarray(np.concatenate(rows, axis=0)).save(buf, format="PNG", optimize=True)
    write_bytes_atomic(path, buf.getvalue())
    return path


def write_section(doc: Path, section: str, text: str) -> None:
    """Replace (or append) the text between this section's markers in ``doc``."""
    start, end = f"<!-- protocol:{section} -->", f"<!-- /protocol:{section} -->"
    old = doc.read_text() if doc.exists() else ""
    block = f"{start}\n{text}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    new = pattern.sub(lambda _m: block, old) if pattern.search(old) else f"{old}\n{block}\n"
    write_text_atomic(doc, new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default=",".join(PAIR_NAMES))
    ap.add_argument("--shifts", default=",".join(SHIFTS))
    ap.add_argument("--folds", help="comma list of fold numbers (default: all)")
    ap.add_argument("--weights", help="network weights, may hold {fold} and {pair}")
    ap.add_argument("--label", default="edpsn", help="network row name; '' for baselines only")
    ap.add_argument(
        "--network",
        action="append",
        metavar="LABEL=WEIGHTS",
        help="a network row (repeatable; replaces --label/--weights); WEIGHTS may hold {fold} "
        "and {pair}, empty for the shipped defaults",
    )
    ap.add_argument("--stride", type=int, default=1, help="every Nth held-out slice")
    ap.add_argument(
        "--part",
        default="test",
        choices=("test", "val"),
        help="score each fold's held-out test cases, or its validation case (for model "
        "and loss-weight selection: never tune on test)",
    )
    ap.add_argument("--section", default="shipped", help="name of the block in --doc")
    ap.add_argument("--doc", default=str(ROOT / "docs" / "protocol.md"))
    ap.add_argument("--csv", help="also write every per-image record here")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.command = shlex.join(["python", "benchmarks/eval_protocol.py", *sys.argv[1:]])
    args.pairs = [p for p in args.pairs.split(",") if p]
    args.shifts = [s for s in args.shifts.split(",") if s]
    args.folds = [int(f) for f in args.folds.split(",")] if args.folds else None
    if args.network:
        args.networks = [tuple(n.split("=", 1)) if "=" in n else (n, "") for n in args.network]
    else:
        args.networks = [(args.label, args.weights)] if args.label else []
    records = evaluate(args)
    means = fold_means(records)
    n_images = {p: len({r["name"] for r in records if r["pair"] == p}) for p in args.pairs}
    text = markdown(means, args, n_images)
    for network in args.networks:
        for pair in args.pairs:
            path = worst_montage(records, pair, network, args)
            if path is not None:
                rel = path.relative_to(Path(args.doc).resolve().parent)
                text += f"\n{pair}: the four worst cases of `{network[0]}` by uptake loss "
                text += f"(MRI, functional, {network[0]}, pixel max):\n\n![worst]({rel})\n"
    write_section(Path(args.doc), args.section, text)
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
    print(text)


if __name__ == "__main__":
    main()
