"""Contrast shifts on real Harvard pairs: deterministic, inside [0, 1], the documented change."""

from __future__ import annotations

import numpy as np
import pytest

from EDPSNLib.color import rgb_to_luma
from EDPSNLib.data import shifts
from EDPSNLib.data.harvard import list_pairs, load_pairs
from EDPSNLib.errors import InputError


@pytest.fixture(scope="module")
def pet_pairs() -> tuple[np.ndarray, np.ndarray]:
    mri, func = load_pairs(list_pairs("MRI-PET", "case-fold-0")[30:33])
    return mri / 255.0, func / 255.0


@pytest.mark.parametrize("name", list(shifts.SHIFTS))
def test_every_shift_is_deterministic_in_range_and_leaves_inputs(name, pet_pairs) -> None:
    mri, func = pet_pairs
    before = (mri.copy(), func.copy())
    a1, b1 = shifts.apply_shift(name, mri, func)
    a2, b2 = shifts.apply_shift(name, mri, func)
    assert np.array_equal(a1, a2) and np.array_equal(b1, b2)
    assert a1.shape == mri.shape and b1.shape == func.shape
    for out in (a1, b1):
        assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() <= 1.0
    assert np.array_equal(mri, before[0]) and np.array_equal(func, before[1])
    changed_mri, changed_func = not np.allclose(a1, mri), not np.allclose(b1, func)
    assert (changed_mri, changed_func) == {
        "none": (False, False),
        "func-0.7": (False, True),
        "func-1.3": (False, True),
    }.get(name, (True, False))


def test_gamma_and_scale_move_the_mean_the_right_way(pet_pairs) -> None:
    mri = pet_pairs[0]
    mean = mri.mean()
    assert shifts.gamma(mri, 0.6).mean() > mean > shifts.gamma(mri, 1.6).mean()
    assert shifts.scale(mri, 1.3).mean() > mean > shifts.scale(mri, 0.6).mean()
    np.testing.assert_allclose(shifts.scale(mri, 0.6), mri * 0.6, atol=1e-6)
    assert shifts.scale(mri, 1.3).max() == 1.0  # clipped, not wrapped


def test_t2_like_inverts_tissue_order_and_keeps_background() -> None:
    # A hand-made head: background 0, a bright disc (0.8, "white matter") with a dark
    # centre (0.2, "CSF") in a mid ring (0.5).
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - 32, xx - 32)
    head = np.where(r < 25, 0.5, 0.0) + np.where(r < 15, 0.3, 0.0) - np.where(r < 5, 0.6, 0.0)
    out = shifts.t2_like(head)
    assert head[32, 32] < head[32, 42] and out[32, 32] > out[32, 42]  # order flipped
    assert np.all(out[r >= 26] == 0.0)  # background kept dark
    np.testing.assert_allclose(out[32, 42], 0.2 + 0.8 - 0.8, atol=1e-6)  # lo + hi - x


def test_t2_like_on_real_slices_makes_csf_brighter_than_white_matter(pet_pairs) -> None:
    mri = pet_pairs[0][0]
    out = shifts.t2_like(mri)
    head = shifts.head_mask(mri) & (mri > shifts.HEAD_THRESHOLD)
    dark, bright = np.percentile(mri[head], [10, 90])
    assert out[head & (mri <= dark)].mean() > out[head & (mri >= bright)].mean()
    outside = ~shifts.head_mask(mri)
    assert np.array_equal(out[outside], mri[outside].astype(np.float32))


def test_noise_is_seeded_and_blur_smooths(pet_pairs) -> None:
    mri = pet_pairs[0]
    a = shifts.add_noise(mri, 0.03, seed=1)
    assert np.array_equal(a, shifts.add_noise(mri, 0.03, seed=1))
    assert not np.array_equal(a, shifts.add_noise(mri, 0.03, seed=2))
    assert 0.015 < float(np.std(a - mri)) < 0.035
    blurred = shifts.blur(mri, 1.0)
    assert np.abs(np.diff(blurred, axis=-1)).mean() < 0.8 * np.abs(np.diff(mri, axis=-1)).mean()


def test_functional_scaling_scales_luminance_and_keeps_hue(pet_pairs) -> None:
    func = pet_pairs[1]
    dim = shifts.scale_functional(func, 0.7)
    np.testing.assert_allclose(rgb_to_luma(dim), 0.7 * rgb_to_luma(func), atol=1e-5)
    bright = shifts.scale_functional(func, 1.3)
    coloured = func.max(-1) - func.min(-1) > 0.1
    # Same hue and saturation: channels keep their ratios (up to float rounding).
    ratio_in = func[coloured] / func[coloured].max(-1, keepdims=True)
    ratio_out = bright[coloured] / bright[coloured].max(-1, keepdims=True)
    np.testing.assert_allclose(ratio_out, ratio_in, atol=1e-5)
    assert rgb_to_luma(bright).mean() > rgb_to_luma(func).mean()
    grey = shifts.scale_functional(func[..., 0], 1.3)
    np.testing.assert_allclose(grey, np.clip(func[..., 0] * 1.3, 0, 1), atol=1e-6)


def test_random_shifts_are_functions_of_the_generator(pet_pairs) -> None:
    mri, func = pet_pairs[0][0], pet_pairs[1][0]
    outs = [shifts.random_mri_shift(mri, np.random.default_rng(s)) for s in (5, 5, 6)]
    assert np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])
    for s in range(10):
        out = shifts.random_mri_shift(mri, np.random.default_rng(s))
        assert out.min() >= 0 and out.max() <= 1 and out.shape == mri.shape
    f = shifts.random_functional_scale(func, np.random.default_rng(0))
    assert np.array_equal(f, shifts.random_functional_scale(func, np.random.default_rng(0)))


def test_unknown_shift_names_the_choices() -> None:
    with pytest.raises(InputError, match="gamma-0.6"):
        shifts.apply_shift("gamma", np.zeros((4, 4)), np.zeros((4, 4)))
