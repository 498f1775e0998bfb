"""Uptake fidelity figures on hand-made images with a known answer, and on real fusions."""

from __future__ import annotations

import numpy as np
import pytest

from EDPSNLib.data.harvard import list_pairs, load_pairs
from EDPSNLib.fusion.methods import fusion_method
from EDPSNLib.fusion.normalize import to_uint8
from EDPSNLib.metrics.uptake import hsv_hue_saturation_value, hue_difference, uptake_loss


def _hand_made() -> tuple[np.ndarray, np.ndarray]:
    """MRI 100 everywhere; functional 220 on the left half (uptake), 105 on the right (not
    above the 10-level margin) and 0 in the last column."""
    mri = np.full((8, 8), 100.0)
    func = np.full((8, 8), 105.0)
    func[:, :4] = 220.0
    func[:, -1] = 0.0
    return mri, func


def test_uptake_loss_known_answers() -> None:
    mri, func = _hand_made()
    assert uptake_loss(mri, func, np.maximum(mri, func)).tolist() == [0.0]  # pixel maximum
    assert uptake_loss(mri, func, (mri + func) / 2).tolist() == [60.0]  # (220 - 100) / 2
    assert uptake_loss(mri, func, mri).tolist() == [120.0]  # the MRI alone
    brighter = np.where(func > 200, 250.0, mri)
    assert uptake_loss(mri, func, brighter).tolist() == [0.0]  # only darker counts
    # Pixels not above the margin do not count, whatever F does there.
    fused = np.maximum(mri, func)
    fused[:, 4:] = 0.0
    assert uptake_loss(mri, func, fused).tolist() == [0.0]


def test_uptake_loss_batches_uses_luminance_and_gives_nan_without_uptake() -> None:
    mri, func = _hand_made()
    rgb = np.repeat(func[..., None], 3, axis=-1)  # grey RGB: luminance equals the grey value
    out = uptake_loss(np.stack([mri, mri]), np.stack([rgb, rgb]), np.stack([mri, func]))
    np.testing.assert_allclose(out, [120.0, 0.0], atol=1e-9)
    assert np.isnan(uptake_loss(mri, np.zeros_like(mri), mri)).all()
    with pytest.raises(ValueError, match="sizes differ"):
        uptake_loss(mri, func[:4], mri)


def test_hue_known_answers() -> None:
    h, s, v = hsv_hue_saturation_value(
        np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [128, 128, 128]])
    )
    np.testing.assert_allclose(h, [0, 120, 240, 60, 0])
    np.testing.assert_allclose(s, [1, 1, 1, 1, 0])
    func = np.zeros((1, 2, 2, 3))
    func[..., 0] = 255.0  # red everywhere
    func[0, 1, 1] = (255, 0, 43)  # hue 349.9 degrees (magenta-red)
    fused = func.copy()
    fused[0, 0, 0] = (255, 255, 0)  # yellow: 60 degrees off
    fused[0, 1, 1] = (255, 43, 0)  # hue 10.1: 20.2 degrees off across 0
    out = hue_difference(func, fused)
    np.testing.assert_allclose(out, [(60 + 0 + 0 + 20.24) / 4], atol=0.01)
    grey_fused = hue_difference(func[..., :1, :1, :], func[..., :1, :1, 0])
    np.testing.assert_allclose(grey_fused, [0.0])  # red vs grey (hue 0 by convention)


def test_hue_difference_ignores_dark_and_grey_functional_pixels() -> None:
    func = np.zeros((1, 2, 2, 3))
    func[0, 0, 0] = (255, 0, 0)
    func[0, 0, 1] = (10, 0, 0)  # too dark to have a colour
    func[0, 1, 0] = (200, 190, 195)  # almost grey
    fused = np.zeros_like(func)
    fused[..., 1] = 255  # green everywhere
    np.testing.assert_allclose(hue_difference(func, fused), [120.0])
    assert np.isnan(hue_difference(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)))).all()


def test_on_real_pet_fusions_max_loses_nothing_and_mean_loses_half() -> None:
    mri, func = load_pairs(list_pairs("MRI-PET", "case-fold-1")[40:44])
    m, f = mri / 255.0, func / 255.0
    fused = {name: to_uint8(fusion_method(name, "MRI-PET")(m, f)) for name in ("max", "mean")}
    mx = uptake_loss(mri, func, fused["max"])
    mean = uptake_loss(mri, func, fused["mean"])
    assert np.all(mx < 1.0)  # uint8 rounding of the luminance only
    assert np.all(mean > 10.0) and np.all(mean > 20 * mx)
    hue = hue_difference(func, fused["max"])
    assert np.all(hue < 10.0)  # the chroma is put back: colour kept
