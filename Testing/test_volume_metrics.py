"""Scoring a fused volume from the scene against its sources, and scene <-> core geometry."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import rotation_matrix
from slicer_wheel import require_slicer_core

from EDPSNLib.color import rgb_to_luma
from EDPSNLib.data import harvard
from EDPSNLib.errors import InputError
from EDPSNLib.fusion.baselines import BASELINES
from EDPSNLib.fusion.normalize import normalize_mri
from EDPSNLib.fusion.pipeline import BACKGROUND_LEVEL, metrics_rows
from EDPSNLib.fusion.scoring import (
    ijk_to_ras_matrix,
    score_fused_volume,
    sitk_transform_from_ras,
    slice_series,
    volume_from_ijk_to_ras,
)
from EDPSNLib.metrics import METRIC_NAMES, fusion_metrics_batch
from EDPSNLib.volume.io import read_volume

N_SLICES = 5


def _matrix(rotation: np.ndarray, spacing, origin) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = rotation @ np.diag(spacing)
    m[:3, 3] = origin
    return m


@pytest.fixture(scope="module")
def case() -> dict:
    """Real MRI + colour PET slices stacked as volumes, fused with a real baseline (max rule)."""
    pairs = harvard.list_pairs("MRI-PET", "test")[:N_SLICES]
    mri, pet = (np.stack(x) for x in zip(*(harvard.load_pair(p) for p in pairs)))
    m01 = normalize_mri(mri)
    f01 = pet.astype(np.float32) / 255.0
    fused = np.stack([BASELINES["max"](a, b) for a, b in zip(m01, f01)])
    fused_u8 = np.clip(np.rint(fused * 255.0), 0, 255).astype(np.uint8)
    # Axial slices: the K axis of the stack must map to the world S (axial) axis.
    grid = _matrix(rotation_matrix(0.0, 0.0, 0.2), (0.9, 0.9, 2.5), (-115.0, 98.0, -30.0))
    return {"mri": mri, "pet": pet, "m01": m01, "f01": f01, "fused": fused_u8, "grid": grid}


def _expected(case: dict) -> dict[str, np.ndarray]:
    """Per-slice metrics straight from the metric functions (background zeroed as edpsn fuse does)."""
    background = (case["m01"] <= BACKGROUND_LEVEL) & (rgb_to_luma(case["f01"]) <= BACKGROUND_LEVEL)
    fused = case["fused"].copy()
    fused[background] = 0
    return fusion_metrics_batch(case["m01"] * 255.0, case["f01"] * 255.0, fused)


def test_geometry_round_trip_matches_what_slicer_reads(tmp_path):
    # A NRRD with an oblique direction, read by the core (SimpleITK, LPS) and by MRML.
    slicer = require_slicer_core()
    image = sitk.GetImageFromArray(np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6))
    image.SetSpacing((0.7, 1.3, 3.0))
    image.SetOrigin((12.5, -40.0, 7.25))
    image.SetDirection(rotation_matrix(0.1, -0.3, 0.4).ravel().tolist())
    path = tmp_path / "oblique.nrrd"
    sitk.WriteImage(image, str(path))
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    slicer_matrix = slicer.util.vtkMatrixFromArray(np.eye(4))
    node.GetIJKToRASMatrix(slicer_matrix)
    core = read_volume(path)
    np.testing.assert_allclose(
        ijk_to_ras_matrix(core), slicer.util.arrayFromVTKMatrix(slicer_matrix), atol=1e-6
    )
    back = volume_from_ijk_to_ras(core.array, ijk_to_ras_matrix(core))
    np.testing.assert_allclose(back.direction, core.direction, atol=1e-9)
    np.testing.assert_allclose(back.spacing, core.spacing) and np.testing.assert_allclose(
        back.origin, core.origin
    )
    np.testing.assert_array_equal(back.array, core.array)


def test_transform_conversion_is_the_inverse_of_the_scene_convention():
    # Slicer's "to parent" M maps moving RAS points onto the MRI; ITK's transform maps back.
    t = _matrix(rotation_matrix(0.2, 0.1, -0.3), (1.0, 1.0, 1.0), (5.0, -3.0, 12.0))
    itk = sitk_transform_from_ras(t)
    p_moving_ras = np.array([10.0, 20.0, -5.0])
    p_fixed_ras = (t @ np.append(p_moving_ras, 1.0))[:3]
    flip = np.array([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(
        np.array(itk.TransformPoint(tuple(p_fixed_ras * flip))) * flip, p_moving_ras, atol=1e-9
    )
    with pytest.raises(InputError):
        sitk_transform_from_ras(np.zeros((4, 4)))


def test_scores_equal_the_metric_functions_on_the_mri_grid(case):
    g = case["grid"]
    result = score_fused_volume((case["mri"], g), (case["pet"], g), (case["fused"], g), "PET")
    expected = _expected(case)
    assert result.tissue.all()
    for k in METRIC_NAMES:
        np.testing.assert_allclose(result.slice_metrics[k], expected[k], rtol=1e-6, err_msg=k)
        assert result.volume_metrics[k] == pytest.approx(float(np.mean(expected[k])), rel=1e-6)
    assert set(result.region_metrics) == {"low", "mid", "high"}
    assert np.unique(result.regions).tolist() == [0, 1, 2, 3]
    x, series = slice_series(result)
    assert x == list(range(N_SLICES)) and series["SSIM"] == pytest.approx(list(expected["SSIM"]))
    scopes = [r["scope"] for r in metrics_rows(result)]
    assert scopes[:4] == ["volume", "region: low", "region: mid", "region: high"]


def test_a_moving_volume_elsewhere_is_brought_back_by_its_transform(case):
    # The PET sits 12 mm off in world space; its registration transform moves it back.
    g = case["grid"]
    shift = np.eye(4)
    shift[:3, 3] = (12.0, -7.0, 5.0)
    moved_grid = shift @ g
    back = np.linalg.inv(shift)
    ref = score_fused_volume((case["mri"], g), (case["pet"], g), (case["fused"], g), "PET")
    res = score_fused_volume(
        (case["mri"], g), (case["pet"], moved_grid), (case["fused"], g), "PET", moving_to_mri=back
    )
    for k in METRIC_NAMES:
        np.testing.assert_allclose(res.slice_metrics[k], ref.slice_metrics[k], rtol=1e-5, err_msg=k)
    # Without the transform the PET is scored where it is: the scores change.
    off = score_fused_volume((case["mri"], g), (case["pet"], moved_grid), (case["fused"], g), "PET")
    assert not np.allclose(off.slice_metrics["SCD"], ref.slice_metrics["SCD"])


def test_a_given_region_labelmap_is_used_as_it_is(case):
    g = case["grid"]
    ref = score_fused_volume((case["mri"], g), (case["pet"], g), (case["fused"], g), "PET")
    same = score_fused_volume(
        (case["mri"], g), (case["pet"], g), (case["fused"], g), "PET", regions=(ref.regions, g)
    )
    np.testing.assert_array_equal(same.regions, ref.regions)
    for name in ("low", "mid", "high"):
        assert same.region_metrics[name] == pytest.approx(ref.region_metrics[name], nan_ok=True)
    # A different labelmap (all tissue "high") changes the region scores.
    flat = np.where(ref.regions > 0, 3, 0).astype(np.uint8)
    other = score_fused_volume(
        (case["mri"], g), (case["pet"], g), (case["fused"], g), "PET", regions=(flat, g)
    )
    assert np.isnan(other.region_metrics["low"]["SSIM"])
    assert other.region_metrics["high"]["SSIM"] != pytest.approx(ref.region_metrics["high"]["SSIM"])


def test_inputs_that_do_not_match_are_refused_with_the_fix(case):
    g = case["grid"]
    off = g.copy()
    off[:3, 3] += 5.0
    with pytest.raises(InputError, match="not on the MRI's voxel grid"):
        score_fused_volume((case["mri"], g), (case["pet"], g), (case["fused"], off), "PET")
    with pytest.raises(InputError, match="grey"):
        score_fused_volume((case["mri"], g), (case["pet"], g), (case["fused"], g), "CT")
    with pytest.raises(InputError, match="not on the MRI's voxel grid"):
        score_fused_volume(
            (case["mri"], g),
            (case["pet"], g),
            (case["fused"], g),
            "PET",
            regions=(np.zeros(case["mri"].shape[:2] + (3,), np.uint8), g),
        )
    with pytest.raises(InputError, match="singular"):
        volume_from_ijk_to_ras(case["mri"], np.zeros((4, 4)))


def test_scoring_a_fusion_output_reproduces_its_own_metrics():
    # What the Evaluate section of EDPSN Training does with a volume EDPSN Fusion made: the
    # moving volume on its own (offset, coarser) grid, the fused one on the MRI's grid.
    from EDPSNLib.data.synthetic import synthetic_mri_pet
    from EDPSNLib.fusion.pipeline import FusionOptions, fuse_volumes

    mri, mri_m, pet, pet_m = synthetic_mri_pet()
    options = FusionOptions("PET", register="none", method="max", device="cpu")
    fusion = fuse_volumes(
        volume_from_ijk_to_ras(mri, mri_m), volume_from_ijk_to_ras(pet, pet_m), options
    )
    scored = score_fused_volume((mri, mri_m), (pet, pet_m), (fusion.fused, mri_m), "PET")
    np.testing.assert_array_equal(scored.tissue, fusion.tissue)
    np.testing.assert_array_equal(scored.regions, fusion.regions)
    for k in METRIC_NAMES:
        assert scored.volume_metrics[k] == pytest.approx(fusion.volume_metrics[k], rel=1e-9), k
        for r in ("low", "mid", "high"):
            assert scored.region_metrics[r][k] == pytest.approx(
                fusion.region_metrics[r][k], rel=1e-9, nan_ok=True
            )


def test_the_scoring_the_module_starts_writes_the_metrics_it_reads_back(tmp_path):
    # EDPSN Training's Evaluate path without Slicer: exported volumes, the same arguments,
    # the same BackgroundProcess; the moving volume is on its own grid and placed by a transform.
    import sys

    from EDPSNLib.data.synthetic import synthetic_mri_pet
    from EDPSNLib.fusion.pipeline import FusionOptions, fuse_volumes
    from EDPSNLib.jobs import fuse as jobs
    from EDPSNLib.jobs.process import BackgroundProcess, child_environment, module_command
    from EDPSNLib.metrics.table import read_metrics_csv
    from EDPSNLib.metrics.table import slice_series as table_slice_series
    from EDPSNLib.paths import repo_root
    from EDPSNLib.volume.io import write_volume

    mri, mri_m, pet, pet_m = synthetic_mri_pet()
    options = FusionOptions("PET", register="none", method="max", device="cpu")
    fusion = fuse_volumes(
        volume_from_ijk_to_ras(mri, mri_m), volume_from_ijk_to_ras(pet, pet_m), options
    )
    shift = np.eye(4)
    shift[:3, 3] = (5.0, -4.0, 2.0)
    files = jobs.score_files(tmp_path)
    for key, (array, matrix) in {
        "mri": (mri, mri_m),
        "moving": (pet, shift @ pet_m),
        "fused": (fusion.fused, mri_m),
    }.items():
        write_volume(volume_from_ijk_to_ras(array, matrix), files[key])
    args = jobs.score_arguments(files, "PET", moving_to_mri=np.linalg.inv(shift), regions=False)
    env = child_environment(pythonpath=[repo_root() / "EDPSNFusion"])
    proc = BackgroundProcess(
        module_command(sys.executable, "EDPSNLib.fusion.scoring", *args), env=env
    )
    assert proc.start().wait(timeout=300) == 0, proc.stderr_tail
    kinds = [e["event"] for e in proc.poll()]
    assert "progress" in kinds and "done" in kinds and kinds[-1] == "exit"
    rows = read_metrics_csv(files["metrics"])
    assert rows[0]["scope"] == "volume"
    for k in METRIC_NAMES:
        assert rows[0][k] == pytest.approx(fusion.volume_metrics[k], abs=2e-6), k
    x, series = table_slice_series(rows)
    assert x == np.flatnonzero(fusion.tissue).tolist()
    np.testing.assert_allclose(series["VIF"], fusion.slice_metrics["VIF"][fusion.tissue], atol=2e-6)
    # A bad input is a clear error with exit code 2, and no CSV is left behind.
    files["metrics"].unlink()
    bad = jobs.score_arguments(files, "CT", regions=False)
    proc = BackgroundProcess(
        module_command(sys.executable, "EDPSNLib.fusion.scoring", *bad), env=env
    )
    assert proc.start().wait(timeout=300) == 2
    assert "edpsn score: error: The fused volume should be a grey" in proc.stderr_tail
    assert not files["metrics"].exists()
