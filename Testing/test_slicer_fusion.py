"""EDPSN Fusion's Logic end to end on the shipped sample, on Slicer's own code
(Testing/slicer_harness.py): EDPSNFusionLogic().process(..., waitForCompletion=True), the
result nodes, the region map inside the body, and the slice views' blended images.

Set EDPSN_WRITE_FIGURES=1 to write the three views to docs/figures/slicer_view*.png.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import slicer_harness as harness

from EDPSNLib.fusion.body_mask import body_mask
from EDPSNLib.fusion.normalize import normalize_mri

SAMPLE = harness.REPO / "Resources" / "Sample"
FIGURES = harness.REPO / "docs" / "figures"


def _array(node):
    import slicer

    return np.array(slicer.util.arrayFromVolume(node), copy=True)


def _ijk_to_ras(node):
    import slicer

    return slicer.util.arrayFromVTKMatrix(_matrix(node.GetIJKToRASMatrix))


def _matrix(getter):
    import vtk

    m = vtk.vtkMatrix4x4()
    getter(m)
    return m


@pytest.fixture(scope="module")
def fused(slicer_harness):
    """The sample fused once through the console call; the scene is kept for the tests."""
    import slicer

    slicer_harness.close_scene()
    mri = slicer.util.loadVolume(str(SAMPLE / "harvard_case25_MRI.nrrd"))
    pet = slicer.util.loadVolume(str(SAMPLE / "harvard_case25_PET.nrrd"))
    before = {n.GetName(): (_array(n), _ijk_to_ras(n), n.GetMTime()) for n in (mri, pet)}
    events = []
    logic = slicer_harness.scripted["EDPSNFusion"].EDPSNFusionLogic()
    nodes = logic.process(
        mri,
        pet,
        "PET",
        registration="none",  # the atlas sample is registered; rigid is covered elsewhere
        axis="coronal",  # the sample's slices
        device="cpu",
        waitForCompletion=True,
        eventCallback=events.append,
    )
    for node in (mri, nodes["fused"]):  # nearest voxel, as numpy samples below
        node.GetDisplayNode().SetInterpolate(0)
    p = logic.getParameterNode()
    yield dict(h=slicer_harness, mri=mri, pet=pet, nodes=nodes, events=events, before=before, p=p)
    if os.environ.get("EDPSN_WRITE_FIGURES"):
        nodes["fused"].GetDisplayNode().SetInterpolate(1)  # the default look
        _write_figures(slicer_harness)


def _write_figures(h):
    """The three views after Apply, one PNG each and side by side (docs/figures)."""
    from PIL import Image

    views = [h.blended_image(view)[..., :3] for view in harness.SLICE_VIEWS]
    for view, image in zip(harness.SLICE_VIEWS, views):
        Image.fromarray(image).save(FIGURES / f"slicer_view_{view}.png")
    gap = np.zeros((views[0].shape[0], 4, 3), np.uint8)
    row = np.concatenate([views[0], gap, views[1], gap, views[2]], axis=1)
    Image.fromarray(row).save(FIGURES / "slicer_views.png")


def test_process_waits_and_returns_the_output_nodes(fused):
    nodes, p, events = fused["nodes"], fused["p"], fused["events"]
    kinds = [e["event"] for e in events]
    assert "results" in kinds and kinds[-1] == "exit" and "failed" not in kinds
    assert sorted(nodes) == ["fused", "metrics", "regions"]  # no transform: "none"
    assert nodes["fused"].IsA("vtkMRMLVectorVolumeNode")
    assert nodes["regions"].IsA("vtkMRMLLabelMapVolumeNode")
    assert nodes["metrics"].IsA("vtkMRMLTableNode")
    assert (p.fusedVolume, p.regionLabelmap, p.metricsTable) == (
        nodes["fused"],
        nodes["regions"],
        nodes["metrics"],
    )
    name = "harvard_case25_PET on harvard_case25_MRI EDPSN"
    assert nodes["fused"].GetName() == f"{name} fused"
    assert nodes["regions"].GetName() == f"{name} regions"
    colors = nodes["regions"].GetDisplayNode().GetColorNode()
    assert colors.GetName() == "EDPSN entropy regions"
    assert [colors.GetColorName(i).split()[0] for i in (1, 2, 3)] == ["low", "mid", "high"]
    assert nodes["metrics"].GetNumberOfRows() >= 4  # volume and three regions, then slices


def test_outputs_lie_on_the_mri_grid_and_inputs_are_unchanged(fused):
    mri, pet, nodes = fused["mri"], fused["pet"], fused["nodes"]
    for key in ("fused", "regions"):
        np.testing.assert_allclose(_ijk_to_ras(nodes[key]), _ijk_to_ras(mri), atol=1e-6)
    assert _array(nodes["fused"]).shape == _array(mri).shape + (3,)
    assert _array(nodes["regions"]).shape == _array(mri).shape
    for node in (mri, pet):
        voxels, matrix, mtime = fused["before"][node.GetName()]
        np.testing.assert_array_equal(_array(node), voxels)
        np.testing.assert_array_equal(_ijk_to_ras(node), matrix)
        assert node.GetParentTransformNode() is None


def test_regions_lie_inside_the_mri_body_mask(fused):
    labels = _array(fused["nodes"]["regions"])
    body = body_mask(normalize_mri(_array(fused["mri"])))
    outside = labels[~body] > 0
    assert outside.mean() <= 0.01, f"{outside.mean():.2%} of the voxels outside the body labelled"
    assert (labels[body] > 0).mean() > 0.5  # the head itself carries regions
    assert set(np.unique(labels)) == {0, 1, 2, 3}


def _expected_view(h, view, layers):
    """Numpy's version of a slice view: each layer sampled at the view's pixels from the nodes'
    own geometry (nearest voxel), window/level or colour table applied, then blended."""
    xy_to_ras = h.xy_to_ras(view)
    w, h_px, _ = h.slice_logics[view].GetSliceNode().GetDimensions()
    ys, xs = np.mgrid[0:h_px, 0:w]
    xy = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size), np.ones(xs.size)])
    ras = xy_to_ras @ xy
    out = np.zeros((h_px * w, 3))
    for node, opacity, to_rgb in layers:
        ijk = np.linalg.inv(_ijk_to_ras(node)) @ ras
        i, j, k = np.floor(ijk[:3] + 0.5).astype(int)  # VTK rounds halves up
        voxels = _array(node)
        inside = (i >= 0) & (j >= 0) & (k >= 0)
        inside &= (i < voxels.shape[2]) & (j < voxels.shape[1]) & (k < voxels.shape[0])
        rgb, alpha = np.zeros((len(i), 3)), np.zeros(len(i))
        rgb[inside], alpha[inside] = to_rgb(voxels[k[inside], j[inside], i[inside]])
        a = (opacity * alpha)[:, None]
        out = out * (1 - a) + rgb * a
    return out.reshape(h_px, w, 3)[::-1]  # row 0 at the top, as blended_image gives it


def _rgb(v):
    """An RGB volume at window 255, level 127.5: its colours as they are."""
    return v.astype(float), np.ones(len(v))


def _window(display):
    lo = display.GetLevel() - display.GetWindow() / 2
    hi = display.GetLevel() + display.GetWindow() / 2

    def to_rgb(v):
        grey = np.clip((v.astype(float) - lo) / (hi - lo), 0, 1) * 255
        return np.repeat(grey[:, None], 3, axis=1), np.ones(len(v))

    return to_rgb


def _labels(colors):
    table = np.array([[*colors.GetLookupTable().GetTableValue(n)] for n in range(4)])

    def to_rgb(v):
        rgba = table[v.astype(int)]
        return rgba[..., :3] * 255, (v > 0) * rgba[..., 3]

    return to_rgb


@pytest.mark.parametrize("view", harness.SLICE_VIEWS)
def test_slice_views_show_what_the_nodes_hold(fused, view):
    h, nodes = fused["h"], fused["nodes"]
    composite = h.slice_logics[view].GetSliceCompositeNode()
    assert composite.GetBackgroundVolumeID() == nodes["fused"].GetID()
    assert composite.GetLabelVolumeID() == nodes["regions"].GetID()
    assert composite.GetLabelOpacity() <= 0.3
    image = h.blended_image(view)
    fused_display = nodes["fused"].GetDisplayNode()
    assert not fused_display.GetAutoWindowLevel()
    assert (fused_display.GetWindow(), fused_display.GetLevel()) == (255, 127.5)
    colors = nodes["regions"].GetDisplayNode().GetColorNode()
    expected = _expected_view(
        h,
        view,
        [
            (nodes["fused"], 1.0, _rgb),
            (nodes["regions"], composite.GetLabelOpacity(), _labels(colors)),
        ],
    )
    diff = np.abs(image[..., :3].astype(float) - expected)
    # Nearest voxel both ways (interpolation off); 8-bit blending rounds by a level or two.
    assert np.median(diff) <= 2 and (diff > 24).mean() < 0.005, (view, np.median(diff))


def test_hiding_the_regions_leaves_the_fused_volume(fused):
    h, nodes = fused["h"], fused["nodes"]
    scene_io = __import__("EDPSNGui.scene_io", fromlist=["showRegions"])
    shown = h.blended_image("Green")
    scene_io.showRegions(nodes["regions"], False, 0.2)
    hidden = h.blended_image("Green")
    scene_io.showRegions(nodes["regions"], True, 0.2)
    assert (
        h.slice_logics["Green"].GetSliceCompositeNode().GetLabelVolumeID()
        == nodes["regions"].GetID()
    )
    changed = np.abs(shown.astype(int) - hidden.astype(int)).max(axis=-1) > 0
    labels_visible = changed.mean()
    assert 0.05 < labels_visible < 0.9  # the overlay covers the head, not the air
    expected = _expected_view(h, "Green", [(nodes["fused"], 1.0, _rgb)])
    assert np.median(np.abs(hidden[..., :3] - expected)) <= 2


def test_window_level_of_a_grey_volume_in_the_view(fused):
    """The MRI alone in the background with a chosen window/level, against numpy."""
    import slicer

    h, mri = fused["h"], fused["mri"]
    display = mri.GetDisplayNode()
    display.AutoWindowLevelOff()
    display.SetWindowLevel(120, 90)
    slicer.util.setSliceViewerLayers(background=mri, label=None)
    try:
        image = h.blended_image("Red")
        expected = _expected_view(h, "Red", [(mri, 1.0, _window(display))])
        diff = np.abs(image[..., :3].astype(float) - expected)
        assert np.median(diff) <= 2 and (diff > 24).mean() < 0.005
    finally:
        slicer.util.setSliceViewerLayers(
            background=fused["nodes"]["fused"], label=fused["nodes"]["regions"]
        )
