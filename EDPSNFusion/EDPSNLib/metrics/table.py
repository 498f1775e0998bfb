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
    """The metrics CSV of ``edpsn fuse --metrics``: columns scope + the seven metrics, 6 decimals.

    Args:
        rows: dicts with ``scope`` (``volume``, a region, ``slice N``) and the seven metrics.

    Returns:
        The CSV text, one line per row after the header.

    Example:
        >>> row = {"scope": "volume", **dict.fromkeys(METRIC_NAMES, 1.0)}
        >>> print(metrics_csv_text([row]), end="")
        scope,EN,SD,SCD,Qabf,VIF,PSNR,SSIM
        volume,1.000000,1.000000,1.000000,1.000000,1.000000,1.000000,1.000000
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["scope", *METRIC_NAMES])
    for row in rows:
        writer.writerow([row["scope"], *(f"{float(row[k]):.6f}" for k in METRIC_NAMES)])
    return buf.getvalue()


def read_metrics_csv(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a metrics CSV from ``edpsn fuse`` or scoring (NaN kept).

    Args:
        path: the CSV file.

    Returns:
        ``[{"scope": str, metric: float, ...}]`` in file order.

    Raises:
        InputError: an unreadable file or missing columns.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = Path(folder) / "m.csv"
        ...     _ = path.write_text(metrics_csv_text([{"scope": "slice 3", **dict.fromkeys(METRIC_NAMES, 2)}]))
        ...     read_metrics_csv(path)[0]["PSNR"]
        2.0
    """
    try:
        with Path(path).open(newline="") as f:
            return [
                {"scope": r["scope"], **{k: float(r[k]) for k in METRIC_NAMES}}
                for r in csv.DictReader(f)
            ]
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"Cannot read the metrics in {path} ({exc}); compute them again.") from exc


def slice_series(rows: list[dict[str, Any]]) -> tuple[list[int], dict[str, list[float]]]:
    """The ``slice N`` rows as plot data.

    Args:
        rows: rows as :func:`read_metrics_csv` returns them.

    Returns:
        (slice indices, ``{metric: values}``) in row order.

    Example:
        >>> rows = [{"scope": s, **dict.fromkeys(METRIC_NAMES, 1.0)} for s in ("volume", "slice 4")]
        >>> x, series = slice_series(rows)
        >>> x, series["EN"]
        ([4], [1.0])
    """
    slices = [r for r in rows if str(r["scope"]).startswith("slice ")]
    x = [int(str(r["scope"]).split()[1]) for r in slices]
    return x, {k: [float(r[k]) for r in slices] for k in METRIC_NAMES}
