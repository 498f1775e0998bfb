"""Classical fusion baselines on real Harvard Whole Brain Atlas pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from EDPSNLib.errors import InputError
from EDPSNLib.fusion.baselines import (
    BASELINES,
    collapse_laplacian,
    fuse_dwt,
    fuse_laplacian,
    fuse_luminance,
    fuse_mean,
    fuse_pca,
    laplacian_pyramid,
    pca_weights,
)
from EDPSNLib.fusion.methods import fusion_method
from EDPSNLib.fusion.slices import make_slice_fuser
from EDPSNLib.network.color import split_luma
from EDPSNLib.paths import data_root

METHODS = sorted(BASELINES)
METHODS_IN_ORDER = list(BASELINES)  # as error messages list them


def _load_pair(pair: str, func_dir: str, index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One real pair as float32 on [0, 1]: MRI (H, W), functional (H, W) or (H, W, 3)."""
    root = data_root() / "harvard" / pair
    names = sorted(p.name for p in (root / "MRI").glob("*.png"))
    name = names[index]

    def read(path: Path) -> np.ndarray:
        return np.asarray(Image.open(path), dtype=np.float32) / 255.0

    return read(root / "MRI" / name), read(root / func_dir / name)


@pytest.fixture(scope="module")
def mri_pet() -> tuple[np.ndarray, np.ndarray]:
    mri, pet = _load_pair("MRI-PET", "PET")
    assert mri.ndim == 2 and pet.shape == (*mri.shape, 3)
    return mri, pet


@pytest.fixture(scope="module")
def mri_ct() -> tuple[np.ndarray, np.ndarray]:
    mri, ct = _load_pair("MRI-CT", "CT")
    assert ct.shape == mri.shape
    return mri, ct


def _highpass_energy(image: np.ndarray) -> float:
    """Energy of the image minus its Gaussian blur: an independent measure of fine detail."""
    x = np.asarray(image, dtype=np.float64)
    return float(((x - ndimage.gaussian_filter(x, 1.0)) ** 2).sum())


@pytest.mark.parametrize("method", METHODS)
def test_every_baseline_is_a_method_the_commands_run(method, mri_pet) -> None:
    # edpsn evaluate and edpsn fuse --method look methods up by name; each baseline must fuse
    # through both lookups exactly as the function itself does.
    mri, pet = mri_pet
    expected = BASELINES[method](mri, pet)
    batch = fusion_method(method, "MRI-PET")(mri[None], pet[None])
    np.testing.assert_array_equal(batch[0], expected)
    fuser, info = make_slice_fuser(method, "MRI-PET")
    fused, regions = fuser(mri[None], pet[None])
    assert info == {"method": method} and regions.shape == (1, *mri.shape)
    np.testing.assert_array_equal(fused[0], expected)


def test_an_unknown_method_names_the_known_ones(mri_pet) -> None:
    with pytest.raises(InputError, match=", ".join(METHODS_IN_ORDER)):
        fusion_method("median", "MRI-PET")
    with pytest.raises(InputError, match=", ".join(METHODS_IN_ORDER)):
        make_slice_fuser("median", "MRI-PET")


@pytest.mark.parametrize("method", METHODS)
def test_output_shape_dtype_range(method, mri_pet, mri_ct) -> None:
    fuse = BASELINES[method]
    for mri, func in (mri_pet, mri_ct):
        out = fuse(mri, func)
        assert out.shape == func.shape and out.dtype == np.float32
        assert 0.0 <= out.min() and out.max() <= 1.0
        assert out.std() > 0.01  # a real image came out, not a constant


def test_mean_is_exact_average_on_grey(mri_ct) -> None:
    mri, ct = mri_ct
    assert np.array_equal(fuse_mean(mri, ct), (mri + ct) / 2)


@pytest.mark.parametrize("method", METHODS)
def test_idempotent(method, mri_ct, mri_pet) -> None:
    fuse = BASELINES[method]
    mri = mri_ct[0]
    np.testing.assert_allclose(fuse(mri, mri), mri, atol=1e-5)
    # RGB: fusing the PET's own luminance with the PET gives the PET back.
    pet = mri_pet[1]
    y, _ = split_luma(pet)
    np.testing.assert_allclose(fuse(y, pet), pet, atol=1e-5)


def test_pca_weights_sum_to_one_and_favour_variance(mri_pet, mri_ct) -> None:
    for mri, func in (mri_pet, mri_ct):
        y, _ = split_luma(func)
        wa, wb = pca_weights(mri, y)
        assert wa + wb == pytest.approx(1.0, abs=1e-12) and 0.0 <= wa <= 1.0
        assert (wa > wb) == (mri.var() > y.var())
    mri = mri_ct[0]
    damped = 0.3 * mri + 0.2  # same structure, a third of the spread
    wa, wb = pca_weights(mri, damped)
    assert wa > 0.7 and wa + wb == pytest.approx(1.0)
    assert pca_weights(np.zeros((4, 4)), np.ones((4, 4))) == (0.5, 0.5)
    # The fusion itself uses these weights.
    out = fuse_pca(mri, damped)
    np.testing.assert_allclose(out, wa * mri + wb * damped, atol=1e-6)


@pytest.mark.parametrize("method", ["dwt", "laplacian"])
def test_multiscale_keeps_stronger_detail(method, mri_ct) -> None:
    fuse = BASELINES[method]
    mri = mri_ct[0]
    flat = np.full_like(mri, 0.5)
    reference = _highpass_energy(mri)
    for a, b in ((mri, flat), (flat, mri)):
        ratio = _highpass_energy(fuse(a, b)) / reference
        assert ratio == pytest.approx(1.0, abs=0.1), ratio
    # The mean halves the detail amplitude: a quarter of the energy.
    assert _highpass_energy(fuse_mean(mri, flat)) / reference == pytest.approx(0.25, abs=0.01)


@pytest.mark.parametrize("method", ["dwt", "laplacian"])
def test_multiscale_base_is_the_mean(method, mri_ct) -> None:
    mri = mri_ct[0].astype(np.float64)
    flat = np.full_like(mri, 0.5)

    def lowpass(x: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(np.asarray(x, dtype=np.float64), 8.0)

    target = lowpass((mri + flat) / 2)
    for a, b in ((mri, flat), (flat, mri)):
        error = np.abs(lowpass(BASELINES[method](a, b)) - target).mean()
        # Either input's own low band is ~0.2 away; the fused one must sit near the mean.
        assert error < 0.15 * np.abs(lowpass(a) - target).mean()


def test_laplacian_pyramid_of_constant_has_no_detail() -> None:
    for shape in ((256, 256), (255, 257), (6, 3), (1, 7), (1, 1)):
        pyramid = laplacian_pyramid(np.full(shape, 0.3), 5)
        for detail in pyramid[:-1]:
            np.testing.assert_allclose(detail, 0.0, atol=1e-12)
        np.testing.assert_allclose(pyramid[-1], 0.3, atol=1e-12)


@pytest.mark.parametrize("method", ["dwt", "laplacian"])
def test_multiscale_sharper_than_mean_on_real_pair(method, mri_ct) -> None:
    mri, ct = mri_ct
    fused = _highpass_energy(BASELINES[method](mri, ct))
    assert fused > 1.5 * _highpass_energy(fuse_mean(mri, ct))


@pytest.mark.parametrize("method", METHODS)
def test_rgb_chroma_restored(method, mri_pet) -> None:
    mri, pet = mri_pet
    out = BASELINES[method](mri, pet)
    # Pixels pushed out of the RGB gamut are clipped by design: compare the others.
    inside = ((out > 0.0) & (out < 1.0)).all(axis=-1)
    tissue = (mri > 0) | (pet.max(axis=-1) > 0)
    assert inside[tissue].mean() > 0.5  # most of the head is compared, not just a few pixels
    _, cbcr_out = split_luma(out)
    _, cbcr_in = split_luma(pet)
    np.testing.assert_allclose(cbcr_out[inside], cbcr_in[inside], atol=1e-5)


def test_fuse_luminance_with_custom_rule(mri_pet) -> None:
    mri, pet = mri_pet
    out = fuse_luminance(lambda a, b: a, mri, pet)  # take the MRI as luminance
    y, _ = split_luma(out)
    inside = ((out > 0.0) & (out < 1.0)).all(axis=-1)
    np.testing.assert_allclose(y[inside], mri[inside], atol=1e-5)
    with pytest.raises(InputError, match="returned shape"):
        fuse_luminance(lambda a, b: a[:-1], mri, pet)


@pytest.mark.parametrize("shape", [(255, 257), (17, 9), (3, 5), (1, 1)])
@pytest.mark.parametrize("method", METHODS)
def test_odd_sizes(method, shape, mri_pet) -> None:
    mri, pet = mri_pet
    # 255 x 257: crop rows, mirror one extra column; smaller shapes are plain crops.
    mri = np.pad(mri, ((0, 0), (0, 1)), mode="reflect")[: shape[0], : shape[1]]
    pet = np.pad(pet, ((0, 0), (0, 1), (0, 0)), mode="reflect")[: shape[0], : shape[1]]
    out = BASELINES[method](mri, pet)
    assert out.shape == (*shape, 3) and out.dtype == np.float32
    assert np.isfinite(out).all() and 0.0 <= out.min() and out.max() <= 1.0
    np.testing.assert_allclose(BASELINES[method](mri, mri), mri, atol=1e-5)


@pytest.mark.parametrize("shape", [(256, 256), (255, 257), (6, 3)])
def test_laplacian_pyramid_reconstructs_exactly(shape, mri_ct) -> None:
    image = np.pad(mri_ct[0], ((0, 0), (0, 1)), mode="reflect")[: shape[0], : shape[1]]
    pyramid = laplacian_pyramid(image, 4)
    assert len(pyramid) == 5 and pyramid[0].shape == shape
    assert pyramid[-1].shape == (-(-shape[0] // 16), -(-shape[1] // 16))
    np.testing.assert_allclose(collapse_laplacian(pyramid), image, atol=1e-12)


def test_bad_inputs(mri_pet, mri_ct) -> None:
    mri, pet = mri_pet
    with pytest.raises(InputError, match=r"\(256, 256\).*\(255, 256, 3\)"):
        fuse_mean(mri, pet[:-1])
    with pytest.raises(InputError, match="MRI must be grey.*3 channels found"):
        fuse_mean(pet, pet)
    rgba = np.concatenate([pet, np.ones_like(pet[..., :1])], axis=-1)
    with pytest.raises(InputError, match="4 channels found, 1 or 3 expected"):
        fuse_mean(mri, rgba)
    for bad in (np.nan, np.inf):
        broken = mri.copy()
        broken[10, 10] = bad
        with pytest.raises(InputError, match="NaN or infinite"):
            fuse_dwt(broken, mri_ct[1])
    with pytest.raises(InputError, match="divide 8-bit images by 255"):
        fuse_laplacian(mri * 255, mri_ct[1])
    with pytest.raises(InputError, match="Unknown wavelet"):
        fuse_dwt(mri, pet, wavelet="nope")
    with pytest.raises(InputError, match="levels"):
        fuse_dwt(mri, pet, levels=0)
    with pytest.raises(InputError, match="levels"):
        fuse_laplacian(mri, pet, levels=0)
    with pytest.raises(ValueError, match="levels"):  # callers that catch ValueError see it too
        fuse_dwt(mri, pet, levels=-1)
