"""Registration on the real volumes: known transforms recovered, the real CT-MR pair, failures.

Volumes are block-averaged (BinShrink) so the whole file stays well under a minute and a half.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from EDPSNLib.errors import InputError, RegistrationError
from EDPSNLib.paths import data_root
from EDPSNLib.volume.io import Volume, read_volume
from EDPSNLib.volume.registration import (
    linear_parts,
    load_transform,
    mattes_mi,
    read_rire_points,
    register,
    resample_to,
    save_transform,
    transform_points,
)
from EDPSNLib.volume.registration_quality import check_plausible
from EDPSNLib.volume.transforms import corner_points

VOLUMES = data_root() / "volumes"
PHANTOM = VOLUMES / "mridir_porcine_phantom"
RIRE = VOLUMES / "rire_patient001"


def _shrunk(path: Path, factors: list[int], modality: str) -> Volume:
    vol = read_volume(path, modality=modality)
    return Volume(sitk.BinShrink(vol.image, factors), vol.modality, {"path": vol.path})


@pytest.fixture(scope="module")
def mr_t2() -> Volume:
    return _shrunk(PHANTOM / "MR-T2_MRI-DIR-zzmeatphantom_bin2x2x1.nii.gz", [2, 2, 1], "MR")


@pytest.fixture(scope="module")
def ct() -> Volume:
    return _shrunk(PHANTOM / "CT_MRI-DIR-zzmeatphantom_bin2x2x2.nii.gz", [2, 2, 2], "CT")


def _centre(vol: Volume) -> tuple[float, ...]:
    return vol.image.TransformContinuousIndexToPhysicalPoint(
        [(s - 1) / 2 for s in vol.image.GetSize()]
    )


def _known_motion(vol: Volume, deg: tuple[float, float, float], mm: tuple[float, float, float]):
    """(true transform, moving volume) with moving(T(x)) = fixed(x) on the same grid."""
    true = sitk.Euler3DTransform(_centre(vol), *np.radians(deg), mm)
    moving = sitk.Resample(vol.image, vol.image, true.GetInverse(), sitk.sitkLinear, 0.0)
    return true, Volume(moving, vol.modality)


def _grid_points(vol: Volume, n: int = 5) -> np.ndarray:
    """Corners plus an n^3 grid of voxel centres spanning the volume, in mm."""
    size = np.array(vol.image.GetSize()) - 1
    axes = [np.linspace(0, s, n) for s in size]
    idx = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    a = vol.direction @ np.diag(vol.spacing)
    return np.vstack([corner_points(vol.image), idx @ a.T + np.array(vol.origin)])


def _max_error(result_t: sitk.Transform, true_t: sitk.Transform, vol: Volume) -> float:
    pts = _grid_points(vol)
    return float(
        np.linalg.norm(
            transform_points(result_t, pts) - transform_points(true_t, pts), axis=1
        ).max()
    )


def test_recovers_known_rigid_motion_of_real_mr(mr_t2: Volume) -> None:
    true, moving = _known_motion(mr_t2, (8.0, -3.0, 5.0), (12.0, -5.0, 4.0))
    result = register(mr_t2, moving)
    assert _max_error(result.transform, true, mr_t2) < min(mr_t2.spacing)  # under one voxel
    assert result.final_metric < result.metric_before and result.method == "rigid"
    assert result.init == "geometry" and result.iterations > 0 and result.stop_reason


def test_recovers_motion_of_rgb_moving_onto_grey_rire_mr() -> None:
    mr = _shrunk(RIRE / "training_001_mr_T1.mha", [2, 2, 1], "MR")
    true, moving = _known_motion(mr, (-6.0, 4.0, 8.0), (-10.0, 8.0, 6.0))
    g = moving.array / moving.array.max()
    rgb = np.rint(np.stack([g, np.sqrt(g), 1 - g], -1) * 255).astype(np.uint8)  # colour-mapped
    result = register(mr, Volume.from_array(rgb, moving, modality="PT"), init="moments")
    assert _max_error(result.transform, true, mr) < min(mr.spacing)


def test_affine_stays_close_to_rigid_truth(mr_t2: Volume) -> None:
    true, moving = _known_motion(mr_t2, (0.0, 4.0, -6.0), (-8.0, 10.0, 0.0))
    result = register(mr_t2, moving, method="affine")
    assert result.transform.GetName() == "AffineTransform"
    assert _max_error(result.transform, true, mr_t2) < min(mr_t2.spacing)
    sv = np.linalg.svd(linear_parts(result.transform)[0], compute_uv=False)
    assert np.abs(sv - 1).max() < 0.02


def test_real_ct_to_mr_pair_needs_and_finds_a_turn(mr_t2: Volume, ct: Volume) -> None:
    # The phantom lies head-first in one scanner and feet-first in the other: insisting on
    # the headers fails loudly; the default searches the turns and says so; search aligns it.
    with pytest.raises(RegistrationError, match="orientation='search'"):
        register(mr_t2, ct, orientation="header")
    by_geometry = register(mr_t2, ct)
    assert "turned 180 deg" in by_geometry.warnings[0]
    by_moments = register(mr_t2, ct, init="moments", orientation="search")
    assert not by_moments.warnings
    for r in (by_geometry, by_moments):
        assert r.orientation.startswith("turned 180 deg")
        assert r.final_metric < r.metric_before - 0.1 and r.overlap > 0.8
        assert r.outline_dice > 0.8  # the body outlines agree
    # two different starts land on the same alignment (within two MR voxels at the corners)
    assert _max_error(by_geometry.transform, by_moments.transform, mr_t2) < 2 * max(mr_t2.spacing)


def test_far_apart_volumes_aligned_by_geometry_or_refused(mr_t2: Volume) -> None:
    true, moving = _known_motion(mr_t2, (5.0, 0.0, 0.0), (6.0, 0.0, -4.0))
    far = Volume(sitk.Image(moving.image), "MR")
    far.image.SetOrigin(tuple(np.array(moving.origin) + [300.0, 0.0, 0.0]))
    shift = sitk.TranslationTransform(3, (300.0, 0.0, 0.0))
    true_far = sitk.CompositeTransform([shift, true])  # applied right to left: true, then shift
    result = register(mr_t2, far, init="geometry")
    assert _max_error(result.transform, true_far, mr_t2) < min(mr_t2.spacing)
    with pytest.raises(RegistrationError, match="start too far apart"):
        register(mr_t2, far, init="identity")
    with pytest.raises(RegistrationError, match="start too far apart"):
        register(mr_t2, far, method="none")


def test_barely_overlapping_volumes_are_refused(mr_t2: Volume) -> None:
    moving = Volume(sitk.Image(mr_t2.image), "MR")
    extent = np.array(mr_t2.spacing) * mr_t2.image.GetSize()
    moving.image.SetOrigin(tuple(np.array(mr_t2.origin) + extent * [0.9, 0.0, 0.0]))
    with pytest.raises(RegistrationError, match="overlaps"):
        register(mr_t2, moving, init="identity")


def test_implausible_results_are_refused(mr_t2: Volume) -> None:
    img = sitk.Cast(mr_t2.image, sitk.sitkFloat32)
    start = sitk.Euler3DTransform()
    far = sitk.Euler3DTransform(start)
    far.SetTranslation((150.0, 0.0, 0.0))
    with pytest.raises(RegistrationError, match="implausibly far"):
        check_plausible(img, img, start, far, 0.2, 45.0)
    squashed = sitk.AffineTransform(3)
    squashed.SetMatrix([0.4, 0, 0, 0, 1, 0, 0, 0, 1])
    with pytest.raises(RegistrationError, match="scales by"):
        check_plausible(img, img, start, squashed, 0.1, 45.0)
    with pytest.raises(InputError, match="method"):
        register(mr_t2, mr_t2, method="bspline")


def test_none_method_is_identity_and_metric_is_best_at_truth(mr_t2: Volume) -> None:
    result = register(mr_t2, mr_t2, method="none")
    assert result.iterations == 0 and result.final_metric == result.metric_before
    np.testing.assert_allclose(linear_parts(result.transform)[0], np.eye(3))
    img = sitk.Cast(mr_t2.image, sitk.sitkFloat32)
    moved = sitk.Euler3DTransform(_centre(mr_t2), 0.0, 0.0, 0.1, (3.0, 0.0, 0.0))
    assert mattes_mi(img, img, sitk.Euler3DTransform()) < mattes_mi(img, img, moved)


def test_rire_ground_truth_transform_maps_the_standard_points() -> None:
    ct_pts, mr_pts = read_rire_points(RIRE / "ct_T1.standard")
    tfm = load_transform(RIRE / "training_001_ct_to_mr_T1_ground_truth.tfm")
    assert tfm.GetName() == "Euler3DTransform"
    np.testing.assert_allclose(transform_points(tfm, ct_pts), mr_pts, atol=0.01)
    # the vectorised mapping agrees with ITK's own, point by point
    itk = np.array([tfm.TransformPoint(p.tolist()) for p in ct_pts])
    np.testing.assert_allclose(transform_points(tfm, ct_pts), itk, atol=1e-9)


def test_save_transform_roundtrip_and_protects_inputs(tmp_path: Path) -> None:
    src = RIRE / "training_001_ct_to_mr_T1_ground_truth.tfm"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    tfm = load_transform(src)
    out = save_transform(tfm, tmp_path / "copy.tfm")
    pts = read_rire_points(RIRE / "ct_T1.standard")[0]
    np.testing.assert_allclose(
        transform_points(load_transform(out), pts), transform_points(tfm, pts)
    )
    with pytest.raises(InputError, match="also an input"):
        save_transform(tfm, out, inputs=(out,))
    with pytest.raises(InputError, match=".tfm"):
        save_transform(tfm, tmp_path / "t.h5")
    with pytest.raises(InputError, match="not a readable"):
        load_transform(RIRE / "ct_T1.standard")
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest
    assert [p.name for p in tmp_path.iterdir()] == ["copy.tfm"]


def test_resample_to_shifts_scalar_and_rgb_by_whole_voxels() -> None:
    mr = _shrunk(RIRE / "training_001_mr_T1.mha", [4, 4, 1], "MR")
    a = mr.array
    g = np.rint(255 * a / a.max()).astype(np.uint8)
    rgb = Volume.from_array(np.stack([g, 255 - g, g // 2], -1), mr, modality="PT")
    # fixed x maps to moving x + one voxel along x: the output is the input moved by one column
    one = sitk.TranslationTransform(3, (mr.spacing[0], 0.0, 0.0))
    scalar = resample_to(mr, mr, one, default_value=-1.0)
    np.testing.assert_allclose(scalar.array[..., :-1], a[..., 1:], atol=1e-3)
    assert (scalar.array[..., -1] == -1.0).all() and scalar.array.dtype == np.float32
    colour = resample_to(mr, rgb, one)
    assert colour.is_rgb and colour.array.dtype == np.uint8 and colour.modality == "PT"
    np.testing.assert_array_equal(colour.array[..., :-1, :], rgb.array[..., 1:, :])
    assert (colour.array[..., -1, :] == 0).all()
    # half a voxel: linear interpolation, channel by channel, rounded
    half = resample_to(mr, rgb, sitk.TranslationTransform(3, (mr.spacing[0] / 2, 0.0, 0.0)))
    mean = (rgb.array[..., :-1, :].astype(float) + rgb.array[..., 1:, :]) / 2
    assert np.abs(half.array[..., :-1, :] - mean).max() <= 0.5 + 1e-6


@pytest.mark.parametrize(
    "transform",
    [
        sitk.Transform(3, sitk.sitkIdentity),
        sitk.TranslationTransform(3, (4.0, -2.0, 7.0)),
        sitk.Euler3DTransform((10.0, 20.0, 30.0), 0.1, -0.2, 0.3, (5.0, 6.0, -7.0)),
        sitk.AffineTransform(
            [1.1, 0.1, 0, 0, 0.9, 0.05, 0, 0, 1.0], (1.0, 2.0, 3.0), (9.0, 8.0, 7.0)
        ),
        sitk.CompositeTransform(
            [sitk.TranslationTransform(3, (1.0, 0, 0)), sitk.Euler3DTransform((0, 0, 0), 0.2, 0, 0)]
        ),
    ],
)
def test_transform_points_agrees_with_itk(transform: sitk.Transform) -> None:
    pts = np.array([[0.0, 0.0, 0.0], [100.0, -50.0, 20.0], [-30.0, 40.0, 250.0]])
    itk = np.array([transform.TransformPoint(p.tolist()) for p in pts])
    np.testing.assert_allclose(transform_points(transform, pts), itk, atol=1e-9)


def test_pet_onto_ct_of_one_exam_starts_from_shared_world_frame() -> None:
    dicom = data_root() / "dicom" / "tcia_sts_001_petct"
    ct = read_volume(dicom / "CT_crop")
    ct = Volume(sitk.BinShrink(ct.image, [2, 2, 1]), ct.modality, ct.meta)
    pet = read_volume(dicom / "PT_FDG_original", suv=True)
    result = register(ct, pet)  # init='auto': same FrameOfReferenceUID -> identity start
    assert result.init == "identity" and result.orientation == "as in the headers"
    a, b = linear_parts(result.transform)
    centre = np.array(_centre(ct))
    # hardware PET/CT: the fix is small (within 1.5 PET voxels and a few degrees)
    assert np.linalg.norm(a @ centre + b - centre) < 1.5 * max(pet.spacing[:2])
    assert np.degrees(np.arccos(np.clip((np.trace(a) - 1) / 2, -1, 1))) < 4.0
