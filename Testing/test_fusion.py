"""Volume fusion end to end on real volumes: the shipped Harvard sample and the porcine CT/MR."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from EDPSNLib.cli import main
from EDPSNLib.errors import InputError, RegistrationError
from EDPSNLib.fusion.pipeline import FusionOptions, fuse_volumes, metrics_rows, slice_axis
from EDPSNLib.metrics import METRIC_NAMES, fusion_metrics_batch
from EDPSNLib.paths import repo_root
from EDPSNLib.volume.io import Volume, read_volume

SAMPLE = repo_root() / "Resources" / "Sample"


def _sample(n: int = 12) -> tuple[Volume, Volume]:
    """A slab of the shipped sample (slices 40..40+n) to keep tests fast."""
    mri = read_volume(SAMPLE / "harvard_case25_MRI.nrrd")
    pet = read_volume(SAMPLE / "harvard_case25_PET.nrrd")
    return (Volume(v.image[:, :, 40 : 40 + n], v.modality, dict(v.meta)) for v in (mri, pet))


def test_fuse_aligned_sample_with_baseline() -> None:
    mri, pet = _sample()
    res = fuse_volumes(
        mri, pet, FusionOptions("PET", register="none", method="mean", axis="coronal")
    )
    assert res.registration is None
    assert res.fused.shape == mri.shape + (3,) and res.fused.dtype == np.uint8
    assert res.regions.shape == mri.shape and set(np.unique(res.regions)) <= {0, 1, 2, 3}
    assert {1, 2, 3} <= set(np.unique(res.regions))  # all three information levels occur
    assert res.tissue.all()
    # The mean rule: fused luma equals the mean of MRI and PET luma to rounding.
    pet_y = pet.array.astype(float) @ [0.299, 0.587, 0.114]
    fused_y = res.fused.astype(float) @ [0.299, 0.587, 0.114]
    inside = res.regions > 0
    expected = (mri.array.astype(float) / mri.array.max() * 255.0 + pet_y) / 2
    assert np.median(np.abs(fused_y - expected)[inside]) < 6.0
    # The volume metrics are the mean of the per-slice metrics, which are the batch metrics.
    direct = fusion_metrics_batch(
        np.clip(mri.array / np.percentile(mri.array[mri.array > 0], 99.5), 0, 1) * 255,
        pet.array.astype(float),
        res.fused,
    )
    assert abs(res.volume_metrics["EN"] - direct["EN"].mean()) < 1e-9
    assert abs(res.volume_metrics["VIF"] - direct["VIF"].mean()) < 0.05
    rows = metrics_rows(res)
    assert [r["scope"] for r in rows[:4]] == [
        "volume",
        "region: low",
        "region: mid",
        "region: high",
    ]
    assert all(np.isfinite(r[k]) for r in rows for k in METRIC_NAMES)


def test_background_is_zero_and_regions_follow_tissue() -> None:
    mri, pet = _sample(4)
    res = fuse_volumes(
        mri, pet, FusionOptions("PET", register="none", method="max", axis="coronal")
    )
    air = (mri.array == 0) & (pet.array.sum(-1) == 0)
    assert (res.regions[air] == 0).all() and (res.fused[air] == 0).all()


def test_axis_choice_uses_direction() -> None:
    mri, _ = _sample(4)
    # The sample's atlas slices are coronal: k runs along world y, j along z, i along x.
    assert slice_axis(mri, "coronal") == 0 and slice_axis(mri, "axial") == 1
    assert slice_axis(mri, "sagittal") == 2
    img = sitk.PermuteAxes(mri.image, [1, 2, 0])  # now i along z, j along y, k along x
    assert slice_axis(Volume(img), "sagittal") == 0
    assert slice_axis(Volume(img), "coronal") == 1 and slice_axis(Volume(img), "axial") == 2


def test_scalar_ct_registered_to_mr_phantom(tmp_path: Path) -> None:
    from EDPSNLib.paths import data_root

    base = data_root() / "volumes" / "mridir_porcine_phantom"
    ct = read_volume(base / "CT_MRI-DIR-zzmeatphantom_bin2x2x2.nii.gz")
    mr = read_volume(base / "MR-T2_MRI-DIR-zzmeatphantom_bin2x2x1.nii.gz")
    small = [Volume(sitk.BinShrink(v.image, [2, 2, 2]), v.modality, dict(v.meta)) for v in (mr, ct)]
    # The phantom was scanned head-first on one scanner and feet-first on the other:
    # insisting on the header orientation is refused with a clear message, the orientation
    # search aligns it.
    with pytest.raises(RegistrationError, match="180"):
        fuse_volumes(small[0], small[1], FusionOptions("CT", method="mean", orientation="header"))
    opts = FusionOptions("CT", ct_window="soft-tissue", method="mean", orientation="search")
    res = fuse_volumes(small[0], small[1], opts)
    assert res.registration is not None
    assert res.registration.final_metric < res.registration.metric_before
    assert res.fused.shape == small[0].shape and res.fused.ndim == 3  # grey for CT


def test_bad_modality_and_rgb_mri() -> None:
    mri, pet = _sample(4)
    with pytest.raises(InputError, match="modality"):
        fuse_volumes(mri, pet, FusionOptions("XR", register="none", method="mean"))
    with pytest.raises(InputError, match="RGB"):
        fuse_volumes(pet, pet, FusionOptions("PET", register="none", method="mean", axis="coronal"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_fuse_writes_outputs_and_keeps_inputs(tmp_path: Path) -> None:
    mri, pet = _sample(6)
    mri_path, pet_path = tmp_path / "mri.nrrd", tmp_path / "pet.nrrd"
    sitk.WriteImage(mri.image, str(mri_path))
    sitk.WriteImage(pet.image, str(pet_path))
    before = (_sha(mri_path), _sha(pet_path))
    out = tmp_path / "out"
    code = main(
        [
            "fuse",
            "--mri",
            str(mri_path),
            "--moving",
            str(pet_path),
            "--modality",
            "PET",
            "--out",
            str(out / "fused.nrrd"),
            "--regions",
            str(out / "regions.nii.gz"),
            "--metrics",
            str(out / "metrics.csv"),
            "--register",
            "none",
            "--method",
            "laplacian",
            "--axis",
            "coronal",
        ]
    )
    assert code == 0
    assert (_sha(mri_path), _sha(pet_path)) == before
    fused = read_volume(out / "fused.nrrd")
    assert fused.is_rgb and fused.shape == mri.shape
    assert np.allclose(fused.origin, mri.origin) and np.allclose(fused.spacing, mri.spacing)
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert header == "scope," + ",".join(METRIC_NAMES)
    assert sorted(p.name for p in out.iterdir()) == ["fused.nrrd", "metrics.csv", "regions.nii.gz"]


def test_cli_fuse_refuses_bad_outputs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    mri_path = SAMPLE / "harvard_case25_MRI.nrrd"
    pet_path = SAMPLE / "harvard_case25_PET.nrrd"
    args = ["fuse", "--mri", str(mri_path), "--moving", str(pet_path), "--modality", "PET"]
    assert main([*args, "--out", str(mri_path)]) == 2
    assert "also an input" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "fused.png")]) == 2
    assert "must end in" in capsys.readouterr().err
    assert (
        main([*args, "--out", str(tmp_path / "x.nrrd"), "--metrics", str(tmp_path / "x.nrrd")]) == 2
    )
    assert not any(tmp_path.iterdir())


def test_cli_models_lists_the_shipped_weights(capsys: pytest.CaptureFixture) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for pair in ("MRI-CT", "MRI-PET", "MRI-SPECT"):
        assert f"EDPSN_{pair}" in out and "default" in out


def _scalar_pet_with_lesions(tmp_path: Path, ratios: tuple[float, ...]) -> tuple[Path, Path, dict]:
    """The sample's PET turned back into scalar uptake (nearest colour of the atlas palette,
    in Bq/ml-like units) with one spherical lesion per ratio, each ``ratio`` times the hottest
    normal tissue (the uptake's 99.5th percentile, what the old scaling put at the top)."""
    from EDPSNLib.fusion.normalize import colormap_lut, to_uint8

    mri, pet = _sample(12)
    rgb = pet.array.astype(np.float32)
    lut = to_uint8(colormap_lut("harvard-pet")).astype(np.float32)
    uptake = ((rgb[..., None, :] - lut) ** 2).sum(-1).argmin(-1).astype(np.float32) * 40.0
    grey_matter = float(np.percentile(uptake[uptake > 0], 99.5))
    zz, yy, xx = np.indices(uptake.shape)
    brain = np.argwhere((uptake > np.percentile(uptake[uptake > 0], 60)) & (mri.array > 0))
    centre = brain.mean(axis=0).round().astype(int)
    lesions = {}
    for k, ratio in enumerate(ratios):
        c = centre + [(-1) ** k * 3, 0, (-1) ** k * 14]  # two slices and sides apart
        ball = ((zz - c[0]) * 2.0) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= 5.0**2
        uptake[ball] = ratio * grey_matter
        lesions[ratio] = ball
    normal_hot = (uptake >= np.percentile(uptake[uptake > 0], 99)) & (uptake <= grey_matter)
    lesions["normal"] = normal_hot & ~np.any(list(lesions.values()), axis=0)
    mri_path, pet_path = tmp_path / "mri.nrrd", tmp_path / "pet.nrrd"
    sitk.WriteImage(mri.image, str(mri_path))
    sitk.WriteImage(Volume.from_array(uptake, mri).image, str(pet_path))
    return mri_path, pet_path, {"grey_matter": grey_matter, **lesions}


#: A lesion's mean fused colour must be this far (Euclidean, RGB 0..255) from that of the
#: hottest normal tissue (its top 1 %). With the old scaling (99.5th percentile at the top,
#: no headroom) the 2.7x and 3x lesions were 26 and 21 away; now about 160.
LESION_MARGIN = 80.0


def test_hot_lesions_keep_their_colour_through_edpsn_fuse(tmp_path: Path, capsys) -> None:
    import json

    mri_path, pet_path, masks = _scalar_pet_with_lesions(tmp_path, (2.7, 3.0))
    base = ["fuse", "--mri", str(mri_path), "--moving", str(pet_path), "--modality", "PET"]
    base += ["--register", "none", "--axis", "coronal", "--json-progress", "--device", "cpu"]
    assert main([*base, "--out", str(tmp_path / "fused.nrrd")]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    done = next(e for e in events if e["event"] == "done")
    assert done["info"]["display_range"]["high"] >= 2.7 * masks["grey_matter"]
    fused = read_volume(tmp_path / "fused.nrrd").array.astype(float)
    normal = fused[masks["normal"]].mean(axis=0)
    for ratio in (2.7, 3.0):
        distance = float(np.linalg.norm(fused[masks[ratio]].mean(axis=0) - normal))
        assert distance >= LESION_MARGIN, (ratio, distance)
    # A user range that tops out at grey matter saturates the lesions again: the flag is used.
    top = masks["grey_matter"]
    args = [*base, "--out", str(tmp_path / "clipped.nrrd"), "--method", "max"]
    args += ["--pet-range", "0", str(top)]
    assert main(args) == 0
    capsys.readouterr()
    clipped = read_volume(tmp_path / "clipped.nrrd").array.astype(float)
    saturated = clipped[masks[3.0]].mean(axis=0)
    assert np.linalg.norm(saturated - clipped[masks[2.7]].mean(axis=0)) < 20.0
    assert main([*args[:-2], "5", "1"]) == 2
    assert "LOW < HIGH" in capsys.readouterr().err
