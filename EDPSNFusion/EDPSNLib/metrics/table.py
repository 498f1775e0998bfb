"""The metrics CSV of a fused volume (``edpsn fuse --metrics``, scoring): one row per scope
(volume, region, slice), the seven metrics as columns. Plain csv: the GUI reads it too."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from EDPSNLib.errors import InputError
from EDPSNLib.names import METRIC_NAMES


def metrics_csv_text(rows: list[dict[str, Any]]) -> str:
    """CSV text with columns scope + the seven metrics (the layout of ``edpsn fuse --metrics``)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["scope", *METRIC_NAMES])
    for row in rows:
        writer.writerow([row["scope"], *(f"{float(row[k]):.6f}" for k in METRIC_NAMES)])
    return buf.getvalue()


def read_metrics_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows (scope + seven floats, NaN kept) of a metrics CSV from ``edpsn fuse`` or scoring."""
    try:
        with Path(path).open(newline="") as f:
            return [
                {"scope": r["scope"], **{k: float(r[k]) for k in METRIC_NAMES}}
                for r in csv.DictReader(f)
            ]
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"Cannot read the metrics in {path} ({exc}); compute them again.") from exc


def slice_series(rows: list[dict[str, Any]]) -> tuple[list[int], dict[str, list[float]]]:
    """The "slice N" rows as plot data: (slice indices, {metric: values})."""
    slices = [r for r in rows if str(r["scope"]).startswith("slice ")]
    x = [int(str(r["scope"]).split()[1]) for r in slices]
    return x, {k: [float(r[k]) for r in slices] for k in METRIC_NAMES}
