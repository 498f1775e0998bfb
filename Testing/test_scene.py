"""The MRML scene adapter against the real MRML classes of the slicer-core wheel."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import rotation_matrix
from slicer_wheel import require_slicer_core

slicer = require_slicer_core()

import SimpleITK as sitk  # noqa: E402

from EDPSNGui import mrml as scene  # noqa: E402
from EDPSNLib.data import harvard  # noqa: E402
from EDPSNLib.errors import InputError  # noqa: E402

N_SLICES = 6
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


@pytest.fixture
def mrml():
    """A fresh MRML scene as ``slicer.mrmlScene`` (what slicer.util and the adapter use)."""
    slicer.mrmlScene = slicer.vtkMRMLScene()
    yield slicer.mrmlScene
    slicer.mrmlScene.Clear(1)


@pytest.fixture(scope="module")
def harvard_stack() -> tuple[np.ndarray, np.ndarray]:
    """Real MRI (K, J, I) and colour PET (K, J, I, 3) uint8 slices stacked as volumes."""
    pairs = harvard.list_pairs("MRI-PET", "test")[:N_SLICES]
    loaded = [harvard.load_pair(p) for p in pairs]
    return np.stack([m for m, _ in loaded]), np.stack([f for _, f in loaded])


@pytest.fixture
def oblique() -> np.ndarray:
    """An oblique, anisotropic IJK-to-RAS matrix with an off-centre origin."""
    m = np.eye(4)
    m[:3, :3] = rotation_matrix(0.3, -0.2, 0.5) @ np.diag([0.9, 1.1, 3.2])
    m[:3, 3] = (-101.5, 87.25, -42.0)
    return m


def _region_labels(mri: np.ndarray) -> np.ndarray:
    """Four classes from the real MRI's intensity terciles (0 where there is no tissue)."""
    tissue = mri > 0
    cuts = np.percentile(mri[tissue], [33.3, 66.7])
    return np.where(tissue, 1 + np.digitize(mri, cuts), 0).astype(np.uint8)


def test_rgb_round_trip_keeps_voxels_geometry_and_inputs(mrml, harvard_stack, oblique):
    _, pet = harvard_stack
    pet_before, m_before = pet.copy(), oblique.copy()
    node = scene.add_fused_volume(pet, oblique, "fused")
    assert node.IsA("vtkMRMLVectorVolumeNode")
    display = node.GetDisplayNode()
    assert not display.GetAutoWindowLevel()
    assert (display.GetWindow(), display.GetLevel()) == (255.0, 127.5)
    array, ijk_to_ras = scene.volume_to_array(node)
    assert array.shape == pet.shape and array.dtype == np.uint8
    np.testing.assert_array_equal(array, pet)
    np.testing.assert_allclose(ijk_to_ras, oblique, atol=1e-9)
    np.testing.assert_array_equal(pet, pet_before)
    np.testing.assert_array_equal(oblique, m_before)
    array[:] = 0  # a copy: the node's voxels must not change
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), pet)


def test_grey_fused_volume_is_scalar(mrml, harvard_stack, oblique):
    mri, _ = harvard_stack
    node = scene.add_fused_volume(mri, oblique, "fused grey")
    assert node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode")
    assert node.GetDisplayNode().GetWindow() == 255.0
    np.testing.assert_array_equal(scene.volume_to_array(node)[0], mri)


@pytest.mark.parametrize(
    "array, matrix",
    [
        (np.zeros((2, 3, 4), np.float32), np.eye(4)),
        (np.zeros((2, 3, 4, 4), np.uint8), np.eye(4)),
        (np.zeros((3, 4), np.uint8), np.eye(4)),
        (np.zeros((2, 3, 4), np.uint8), np.diag([1.0, 0.0, 1.0, 1.0])),
        (np.zeros((2, 3, 4), np.uint8), np.eye(3)),
    ],
)
def test_bad_fused_input_is_refused_without_adding_nodes(mrml, array, matrix):
    before = mrml.GetNumberOfNodes()
    with pytest.raises(InputError):
        scene.add_fused_volume(array, matrix, "bad")
    assert mrml.GetNumberOfNodes() == before


def test_region_labelmap_colours_names_and_shared_table(mrml, harvard_stack, oblique):
    labels = _region_labels(harvard_stack[0])
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    node = scene.add_region_labelmap(labels, oblique, "regions")
    assert node.IsA("vtkMRMLLabelMapVolumeNode")
    array, ijk_to_ras = scene.volume_to_array(node)
    np.testing.assert_array_equal(array, labels)
    np.testing.assert_allclose(ijk_to_ras, oblique, atol=1e-9)
    table = node.GetDisplayNode().GetColorNode()
    assert table.GetName() == scene.REGION_COLOR_TABLE_NAME
    assert table.GetNumberOfColors() == len(scene.REGION_LABELS)
    for value, (name, rgba) in enumerate(scene.REGION_LABELS):
        assert table.GetColorName(value) == name
        got = [0.0] * 4
        table.GetColor(value, got)
        np.testing.assert_allclose(np.array(got) * 255.0, rgba, atol=1e-6)
    assert (
        table.GetColorName(1) == "low information" and table.GetColorName(3) == "high information"
    )
    other = scene.add_region_labelmap(labels[:2], oblique, "regions 2")
    assert other.GetDisplayNode().GetColorNodeID() == table.GetID()
    assert len(slicer.util.getNodesByClass("vtkMRMLColorTableNode")) == 1


@pytest.mark.parametrize("bad", [np.full((2, 3, 4), 4, np.uint8), np.zeros((2, 3, 4), np.float32)])
def test_bad_region_labels_are_refused(mrml, bad):
    with pytest.raises(InputError):
        scene.add_region_labelmap(bad, np.eye(4), "bad")


def test_labelmap_to_segmentation_keeps_names_and_voxels(mrml, harvard_stack, oblique):
    labels = _region_labels(harvard_stack[0][:2])
    labelmap = scene.add_region_labelmap(labels, oblique, "regions")
    segmentation = scene.convert_labelmap_to_segmentation(labelmap)
    seg = segmentation.GetSegmentation()
    names = [seg.GetNthSegment(i).GetName() for i in range(seg.GetNumberOfSegments())]
    assert names == [name for name, _ in scene.REGION_LABELS[1:]]
    # Exported back on the labelmap's grid, segments in order take values 1, 2, 3 again.
    ids = [seg.GetNthSegmentID(i) for i in range(seg.GetNumberOfSegments())]
    out = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "exported")
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    assert logic.ExportSegmentsToLabelmapNode(segmentation, ids, out, labelmap)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(out), labels)


def test_metrics_table_holds_the_rows(mrml, harvard_stack):
    mri, pet = harvard_stack
    luma = pet.astype(np.float64) @ np.array([0.299, 0.587, 0.114])

    def entropy(img: np.ndarray) -> float:
        p = np.bincount(np.clip(img, 0, 255).astype(np.int64).ravel(), minlength=256) / img.size
        return float(-(p[p > 0] * np.log2(p[p > 0])).sum())

    rows = [{"scope": "volume", "EN": entropy(mri), "SD": float(mri.std())}]
    rows += [
        {
            "scope": f"slice {k}",
            "SD": float(luma[k].std()),
            "EN": entropy(luma[k]),
            "note": float(k),
        }
        for k in range(N_SLICES)
    ]
    rows_before = [dict(r) for r in rows]
    table = scene.add_metrics_table(rows, "EDPSN metrics")
    assert table.IsA("vtkMRMLTableNode")
    columns = [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())]
    assert columns == ["scope", "EN", "SD", "note"]  # canonical metric order, then the others
    assert table.GetNumberOfRows() == len(rows)
    assert [table.GetCellText(i, 0) for i in range(len(rows))] == [r["scope"] for r in rows]
    for column in ("EN", "SD", "note"):
        got = slicer.util.arrayFromTableColumn(table, column)
        np.testing.assert_array_equal(got, [r.get(column, np.nan) for r in rows])
    assert rows == rows_before
    scene.update_metrics_table(table, rows[:1])
    assert table.GetNumberOfRows() == 1 and table.GetNumberOfColumns() == 3


def test_metrics_table_refuses_rows_without_scope(mrml):
    before = mrml.GetNumberOfNodes()
    with pytest.raises(InputError):
        scene.add_metrics_table([{"EN": 1.0}], "bad")
    with pytest.raises(InputError):
        scene.add_metrics_table([{"scope": "volume", "EN": "high"}], "bad")
    assert mrml.GetNumberOfNodes() == before


def _lps_image(array: np.ndarray, matrix_lps: np.ndarray) -> sitk.Image:
    """A SimpleITK image (array (K, J, I)) with the geometry of an LPS IJK-to-physical matrix."""
    image = sitk.GetImageFromArray(array)
    spacing = np.linalg.norm(matrix_lps[:3, :3], axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetDirection((matrix_lps[:3, :3] / spacing).ravel().tolist())
    image.SetOrigin(matrix_lps[:3, 3].tolist())
    return image


@pytest.mark.parametrize("kind", ["euler", "affine", "composite"])
def test_transform_node_moves_the_moving_volume_onto_the_fixed_one(
    mrml, harvard_stack, oblique, kind
):
    euler = sitk.Euler3DTransform((12.0, -30.0, 5.0), 0.15, -0.1, 0.35, (8.0, -4.0, 11.0))
    if kind == "euler":
        tfm = euler
    elif kind == "affine":
        tfm = sitk.AffineTransform(3)
        tfm.SetMatrix((1.05, 0.1, 0.0, -0.05, 0.95, 0.08, 0.02, 0.0, 1.1))
        tfm.SetTranslation((3.0, -7.0, 2.5))
        tfm.SetCenter((10.0, 20.0, -5.0))
    else:
        tfm = sitk.CompositeTransform([euler, sitk.TranslationTransform(3, (1.5, 2.0, -3.0))])
    matrix = scene.transform_matrix_from_sitk(tfm)

    # Numeric check: a moving point (RAS) goes to the fixed point it came from.
    rng = np.random.default_rng(0)
    fixed_lps = rng.uniform(-150, 150, (20, 3))
    moving_lps = np.array([tfm.TransformPoint(tuple(p)) for p in fixed_lps])
    to_ras = LPS[:3, :3]
    fixed_ras, moving_ras = fixed_lps @ to_ras, moving_lps @ to_ras
    np.testing.assert_allclose(moving_ras @ matrix[:3, :3].T + matrix[:3, 3], fixed_ras, atol=1e-9)

    # Real images: a moving volume built so that T maps the fixed grid onto it; SimpleITK
    # resampling with T gives the fixed image back, and in MRML the transform node puts the
    # moving volume's grid exactly on the fixed grid.
    mri = harvard_stack[0]
    fixed_ijk_lps = LPS @ oblique
    a = np.eye(4)
    a[:3, :3] = (
        np.array([tfm.TransformPoint(tuple(e)) for e in np.eye(3)]).T
        - np.array(tfm.TransformPoint((0.0, 0.0, 0.0)))[:, None]
    )
    a[:3, 3] = tfm.TransformPoint((0.0, 0.0, 0.0))
    moving_ijk_lps = a @ fixed_ijk_lps
    if kind != "affine":  # SimpleITK images need orthonormal directions
        fixed_img, moving_img = _lps_image(mri, fixed_ijk_lps), _lps_image(mri, moving_ijk_lps)
        resampled = sitk.Resample(moving_img, fixed_img, tfm, sitk.sitkNearestNeighbor, 0)
        inner = (slice(None), slice(2, -2), slice(2, -2))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(resampled)[inner], mri[inner])

    moving_node = scene.add_fused_volume(mri, LPS @ moving_ijk_lps, "moving")
    node = scene.add_transform_node(matrix, "moving to MRI", apply_to=moving_node)
    np.testing.assert_allclose(slicer.util.arrayFromTransformMatrix(node), matrix, atol=1e-12)
    assert moving_node.GetParentTransformNode().GetID() == node.GetID()
    mapped = [node.GetTransformToParent().TransformPoint(tuple(p)) for p in moving_ras]
    np.testing.assert_allclose(mapped, fixed_ras, atol=1e-6)
    _, world = scene.volume_to_array(moving_node)
    np.testing.assert_allclose(world, oblique, atol=1e-6)
    np.testing.assert_allclose(
        scene.volume_to_array(moving_node, world=False)[1], LPS @ moving_ijk_lps, atol=1e-9
    )


def test_nonlinear_transforms_are_refused(mrml, harvard_stack):
    bspline = sitk.BSplineTransformInitializer(sitk.Image(16, 16, 16, sitk.sitkFloat32), [3, 3, 3])
    params = np.array(bspline.GetParameters())
    params[::7] = 4.0
    bspline.SetParameters(params.tolist())
    with pytest.raises(InputError, match="not linear"):
        scene.transform_matrix_from_sitk(bspline)
    with pytest.raises(InputError):
        scene.transform_matrix_from_sitk(np.eye(4))
    node = scene.add_fused_volume(harvard_stack[0][:1], np.eye(4), "under grid")
    grid = mrml.AddNewNodeByClass("vtkMRMLGridTransformNode", "grid")
    node.SetAndObserveTransformNodeID(grid.GetID())
    with pytest.raises(InputError, match="harden"):
        scene.volume_to_array(node)


def test_plot_series_values_and_live_update(mrml, harvard_stack):
    mri = harvard_stack[0].astype(np.float64)
    epochs = list(range(1, N_SLICES + 1))
    series = {
        "mean": [float(v) for v in mri.mean(axis=(1, 2))],
        "std": [float(v) for v in mri.std(axis=(1, 2))],
    }
    series_before = {k: list(v) for k, v in series.items()}
    chart = scene.add_plot(epochs, series, "EDPSN training", x_label="epoch", y_label="intensity")
    assert chart.IsA("vtkMRMLPlotChartNode")
    assert chart.GetXAxisTitle() == "epoch" and chart.GetYAxisTitle() == "intensity"
    assert chart.GetNumberOfPlotSeriesNodes() == 2
    table = chart.GetNthPlotSeriesNode(0).GetTableNode()
    for i, name in enumerate(series):
        node = chart.GetNthPlotSeriesNode(i)
        assert node.GetName() == name and node.GetXColumnName() == "epoch"
        np.testing.assert_array_equal(
            slicer.util.arrayFromTableColumn(table, node.GetYColumnName()), series[name]
        )
    colors = {tuple(chart.GetNthPlotSeriesNode(i).GetColor()) for i in range(2)}
    assert len(colors) == 2
    assert series == series_before

    grown = {k: [*v, v[-1]] for k, v in series.items()} | {
        "max": [float(v) for v in mri.max(axis=(1, 2))] + [0.0]
    }
    scene.update_plot(chart, [*epochs, N_SLICES + 1], grown)
    assert chart.GetNumberOfPlotSeriesNodes() == 3
    assert table.GetNumberOfRows() == N_SLICES + 1
    np.testing.assert_array_equal(slicer.util.arrayFromTableColumn(table, "max"), grown["max"])
    np.testing.assert_array_equal(
        slicer.util.arrayFromTableColumn(table, "epoch"), [*epochs, N_SLICES + 1]
    )
    with pytest.raises(InputError):
        scene.update_plot(chart, epochs, {"mean": [1.0]})


def test_show_in_slice_views_sets_every_composite_node(mrml, harvard_stack, oblique):
    mri, pet = harvard_stack
    composites = [mrml.AddNewNodeByClass("vtkMRMLSliceCompositeNode") for _ in range(3)]
    background = scene.add_fused_volume(mri, oblique, "mri")
    foreground = scene.add_fused_volume(pet, oblique, "fused")
    label = scene.add_region_labelmap(_region_labels(mri), oblique, "regions")
    scene.show_in_slice_views(
        background, foreground, label, foreground_opacity=0.6, label_opacity=0.35
    )
    for c in composites:
        assert c.GetBackgroundVolumeID() == background.GetID()
        assert c.GetForegroundVolumeID() == foreground.GetID()
        assert c.GetLabelVolumeID() == label.GetID()
        assert c.GetForegroundOpacity() == pytest.approx(0.6)
        assert c.GetLabelOpacity() == pytest.approx(0.35)
    scene.show_in_slice_views(label=None, foreground=background)  # None keeps a layer
    assert all(c.GetLabelVolumeID() == label.GetID() for c in composites)
    assert all(c.GetForegroundVolumeID() == background.GetID() for c in composites)
