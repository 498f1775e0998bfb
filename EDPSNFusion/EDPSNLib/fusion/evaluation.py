"""Evaluate fusion methods on a Harvard split: fused images, per-image metrics, summary tables."""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from EDPSNLib.atomic import write_text_atomic
from EDPSNLib.data.harvard import list_pairs, load_pairs
from EDPSNLib.fusion.methods import fusion_method
from EDPSNLib.fusion.normalize import to_uint8
from EDPSNLib.metrics import METRIC_NAMES, fusion_metrics_batch


@dataclass
class Evaluation:
    """One method on one split of one pair: names, fused uint8 images and per-image metrics."""

    pair: str
    split: str
    method: str
    names: list[str]
    fused: np.ndarray
    metrics: dict[str, np.ndarray]

    def mean(self) -> dict[str, float]:
        """Mean of each metric over the images."""
        return {k: float(np.mean(v)) for k, v in self.metrics.items()}


def evaluate_method(
    pair: str,
    split: str,
    method: str,
    *,
    weights: str | Path | None = None,
    root: str | Path | None = None,
    device: str = "cpu",
    batch: int = 8,
    progress: Callable[[int], None] | None = None,
) -> Evaluation:
    """Fuse every pair of a split with one method; metrics on the rounded uint8 fused images.

    Args:
        pair: the modality pair, e.g. ``MRI-PET``.
        split: ``train``, ``val``, ``test``, ``trainval`` or ``all`` (see ``data.harvard``).
        method: a baseline name or ``edpsn``.
        weights: EDPSN weights file or name (default: the shipped weights of the pair).
        root: a Harvard-layout folder (default: the shared data).
        device: torch device for ``edpsn``.
        batch: images per call of the method.
        progress: called with the number of images done after each batch.

    Returns:
        The fused images (uint8), their names and their per-image metrics.
    """
    pairs = list_pairs(pair, split, root)
    mri, func = load_pairs(pairs)
    fuse = fusion_method(method, pair, weights=weights, device=device)
    fused = []
    for start in range(0, len(pairs), batch):
        m = mri[start : start + batch].astype(np.float32) / 255.0
        f = func[start : start + batch].astype(np.float32) / 255.0
        fused.append(to_uint8(fuse(m, f)))
        if progress is not None:
            progress(len(m))
    fused_u8 = np.concatenate(fused)
    metrics = fusion_metrics_batch(mri, func, fused_u8)
    return Evaluation(pair, split, method, [p.name for p in pairs], fused_u8, metrics)


def per_image_csv(ev: Evaluation) -> str:
    """CSV text: one row per image with the seven metrics.

    Args:
        ev: one method's evaluation.

    Returns:
        The CSV text (header ``name`` and the metric names).
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["pair", "method", "image", *METRIC_NAMES])
    for i, name in enumerate(ev.names):
        writer.writerow(
            [ev.pair, ev.method, name, *(f"{ev.metrics[k][i]:.6f}" for k in METRIC_NAMES)]
        )
    return buf.getvalue()


def summary_markdown(evals: Sequence[Evaluation], decimals: int = 4) -> str:
    """One Markdown table per pair: methods as rows, mean metrics as columns, best in bold.

    Args:
        evals: evaluations of one or more pairs and methods.
        decimals: digits shown.

    Returns:
        Markdown text.
    """
    lines: list[str] = []
    for pair in dict.fromkeys(ev.pair for ev in evals):
        group = [ev for ev in evals if ev.pair == pair]
        means = [ev.mean() for ev in group]
        best = {k: max(m[k] for m in means) for k in METRIC_NAMES}
        split = group[0].split
        lines += [f"### {pair} ({split} split, {len(group[0].names)} pairs)", ""]
        lines.append("| method | " + " | ".join(METRIC_NAMES) + " |")
        lines.append("|---|" + "---:|" * len(METRIC_NAMES))
        for ev, m in zip(group, means):
            cells = [
                f"**{m[k]:.{decimals}f}**" if m[k] == best[k] else f"{m[k]:.{decimals}f}"
                for k in METRIC_NAMES
            ]
            lines.append(f"| {ev.method} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def summary_csv(evals: Sequence[Evaluation]) -> str:
    """CSV text: one row per (pair, method) with the mean of each metric.

    Args:
        evals: evaluations of one or more pairs and methods.

    Returns:
        The CSV text (header ``pair,method`` and the metric names).
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["pair", "split", "method", "n", *METRIC_NAMES])
    for ev in evals:
        m = ev.mean()
        writer.writerow(
            [ev.pair, ev.split, ev.method, len(ev.names), *(f"{m[k]:.6f}" for k in METRIC_NAMES)]
        )
    return buf.getvalue()


def write_evaluations(
    evals: Sequence[Evaluation], out_dir: str | Path, save_images: bool = True
) -> Path:
    """Write fused PNGs, per-image CSVs and the summaries; each method folder appears whole or not at all.

    Args:
        evals: evaluations to write.
        out_dir: the output folder (created when missing).
        save_images: also write the fused PNGs.

    Returns:
        The output folder.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for ev in evals:
        final = out / ev.pair / ev.method
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{ev.method}.", dir=final.parent))
        try:
            (staging / "metrics.csv").write_text(per_image_csv(ev))
            if save_images:
                (staging / "fused").mkdir()
                for name, img in zip(ev.names, ev.fused):
                    Image.fromarray(img).save(staging / "fused" / f"{name}.png")
            if final.exists():
                shutil.rmtree(final)
            staging.rename(final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    write_text_atomic(out / "summary.csv", summary_csv(evals))
    write_text_atomic(out / "summary.md", summary_markdown(evals))
    return out
