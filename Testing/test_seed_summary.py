"""benchmarks/seed_summary.py: wins of the seed mean, seeds meeting the bar, on hand-made CSVs."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import seed_summary  # noqa: E402

from EDPSNLib.metrics import METRIC_NAMES  # noqa: E402

BASE = {"mean": 1.0, "max": 2.0, "pca": 1.0, "dwt": 1.0, "laplacian": 1.0}


def _write(path: Path, net_label: str, net_value: float, uptake: float) -> Path:
    """Two folds, one shift: every baseline metric constant, the network's set to net_value."""
    fields = ["pair", "fold", "shift", "method", "name", *METRIC_NAMES, "uptake_loss", "hue_diff"]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for fold in (0, 1):
            for method, value in [*BASE.items(), (net_label, net_value)]:
                row = dict(pair="MRI-PET", fold=fold, shift="none", method=method, name=f"{fold}")
                row.update({k: value for k in METRIC_NAMES})
                row.update(uptake_loss=uptake if method == net_label else 20.0, hue_diff=1.0)
                w.writerow(row)
    return path


def test_the_network_row_is_the_seed_mean_and_each_seed_is_judged_alone(tmp_path: Path) -> None:
    # Seed A beats the pixel max (2.0) on every metric, seed B loses everywhere; their mean
    # (2.25) beats it, so the mean meets the bar while only one seed does alone.
    a = _write(tmp_path / "a.csv", "edpsn seed 0", 3.0, uptake=4.0)
    b = _write(tmp_path / "b.csv", "edpsn seed 1", 1.5, uptake=8.0)
    per_seed = [seed_summary.fold_means(s) for p in (a, b) for s in seed_summary.read_seeds(p)]
    mean = seed_summary.seed_means(per_seed)
    assert mean[("MRI-PET", "none", "network")]["SD"] == pytest.approx(2.25)
    assert mean[("MRI-PET", "none", "network")]["uptake_loss"] == pytest.approx(6.0)
    assert mean[("MRI-PET", "none", "max")]["SD"] == pytest.approx(2.0)
    assert [seed_summary.bar_met(s, "MRI-PET", "none", "network") for s in per_seed] == [
        True,
        False,
    ]
    assert seed_summary.bar_met(mean, "MRI-PET", "none", "network")
    text = seed_summary.markdown(per_seed, "cmd", [str(a), str(b)])
    assert "| none | 7 / 7 / 7 / 7 / 7 | 6.0 (4.0-8.0) | yes | 1 of 2 |" in text


def test_each_network_of_one_csv_is_a_seed(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.csv", "edpsn seed 0", 3.0, uptake=4.0)
    with open(path, "a", newline="") as fh:  # a second network row, as a second --network writes
        for fold in (0, 1):
            fh.write(f"MRI-PET,{fold},none,edpsn seed 1,{fold}" + ",1.5" * len(METRIC_NAMES))
            fh.write(",8.0,1.0\n")
    seeds = seed_summary.read_seeds(path)
    assert len(seeds) == 2 and all(len(s) == 12 for s in seeds)  # 5 baselines + 1, two folds
    means = [seed_summary.fold_means(s)[("MRI-PET", "none", "network")]["SD"] for s in seeds]
    assert means == pytest.approx([3.0, 1.5])


def test_a_csv_of_baselines_only_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.csv", "mean", 1.0, uptake=4.0)
    with pytest.raises(SystemExit, match="no network"):
        seed_summary.read_seeds(path)
