"""Volume reading and writing on the real volumes and DICOM series in shared/data."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from EDPSNLib.errors import InputError
from EDPSNLib.paths import data_root
from EDPSNLib.volume.io import Volume, read_volume, suv_factor, validate_volume, write_volume

VOLUMES = data_root() / "volumes"
DICOM = data_root() / "dicom" / "tcia_sts_001_petct"
MR_T2 = VOLUMES / "mridir_porcine_phantom" / "MR-T2_MRI-DIR-zzmeatphantom_bin2x2x1.nii.gz"
RIRE_MR = VOLUMES / "rire_patient001" / "training_001_mr_T1.mha"
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _sha(path: Path) -> str:
    if path.is_dir():
        return hashlib.sha256(
            b"".join(_sha(p).encode() for p in sorted(path.iterdir()))
        ).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _lps_affine(vol: Volume) -> np.ndarray:
    """Voxel (x, y, z) index to LPS mm, from the Volume's own geometry."""
    a = np.eye(4)
    a[:3, :3] = vol.direction @ np.diag(vol.spacing)
    a[:3, 3] = vol.origin
    return a


def _sorted_slices(folder: Path) -> list[pydicom.Dataset]:
    heads = [pydicom.dcmread(p) for p in folder.glob("*.dcm")]
    return sorted(heads, key=lambda d: float(d.ImagePositionPatient[2]))


def _rgb_from(vol: Volume) -> np.ndarray:
    """A real-data RGB volume: the grey volume through a simple two-colour map, uint8."""
    a = vol.array.astype(np.float64)
    g = (a - a.min()) / (a.max() - a.min())
    return np.rint(np.stack([g, g**2, 1 - g], axis=-1) * 255).astype(np.uint8)


def test_nifti_geometry_matches_nibabel() -> None:
    before = _sha(MR_T2)
    vol = read_volume(MR_T2)
    ref = nib.load(str(MR_T2))
    np.testing.assert_allclose(LPS_TO_RAS @ _lps_affine(vol), ref.affine, atol=1e-4)
    np.testing.assert_array_equal(vol.array, np.asarray(ref.dataobj).transpose(2, 1, 0))
    assert vol.modality == "" and not vol.is_rgb and vol.shape == ref.shape[::-1]
    assert _sha(MR_T2) == before


def test_metaimage_geometry_matches_its_header() -> None:
    vol = read_volume(RIRE_MR, modality="mr")
    header = dict(
        line.split(" = ", 1)
        for line in RIRE_MR.read_bytes()[:1000].decode(errors="ignore").splitlines()
        if " = " in line
    )
    assert vol.modality == "MR"
    assert vol.image.GetSize() == tuple(int(v) for v in header["DimSize"].split())
    np.testing.assert_allclose(vol.spacing, [float(v) for v in header["ElementSpacing"].split()])
    np.testing.assert_allclose(vol.origin, [float(v) for v in header["Offset"].split()])


@pytest.mark.parametrize("suffix", [".nhdr", ".mhd"])
def test_detached_header_formats_are_read(tmp_path: Path, suffix: str) -> None:
    mr = sitk.ReadImage(str(RIRE_MR))
    sitk.WriteImage(mr, str(tmp_path / f"mr{suffix}"))  # header + separate raw data file
    vol = read_volume(tmp_path / f"mr{suffix}")
    np.testing.assert_array_equal(vol.array, sitk.GetArrayViewFromImage(mr))
    assert vol.spacing == mr.GetSpacing() and vol.origin == mr.GetOrigin()


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
def test_write_read_roundtrip_keeps_oblique_geometry(tmp_path: Path, suffix: str) -> None:
    vol = read_volume(RIRE_MR)
    # Give the grid a real oblique direction, so LPS/RAS and axis-order mistakes show.
    theta = np.radians(20)
    d = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    vol.image.SetDirection(d.ravel().tolist())
    out = write_volume(vol, tmp_path / f"mr{suffix}")
    back = read_volume(out)
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(_lps_affine(back), _lps_affine(vol), atol=1e-5)
    if suffix == ".nii.gz":
        np.testing.assert_allclose(
            nib.load(str(out)).affine, LPS_TO_RAS @ _lps_affine(vol), atol=1e-4
        )
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left


def test_rgb_written_as_uint8_vector_nrrd(tmp_path: Path) -> None:
    mr = read_volume(RIRE_MR)
    rgb = _rgb_from(mr)
    out = write_volume(rgb, tmp_path / "rgb.nrrd", reference=mr)
    header = out.read_bytes()[:600].decode(errors="ignore")
    assert "type: unsigned char" in header and "kinds: vector domain domain domain" in header
    back = read_volume(out)
    assert back.is_rgb and back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, rgb)
    np.testing.assert_allclose(_lps_affine(back), _lps_affine(mr))
    # float colours on [0, 1] (the core's convention) are rounded to the same bytes
    write_volume(rgb / 255.0, tmp_path / "rgb_f.nrrd", reference=mr)
    np.testing.assert_array_equal(read_volume(tmp_path / "rgb_f.nrrd").array, rgb)


def test_write_refuses_bad_requests_and_leaves_inputs(tmp_path: Path) -> None:
    src = tmp_path / "mr.nrrd"
    mr = read_volume(write_volume(read_volume(RIRE_MR), src))
    before = _sha(src)
    with pytest.raises(InputError, match="also an input"):
        write_volume(mr, src)
    with pytest.raises(InputError, match="also an input"):
        write_volume(mr.array, src, reference=mr)
    with pytest.raises(InputError, match="does not match the reference grid"):
        write_volume(mr.array[1:], tmp_path / "x.nrrd", reference=mr)
    with pytest.raises(InputError, match="reference"):
        write_volume(mr.array, tmp_path / "x.nrrd")
    with pytest.raises(InputError, match="ending"):
        write_volume(mr, tmp_path / "x.png")
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        write_volume(_rgb_from(mr) * 2.0, tmp_path / "x.nrrd", reference=mr)
    assert _sha(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mr.nrrd"]


def test_dicom_ct_series_matches_pydicom() -> None:
    before = _sha(DICOM / "CT_crop")
    ct = read_volume(DICOM / "CT_crop")
    slices = _sorted_slices(DICOM / "CT_crop")
    assert ct.modality == "CT" and ct.shape[0] == len(slices)
    first, last = slices[0], slices[-1]
    np.testing.assert_allclose(ct.origin, [float(v) for v in first.ImagePositionPatient], atol=1e-3)
    np.testing.assert_allclose(ct.spacing[:2], [float(v) for v in first.PixelSpacing[::-1]])
    for k, ds in ((0, first), (-1, last)):
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(ct.array[k], hu)
    assert ct.meta["SeriesDescription"] == first.SeriesDescription
    assert _sha(DICOM / "CT_crop") == before


def test_pet_applies_each_slices_rescale_slope_and_reports_bed_joins() -> None:
    pet = read_volume(DICOM / "PT_FDG_original")
    slices = _sorted_slices(DICOM / "PT_FDG_original")
    assert len({float(d.RescaleSlope) for d in slices}) > 1  # the case this test is about
    ref = np.stack(
        [d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in slices]
    )
    np.testing.assert_allclose(pet.array, ref, rtol=1e-6, atol=1e-6 * ref.max())
    z = np.array([float(d.ImagePositionPatient[2]) for d in slices])
    deviation = np.abs(z - (z[0] + np.arange(z.size) * pet.spacing[2])).max()
    assert 0 < pet.meta["slice_deviation_mm"] == pytest.approx(deviation, abs=1e-6)


def test_suv_matches_mirp_reference_at_same_points() -> None:
    suv = read_volume(DICOM / "PT_FDG_original", suv=True)
    crop = read_volume(DICOM / "PT_SUV_crop")  # the same PET, converted to SUVbw by MIRP
    assert suv_factor(DICOM / "PT_SUV_crop") == 1.0  # Units GML: already SUV
    assert suv.meta["Units"] == "SUVbw" and suv.meta["suv_factor"] == suv_factor(
        DICOM / "PT_FDG_original"
    )
    # Both lie on one grid: sample ours at the crop's voxel centres.
    ours = sitk.GetArrayFromImage(
        sitk.Resample(suv.image, crop.image, sitk.Transform(), sitk.sitkNearestNeighbor, np.nan)
    )
    ref = crop.array
    assert np.isfinite(ours).all()
    hot = ref > 0.1 * ref.max()
    assert np.abs(ours - ref).max() < 2e-3 * ref.max()
    assert np.median(ours[hot] / ref[hot]) == pytest.approx(1.0, abs=1e-4)


def test_suv_refused_without_pet_tags() -> None:
    with pytest.raises(InputError, match="PET"):
        suv_factor(DICOM / "CT_crop")
    with pytest.raises(InputError, match="not DICOM"):
        read_volume(MR_T2, suv=True)


def _link_series(dst: Path, *folders: Path, limit: int | None = None) -> Path:
    dst.mkdir()
    for folder in folders:
        for p in sorted(folder.glob("*.dcm"))[:limit]:
            (dst / f"{folder.name}_{p.name}").symlink_to(p)
    return dst


def test_folder_with_two_series_lists_them_and_picks_one(tmp_path: Path) -> None:
    both = _link_series(tmp_path / "both", DICOM / "CT_crop", DICOM / "PT_SUV_crop")
    with pytest.raises(InputError) as info:
        read_volume(both)
    msg = str(info.value)
    assert "2 DICOM series" in msg and "IBSI_1_STS_001_CT_image" in msg and "modality PT" in msg
    pet = read_volume(both, series_description="IBSI_1_STS_001_PET_image")
    ct = read_volume(both, series_uid=read_volume(DICOM / "CT_crop").meta["SeriesInstanceUID"])
    assert (pet.modality, ct.modality) == ("PT", "CT")
    with pytest.raises(InputError, match="none matches"):
        read_volume(both, series_description="no such series")
    # one file of a series stands for its whole series
    one = next(both.glob("PT_SUV_crop_*.dcm"))
    assert read_volume(one).shape == pet.shape


def test_bad_inputs_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_volume(tmp_path / "missing.nii.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="No DICOM series"):
        read_volume(tmp_path / "empty")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a volume" * 100)
    with pytest.raises(InputError, match="Cannot read"):
        read_volume(bad)
    png = next((data_root() / "harvard" / "MRI-CT" / "MRI").glob("*.png"))
    with pytest.raises(InputError, match="2-D image"):
        read_volume(png)
    single = _link_series(tmp_path / "single", DICOM / "CT_crop", limit=1)
    with pytest.raises(InputError, match="2-D image"):
        read_volume(single)


def test_4d_inputs_are_refused(tmp_path: Path) -> None:
    mr = sitk.ReadImage(str(RIRE_MR))
    four = sitk.JoinSeries([mr, mr])
    sitk.WriteImage(four, str(tmp_path / "dyn.nii.gz"))
    with pytest.raises(InputError, match="4-D"):
        read_volume(tmp_path / "dyn.nii.gz")
    # the same series twice under other names: two slices at every position, as in a 4-D series
    dup = tmp_path / "dup"
    dup.mkdir()
    for p in sorted((DICOM / "PT_SUV_crop").glob("*.dcm")):
        for k in range(2):
            shutil.copy(p, dup / f"{k}_{p.name}")
    with pytest.raises(InputError, match="4-D"):
        read_volume(dup)


def test_validate_volume_rejects_nan_and_constant() -> None:
    mr = read_volume(RIRE_MR)
    a = mr.array.astype(np.float32)
    a[3, 10, 10] = np.nan
    with pytest.raises(InputError, match="1 NaN"):
        validate_volume(Volume.from_array(a, mr), role="MRI")
    with pytest.raises(InputError, match="constant"):
        validate_volume(Volume.from_array(np.full(mr.shape, 7, np.int16), mr), role="CT")
    assert validate_volume(mr) is mr


@pytest.mark.parametrize("size", [1000, 40000])  # header cut / pixel data cut
def test_truncated_dicom_file_is_named(tmp_path: Path, size: int) -> None:
    folder = tmp_path / "ct"
    shutil.copytree(DICOM / "CT_crop", folder)
    damaged = folder / "000030.dcm"
    damaged.chmod(0o644)
    with open(damaged, "r+b") as fh:
        fh.truncate(size)
    with pytest.raises(InputError, match=r"truncated or damaged .*: 000030\.dcm\. Replace"):
        read_volume(folder)
    assert sorted(p.name for p in folder.iterdir())[30] == "000030.dcm"  # nothing changed
