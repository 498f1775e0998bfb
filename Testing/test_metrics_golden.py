"""The seven metrics against the values of a published implementation (the CDDFuse evaluator).

``../shared/data/metrics_golden/`` (its README.md says how the values were made) holds the
evaluator's EN, SD, SCD, Q^AB/F, VIF, PSNR and SSIM for 48 fixed fusions (mean and max
rules) of Harvard test pairs. Read as the evaluator's reader reads them (BT.601 luma of the
PNGs, rounded), every row must match under ``CDDFUSE_EVALUATOR`` to 1e-8 relative: the CSV
keeps 10 significant digits, so the values can only agree to about 5e-10.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from EDPSNLib import metrics as M
from EDPSNLib.color import rgb_to_luma
from EDPSNLib.paths import data_root

GOLDEN = data_root() / "metrics_golden"
#: Relative agreement required: the CSV's 10 digits (5e-10) with room for round-off.
RTOL = 1e-8


def _luma(path: Path) -> np.ndarray:
    """The evaluator's reader: an 8-bit PNG as BT.601 luma, rounded, float64 on 0..255."""
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"))
    return np.round(rgb_to_luma(rgb))


def _rows() -> list[dict[str, str]]:
    with (GOLDEN / "cddfuse_evaluator.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def golden() -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray], list[str]]:
    """A, B, F (48, H, W) as the evaluator read them, its values {metric: (48,)}, row names."""
    rows = _rows()
    harvard = data_root() / "harvard"
    a, b, f = [], [], []
    for row in rows:
        pair = row["pair"]
        a.append(_luma(harvard / pair / "MRI" / row["name"]))
        b.append(_luma(harvard / pair / pair.split("-", 1)[1] / row["name"]))
        f.append(_luma(GOLDEN / row["fused"]))
    values = {k: np.array([float(r[k]) for r in rows]) for k in M.METRIC_NAMES}
    names = [r["fused"] for r in rows]
    return np.stack(a), np.stack(b), np.stack(f), values, names


def _relative_error(got: np.ndarray, expected: np.ndarray) -> np.ndarray:
    return np.abs(got - expected) / np.abs(expected)


def test_the_golden_set_is_the_one_described() -> None:
    rows = _rows()
    assert len(rows) == 48
    assert {r["pair"] for r in rows} == {"MRI-CT", "MRI-PET", "MRI-SPECT"}
    assert sorted({r["fused"].rsplit("_", 1)[1] for r in rows}) == ["max.png", "mean.png"]
    assert all((GOLDEN / r["fused"]).is_file() for r in rows)


def test_every_row_matches_the_evaluator(golden) -> None:  # noqa: ANN001
    a, b, f, expected, names = golden
    got = M.fusion_metrics_batch(a, b, f, options=M.CDDFUSE_EVALUATOR)
    for name in M.METRIC_NAMES:
        err = _relative_error(got[name], expected[name])
        worst = int(np.argmax(err))
        assert err[worst] < RTOL, (
            f"{name}: {names[worst]} gives {got[name][worst]!r}, evaluator {expected[name][worst]!r}"
        )


def test_one_at_a_time_and_per_image_match_too(golden) -> None:  # noqa: ANN001
    """The single-metric functions with the same conventions, and the unbatched call."""
    a, b, f, expected, _ = golden
    single = {
        "EN": M.entropy(f),
        "SD": M.standard_deviation(f),
        "SCD": M.scd(a, b, f),
        "Qabf": M.qabf(a, b, f, equal_strength_slip=True, flipped_sobel_x=True),
        "VIF": M.vif(a, b, f),
        "PSNR": M.psnr(a, b, f, peak=None),
        "SSIM": M.ssim(a, b, f, data_range=255.0),
    }
    for name, values in single.items():
        assert _relative_error(values, expected[name]).max() < RTOL, name
    for i in (0, 17, 47):  # uint8 RGB-free inputs, one image per call
        one = M.fusion_metrics(
            a[i].astype(np.uint8), b[i].astype(np.uint8), f[i], options=M.CDDFUSE_EVALUATOR
        )
        for name in M.METRIC_NAMES:
            assert abs(one[name] - expected[name][i]) < RTOL * abs(expected[name][i]), name


@pytest.mark.parametrize(
    "dropped", ["qabf_equal_strength_slip", "qabf_flipped_sobel_x", "psnr_peak"]
)
def test_each_evaluator_convention_is_needed(golden, dropped: str) -> None:  # noqa: ANN001
    """Without any one of the evaluator's conventions the golden values are missed by far
    more than the tolerance: the options do the work, not a loose comparison."""
    a, b, f, expected, _ = golden
    textbook = M.DEFAULT_OPTIONS
    options = replace(M.CDDFUSE_EVALUATOR, **{dropped: getattr(textbook, dropped)})
    metric = "PSNR" if dropped == "psnr_peak" else "Qabf"
    got = M.fusion_metrics_batch(a, b, f, options=options)[metric]
    assert _relative_error(got, expected[metric]).max() > 1e-4


def test_the_textbook_default_differs_only_where_documented(golden) -> None:  # noqa: ANN001
    """Default options: EN, SD, SCD, VIF, SSIM are the evaluator's; PSNR (peak 255) and
    Q^AB/F (Xydeas & Petrovic's rule, MATLAB's Sobel orientation) are not."""
    a, b, f, expected, _ = golden
    got = M.fusion_metrics_batch(a, b, f)
    for name in ("EN", "SD", "SCD", "VIF", "SSIM"):
        assert _relative_error(got[name], expected[name]).max() < RTOL, name
    peak_ratio_db = 20 * np.log10(255.0 / f.max(axis=(1, 2)))  # peak 255 against max(F)
    np.testing.assert_allclose(got["PSNR"] - peak_ratio_db, expected["PSNR"], rtol=RTOL)
    assert peak_ratio_db.max() > 0.5  # some fusions do not reach 255
    qabf_err = _relative_error(got["Qabf"], expected["Qabf"])
    assert 1e-4 < qabf_err.max() < 1e-2  # the slips move Q^AB/F a little, not a lot
