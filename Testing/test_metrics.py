"""Fusion metrics on real Harvard pairs: analytic values, independent implementations, batching,
masks, degenerate inputs and bad input."""

from __future__ import annotations

import math

import metrics_reference as REF  # the plain per-image implementation (Testing/)
import numpy as np
import pytest
import torch
from scipy.stats import entropy as scipy_entropy
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import EDPSNLib.metrics.local as ML
import EDPSNLib.metrics.maps as MM
from EDPSNLib import metrics as M
from EDPSNLib.color import rgb_to_luma
from EDPSNLib.data.harvard import PAIR_NAMES, list_pairs, load_pairs
from EDPSNLib.errors import InputError
from EDPSNLib.network.entropy import region_map


@pytest.fixture(scope="module", params=PAIR_NAMES)
def harvard(request: pytest.FixtureRequest) -> tuple[np.ndarray, np.ndarray]:
    """Three real test pairs of one set: MRI uint8 (3, H, W), functional uint8 (3, H, W[, 3])."""
    return load_pairs(list_pairs(request.param, "test")[:3])


def _fused_rgb(mri: np.ndarray, func: np.ndarray) -> np.ndarray:
    """A simple fused image: the average, in colour when the functional image is colour."""
    m = mri.astype(np.float64)
    return (m[..., None] + func) / 2.0 if func.ndim == 4 else (m + func) / 2.0


@pytest.fixture(scope="module")
def mri_slice() -> np.ndarray:
    return load_pairs(list_pairs("MRI-PET", "test")[:1])[0][0].astype(np.float64)


# ------------------------------------------------------------------------------ analytic values
def test_entropy_of_two_equal_levels_is_one_bit(mri_slice: np.ndarray) -> None:
    two = np.where(np.arange(mri_slice.size).reshape(mri_slice.shape) % 2 == 0, 0.0, 255.0)
    assert M.entropy(two) == pytest.approx(1.0, abs=1e-12)
    assert M.standard_deviation(two) == pytest.approx(127.5, abs=1e-9)
    ramp = np.arange(256 * 256, dtype=np.float64).reshape(256, 256) % 256  # each level 256 times
    assert M.entropy(ramp) == pytest.approx(8.0, abs=1e-12)


def test_identical_images_give_the_maxima(mri_slice: np.ndarray) -> None:
    a = mri_slice
    out = M.fusion_metrics(a, a, a)
    assert out["SSIM"] == pytest.approx(2.0, abs=1e-12)
    assert out["PSNR"] == M.PSNR_CAP_DB
    q_max = 0.9994 / (1 + math.exp(-15 * (1 - 0.5))) * 0.9879 / (1 + math.exp(-22 * (1 - 0.8)))
    assert out["Qabf"] == pytest.approx(q_max, abs=1e-12)
    assert out["VIF"] == pytest.approx(2.0, abs=1e-6)
    assert out["SCD"] == 0.0  # F - B = 0 is constant


def test_psnr_of_a_known_mse(mri_slice: np.ndarray) -> None:
    a = mri_slice
    # MSE(A, F) = 25, MSE(B, F) = 100: mean 62.5
    value = M.psnr(a, a - 5.0, a + 5.0)
    assert value == pytest.approx(10 * math.log10(255.0**2 / 62.5), abs=1e-9)
    assert M.psnr(a, a, a + 5.0) == pytest.approx(
        peak_signal_noise_ratio(a, a + 5.0, data_range=255), abs=1e-9
    )


def test_scd_sign_on_constructed_images(harvard: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = harvard[0].astype(np.float64), rgb_to_luma(harvard[1])
    assert np.allclose(M.scd(a, b, a + b), 2.0, atol=1e-12)  # F - B = A and F - A = B
    assert np.all(M.scd(a, b, 255.0 - (a + b) / 2) < 0)  # an inverted fusion


# --------------------------------------------------------------- independent implementations
def test_all_metrics_match_the_per_image_reference(harvard: tuple[np.ndarray, np.ndarray]) -> None:
    mri, func = harvard
    fused = _fused_rgb(mri, func)
    got = M.fusion_metrics_batch(mri, func, fused)
    a, b, f = mri.astype(np.float64), rgb_to_luma(func), rgb_to_luma(fused)
    for i in range(len(mri)):
        ref = REF.reference_metrics(a[i], b[i], f[i])
        for name in M.METRIC_NAMES:
            assert got[name][i] == pytest.approx(ref[name], abs=1e-6), name


def test_masked_metrics_match_the_reference(harvard: tuple[np.ndarray, np.ndarray]) -> None:
    mri, func = harvard
    a, b = mri.astype(np.float64), rgb_to_luma(func)
    f = np.maximum(a, b)  # a max-rule fusion
    mask = a > 30  # the tissue
    got = M.fusion_metrics_batch(a, b, f, mask=mask)
    ref = REF.reference_metrics(a[0], b[0], f[0], mask[0])
    for name in M.METRIC_NAMES:
        assert got[name][0] == pytest.approx(ref[name], abs=1e-6), name
    assert not np.allclose(got["VIF"], M.vif(a, b, f))  # the mask changes the result


def test_library_metrics(harvard: tuple[np.ndarray, np.ndarray]) -> None:
    mri, func = harvard
    a, b = mri[0].astype(np.float64), rgb_to_luma(func[0])
    f = (a + b) / 2
    for options in (
        {"data_range": 255.0},
        {"data_range": 2.0},
        {"data_range": 255.0, "use_sample_covariance": False},
    ):
        sk = structural_similarity(a, f, win_size=7, **options) + structural_similarity(
            b, f, win_size=7, **options
        )
        ours = M.ssim(
            a,
            b,
            f,
            data_range=options["data_range"],
            sample_covariance=options.get("use_sample_covariance", True),
        )
        assert ours == pytest.approx(sk, abs=1e-9)
    hist = np.bincount(np.round(f).astype(np.int64).ravel(), minlength=256)
    assert M.entropy(f) == pytest.approx(scipy_entropy(hist, base=2), abs=1e-9)
    assert M.standard_deviation(f) == pytest.approx(np.std(f), abs=1e-9)
    assert M.psnr(a, a, f) == pytest.approx(peak_signal_noise_ratio(a, f, data_range=255), abs=1e-9)


def test_evaluator_conventions(harvard: tuple[np.ndarray, np.ndarray]) -> None:
    """CDDFUSE_EVALUATOR scores the rounded luma with the evaluator's PSNR peak and Q^AB/F."""
    mri, func = harvard
    fused = _fused_rgb(mri, func)
    out = M.fusion_metrics_batch(mri, func, fused, options=M.CDDFUSE_EVALUATOR)
    a, b, f = (np.round(rgb_to_luma(x)) for x in (mri, func, fused))
    mse = (((a - f) ** 2).mean(axis=(1, 2)) + ((b - f) ** 2).mean(axis=(1, 2))) / 2
    assert np.allclose(out["PSNR"], 10 * np.log10(f.max(axis=(1, 2)) ** 2 / mse), atol=1e-9)
    for i in range(len(mri)):
        ref = REF.reference_metrics(a[i], b[i], f[i], evaluator=True)
        for name in M.METRIC_NAMES:
            assert out[name][i] == pytest.approx(ref[name], abs=1e-6), name
    textbook = M.fusion_metrics_batch(a, b, f)
    assert not np.allclose(out["Qabf"], textbook["Qabf"], rtol=1e-6, atol=0)
    for name in ("EN", "SD", "SCD", "VIF", "SSIM"):  # the same definitions on the same input
        np.testing.assert_allclose(out[name], textbook[name], rtol=0, atol=1e-12)


def test_options_are_one_checked_value(mri_slice: np.ndarray) -> None:
    a = mri_slice
    with pytest.raises(InputError, match="data range"):
        M.MetricOptions(ssim_data_range=0.0)
    with pytest.raises(InputError, match="MetricOptions"):
        M.fusion_metrics(a, a, a, options={"psnr_peak": None})
    with pytest.raises(TypeError):
        M.fusion_metrics(a, a, a, psnr_peak=None)  # the old keyword list is gone
    peak_max_f = M.MetricOptions(psnr_peak=None)
    f = a / 2
    assert M.fusion_metrics(a, a, f, options=peak_max_f)["PSNR"] == pytest.approx(
        M.psnr(a, a, f, peak=None), abs=1e-12
    )
    whole, (inside,) = M.fusion_metrics_regions(
        a[None], a[None], f[None], (a > 30)[None, None], options=peak_max_f
    )
    assert whole["PSNR"][0] == pytest.approx(M.psnr(a, a, f, peak=None), abs=1e-12)
    assert inside["PSNR"][0] == pytest.approx(M.psnr(a, a, f, mask=a > 30, peak=None), abs=1e-12)


# ----------------------------------------------------------------------------------- batching
def test_batched_equals_one_by_one(harvard: tuple[np.ndarray, np.ndarray]) -> None:
    mri, func = harvard
    fused = _fused_rgb(mri, func)
    batch = M.fusion_metrics_batch(mri, func, fused, workers=2)
    serial = M.fusion_metrics_batch(mri, func, fused, workers=1)
    singles = [M.fusion_metrics(mri[i], func[i], fused[i]) for i in range(len(mri))]
    a, b, f = mri.astype(np.float64), rgb_to_luma(func), rgb_to_luma(fused)
    functions = {
        "EN": lambda: M.entropy(f),
        "SD": lambda: M.standard_deviation(f),
        "SCD": lambda: M.scd(a, b, f),
        "Qabf": lambda: M.qabf(a, b, f),
        "VIF": lambda: M.vif(a, b, f),
        "PSNR": lambda: M.psnr(a, b, f),
        "SSIM": lambda: M.ssim(a, b, f),
    }
    for name in M.METRIC_NAMES:
        assert batch[name].shape == (len(mri),) and batch[name].dtype == np.float64
        np.testing.assert_allclose(batch[name], [s[name] for s in singles], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(batch[name], serial[name])
        np.testing.assert_allclose(functions[name](), batch[name], rtol=0, atol=1e-12)
    assert M.vifp(a[0], f[0]) + M.vifp(b[0], f[0]) == pytest.approx(batch["VIF"][0], abs=1e-12)
    assert M.ssim_index(a[0], f[0]) + M.ssim_index(b[0], f[0]) == pytest.approx(
        batch["SSIM"][0], abs=1e-12
    )


def test_integer_and_float_inputs_agree(harvard: tuple[np.ndarray, np.ndarray]) -> None:
    mri, func = harvard
    fused = np.maximum(mri[..., None], func) if func.ndim == 4 else np.maximum(mri, func)
    as_int = M.fusion_metrics_batch(mri, func, fused)
    as_float = M.fusion_metrics_batch(
        mri.astype(np.float32), func.astype(np.float64), fused.astype(np.float64)
    )
    for name in M.METRIC_NAMES:
        np.testing.assert_allclose(as_int[name], as_float[name], rtol=0, atol=1e-9)


def test_empty_batch() -> None:
    out = M.fusion_metrics_batch(
        np.zeros((0, 64, 64)), np.zeros((0, 64, 64, 3)), np.zeros((0, 64, 64))
    )
    assert all(v.shape == (0,) for v in out.values())


# ------------------------------------------------------------------------------ several masks
def _entropy_masks(mri: np.ndarray, func: np.ndarray) -> np.ndarray:
    """The three real entropy regions (3, N, H, W) of the pairs, and an empty fourth mask."""
    to01 = lambda x: torch.from_numpy(x / 255.0)[:, None]  # noqa: E731
    labels = region_map(to01(mri.astype(np.float64)), to01(rgb_to_luma(func)))[:, 0].numpy()
    regions = labels[None] == np.arange(3)[:, None, None, None]
    return np.concatenate([regions, np.zeros_like(regions[:1])])


def test_regions_equal_one_mask_at_a_time(harvard: tuple[np.ndarray, np.ndarray]) -> None:
    mri, func = harvard
    fused = _fused_rgb(mri, func)
    masks = _entropy_masks(mri, func)
    assert all(m.any() for m in masks[:3])
    whole, per_mask = M.fusion_metrics_regions(mri, func, fused, masks)
    assert len(per_mask) == len(masks)
    expected = M.fusion_metrics_batch(mri, func, fused)
    for name in M.METRIC_NAMES:
        np.testing.assert_allclose(whole[name], expected[name], rtol=0, atol=1e-12)
    for mask, got in zip(masks, per_mask):
        one = M.fusion_metrics_batch(mri, func, fused, mask=mask)
        for name in M.METRIC_NAMES:
            assert got[name].shape == (len(mri),)
            np.testing.assert_allclose(got[name], one[name], rtol=0, atol=1e-9, err_msg=name)
    assert all(np.array_equal(v, np.zeros(len(mri))) for v in per_mask[3].values())  # empty
    assert not np.allclose(per_mask[0]["SSIM"], per_mask[2]["SSIM"])  # regions differ
    # The masked results also match the per-image reference (first slice, high region).
    a, b, f = mri[0].astype(np.float64), rgb_to_luma(func[0]), rgb_to_luma(fused[0])
    ref = REF.reference_metrics(a, b, f, masks[2, 0])
    for name in M.METRIC_NAMES:
        assert per_mask[2][name][0] == pytest.approx(ref[name], abs=1e-6), name


def test_regions_filter_once(
    harvard: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The expensive maps are computed once per chunk, however many masks are scored."""
    mri, func = harvard
    fused = _fused_rgb(mri, func)
    masks = _entropy_masks(mri, func)
    calls = {"vif": 0, "ssim": 0, "qabf": 0}

    def spy(key: str, real):  # noqa: ANN001, ANN202 - counts calls to the real function
        def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            calls[key] += 1
            return real(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(ML, "vif_maps", spy("vif", ML.vif_maps))
    monkeypatch.setattr(ML, "ssim_maps", spy("ssim", ML.ssim_maps))
    monkeypatch.setattr(MM, "qabf_maps", spy("qabf", MM.qabf_maps))
    M.fusion_metrics_batch(mri, func, fused)
    once = dict(calls)
    M.fusion_metrics_regions(mri, func, fused, masks)
    assert all(calls[k] == 2 * once[k] for k in calls) and once["vif"] >= 1


def test_regions_bad_masks(mri_slice: np.ndarray) -> None:
    a = np.stack([mri_slice, mri_slice])
    with pytest.raises(InputError, match=r"\(K, N, H, W\)"):
        M.fusion_metrics_regions(a, a, a, a > 30)  # (N, H, W): one mask without the K axis
    with pytest.raises(InputError, match="masks"):
        M.fusion_metrics_regions(a, a, a, np.ones((3, 2, 10, 10), dtype=bool))
    with pytest.raises(InputError, match="dtype"):
        M.fusion_metrics_regions(a, a, a, np.ones((3, *a.shape)))
    whole, per_mask = M.fusion_metrics_regions(a, a, a, np.zeros((0, *a.shape), dtype=bool))
    assert per_mask == [] and whole["SSIM"] == pytest.approx([2.0, 2.0])


def test_vif_outside_the_8_bit_range(mri_slice: np.ndarray) -> None:
    """Large values overflow the grouped products of the VIF logarithms: one log per term."""
    a = mri_slice * 1000.0
    b = np.roll(a, 3, axis=1)
    f = 0.5 * (a + b)
    expected = REF.ref_vifp(a, f) + REF.ref_vifp(b, f)
    assert M.vif(a, b, f) == pytest.approx(expected, rel=1e-9)


# ---------------------------------------------------------------------------------- degenerate
def test_all_zero_slices(mri_slice: np.ndarray) -> None:
    z = np.zeros((2, *mri_slice.shape))
    out = M.fusion_metrics_batch(z, z, z)
    expected = {
        "EN": 0.0,
        "SD": 0.0,
        "SCD": 0.0,
        "Qabf": 1.0,
        "VIF": 2.0,
        "PSNR": M.PSNR_CAP_DB,
        "SSIM": 2.0,
    }
    for name, value in expected.items():
        np.testing.assert_array_equal(out[name], value)
        assert str(out[name][0]) != "-0.0"


def test_flat_sources_with_a_structured_fusion(mri_slice: np.ndarray) -> None:
    black = np.zeros_like(mri_slice)  # a constant 100 would have edges at the zero padding
    out = M.fusion_metrics(black, black, mri_slice)
    assert out["Qabf"] == 0.0 and out["VIF"] == 0.0 and out["SCD"] == 0.0
    flat = M.fusion_metrics(black + 100.0, black + 100.0, mri_slice)
    assert flat["VIF"] == 0.0 and 0.0 < flat["Qabf"] < 0.01
    assert all(math.isfinite(v) for v in [*out.values(), *flat.values()])
    assert M.psnr(mri_slice, mri_slice, np.zeros_like(mri_slice), peak=None) == -M.PSNR_CAP_DB


def test_masks_empty_and_too_thin(mri_slice: np.ndarray) -> None:
    a = mri_slice
    f = a / 2
    empty = M.fusion_metrics(a, a, f, mask=np.zeros(a.shape, dtype=bool))
    assert empty == dict.fromkeys(M.METRIC_NAMES, 0.0)
    border = np.zeros(a.shape, dtype=bool)
    border[:2] = True  # no 7x7 window centre inside, but pixels for the others
    out = M.fusion_metrics(a, a, f, mask=border)
    assert out["SSIM"] == 0.0 and out["VIF"] == 0.0
    assert out["PSNR"] == pytest.approx(REF.ref_psnr(a, a, f, border), abs=1e-9)


# ----------------------------------------------------------------------------------- bad input
def test_bad_inputs(mri_slice: np.ndarray) -> None:
    a = mri_slice
    with pytest.raises(InputError, match=r"\(256, 256\).*\(128, 128\)"):
        M.fusion_metrics(a, a, a[:128, :128])
    with pytest.raises(InputError, match="NaN"):
        M.fusion_metrics(a, a, np.where(a > 100, np.nan, a))
    with pytest.raises(InputError, match="mask"):
        M.fusion_metrics(a, a, a, mask=np.ones((10, 10), dtype=bool))
    with pytest.raises(InputError, match="mask"):
        M.fusion_metrics(a, a, a, mask=np.ones(a.shape))
    with pytest.raises(InputError, match="too small"):
        M.fusion_metrics(a[:40, :40], a[:40, :40], a[:40, :40])
    with pytest.raises(InputError, match="rgb_to_luma"):
        M.ssim(a, a, np.stack([a] * 3, axis=-1))
    with pytest.raises(InputError, match="expected"):
        M.fusion_metrics(a, a, np.stack([a] * 4, axis=-1))
    with pytest.raises(InputError, match="dtype"):
        M.entropy(np.array([["x"] * 3] * 3))
    with pytest.raises(InputError, match="data range"):
        M.ssim(a, a, a, data_range=0.0)
    with pytest.raises(InputError, match="peak"):
        M.psnr(a, a, a, peak=-1.0)
    with pytest.raises(InputError, match="workers"):
        M.fusion_metrics_batch(a[None], a[None], a[None], workers=0)
    assert M.ssim_index(a[:7, :7], a[:7, :7]) == pytest.approx(1.0)  # the smallest SSIM input


@pytest.mark.parametrize("shape", [(300, 520), (600, 270), (41, 41)])
@pytest.mark.parametrize("stride", [1, 2])
def test_filter_valid_equals_scipy_on_tiled_shapes(shape: tuple[int, int], stride: int) -> None:
    """The banded VIF filter (tiled past 256 columns) equals a direct 2-D 'valid' correlation."""
    from scipy.signal import correlate2d

    from EDPSNLib.metrics.filters import filter_valid, gaussian_kernel_1d

    rng = np.random.default_rng(7)
    x = rng.uniform(0, 255, size=shape)
    for n in (17, 9, 5, 3):
        k = gaussian_kernel_1d(n, n / 5.0)
        ours = np.array(filter_valid(x, k, stride=stride))
        ref = correlate2d(x, np.outer(k, k), mode="valid")[::stride, ::stride]
        assert ours.shape == ref.shape
        assert np.abs(ours - ref).max() < 1e-9
