"""The single scene adapter: MRML nodes <-> numpy arrays with a 4x4 IJK-to-RAS matrix.

Only this file of the core talks to Slicer, and only through ``slicer`` MRML classes and
``slicer.util`` (never ``qt`` or ``slicer.app``), so it runs and is tested with the
``slicer-core`` wheel as well as inside the Slicer application.

Volumes are numpy arrays indexed (K, J, I) for grey and (K, J, I, 3) for RGB, as
``slicer.util.arrayFromVolume`` gives them, with a 4x4 IJK-to-RAS matrix.

Transform convention: a SimpleITK registration transform ``T`` works in LPS and maps
points of the fixed image (MRI) to the moving image (``p_moving = T(p_fixed)``: the
resampling direction). A Slicer linear transform node set as the parent of the moving
volume must move that volume onto the MRI, so its "to parent" matrix is the RAS form of
``T`` inverted: ``M = F @ inv(A) @ F`` with ``A`` the 4x4 LPS matrix of ``T`` and
``F = diag(-1, -1, 1, 1)``. Hence ``M @ p_moving_ras == p_fixed_ras``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import slicer
import slicer.util

from EDPSNLib.errors import InputError
from EDPSNLib.fusion.montage import REGION_COLORS

#: Label value -> (name, 8-bit RGBA) of the entropy region map; 0 is transparent background.
#: (8-bit because MRML colour tables store colours at that precision.)
REGION_LABELS = REGION_COLORS  # the montage and the slice views show the same colours
REGION_COLOR_TABLE_NAME = "EDPSN entropy regions"
#: Column order of metric tables; keys not listed here follow in first-seen order.
METRIC_COLUMNS = ("EN", "SD", "SCD", "Qabf", "VIF", "PSNR", "SSIM")
SCOPE_COLUMN = "scope"
#: Line colours of plot series, in order (a fixed palette: the scene may lack Slicer's random colours).
PLOT_COLORS = (
    (0.12, 0.47, 0.71),
    (1.00, 0.50, 0.05),
    (0.17, 0.63, 0.17),
    (0.84, 0.15, 0.16),
    (0.58, 0.40, 0.74),
    (0.55, 0.34, 0.29),
    (0.89, 0.47, 0.76),
    (0.50, 0.50, 0.50),
)
#: RAS <-> LPS flip (its own inverse).
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


# --------------------------------------------------------------------------- geometry
def _check_matrix(matrix: Any, what: str) -> np.ndarray:
    """A finite, invertible 4x4 homogeneous matrix as a new float64 array."""
    m = np.array(matrix, dtype=np.float64)
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise InputError(f"{what} must be a finite 4x4 matrix, got shape {m.shape}.")
    if not np.allclose(m[3], (0.0, 0.0, 0.0, 1.0)):
        raise InputError(f"{what} must have [0, 0, 0, 1] as its last row, got {m[3].tolist()}.")
    if abs(np.linalg.det(m[:3, :3])) < 1e-12:
        raise InputError(f"{what} is singular (zero spacing or degenerate directions).")
    return m


def _vtk_to_array(getter) -> np.ndarray:
    """Call ``getter(vtkMatrix4x4)`` and return the filled matrix as numpy."""
    vm = slicer.util.vtkMatrixFromArray(np.eye(4))
    getter(vm)
    return slicer.util.arrayFromVTKMatrix(vm)


def ras_moving_to_fixed_from_lps(fixed_to_moving_lps: np.ndarray) -> np.ndarray:
    """RAS moving->fixed matrix (Slicer "to parent") from an LPS fixed->moving (ITK) matrix."""
    a = _check_matrix(fixed_to_moving_lps, "The ITK (LPS) transform matrix")
    return _LPS_TO_RAS @ np.linalg.inv(a) @ _LPS_TO_RAS


def transform_matrix_from_sitk(transform: Any) -> np.ndarray:
    """4x4 RAS moving->fixed matrix of a linear SimpleITK/ITK transform (fixed->moving, LPS).

    The transform is sampled at four points, so any linear transform (Euler, versor,
    similarity, affine, or a composite of them) works; a non-linear one is refused.
    """
    probes = np.vstack([np.zeros(3), np.eye(3) * 100.0])
    try:
        mapped = np.array([transform.TransformPoint(tuple(map(float, p))) for p in probes])
    except (AttributeError, TypeError, RuntimeError) as exc:
        raise InputError(
            f"Expected a SimpleITK transform, got {type(transform).__name__}."
        ) from exc
    a = np.eye(4)
    a[:3, :3] = (mapped[1:] - mapped[0]).T / 100.0
    a[:3, 3] = mapped[0]
    check = np.array([37.0, -81.0, 53.0])
    if not np.allclose(
        transform.TransformPoint(tuple(check)), a[:3, :3] @ check + a[:3, 3], atol=1e-6
    ):
        raise InputError(
            "The transform is not linear; only rigid, similarity or affine transforms can be "
            "put in a linear transform node. Resample the moving volume instead."
        )
    return ras_moving_to_fixed_from_lps(a)


# --------------------------------------------------------------------------- volumes
def volume_to_array(node: Any, world: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Copy of a volume node's voxels (K, J, I[, C]) and its 4x4 IJK-to-RAS matrix.

    With ``world`` the matrix includes a linear parent transform, so the geometry is the
    one the user sees; a non-linear parent transform must be hardened first.
    """
    if node is None or not node.IsA("vtkMRMLVolumeNode") or node.GetImageData() is None:
        raise InputError("Select a volume that holds image data.")
    array = np.array(slicer.util.arrayFromVolume(node), copy=True)
    ijk_to_ras = _vtk_to_array(node.GetIJKToRASMatrix)
    parent = node.GetParentTransformNode()
    if world and parent is not None:
        if not parent.IsTransformToWorldLinear():
            raise InputError(
                f"Volume '{node.GetName()}' is under a non-linear transform: harden the "
                "transform (Data module, right-click, Harden transform) and try again."
            )
        ijk_to_ras = _vtk_to_array(parent.GetMatrixTransformToWorld) @ ijk_to_ras
    return array, ijk_to_ras


def _add_volume(array: np.ndarray, ijk_to_ras: np.ndarray, name: str, class_name: str) -> Any:
    node = slicer.mrmlScene.AddNewNodeByClass(class_name, name)
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijk_to_ras))
    slicer.util.updateVolumeFromArray(node, array)  # deep copy: the caller's array is untouched
    return node


def add_fused_volume(array: np.ndarray, ijk_to_ras: np.ndarray, name: str) -> Any:
    """Add a uint8 fused volume: (K, J, I, 3) -> RGB vector volume, (K, J, I) -> scalar volume.

    Window/level is fixed to 0..255 with auto window/level off, so colours are not stretched.
    """
    a = np.asarray(array)
    if a.dtype != np.uint8:
        raise InputError(f"Fused volumes must be uint8 (0..255), got {a.dtype}; convert first.")
    if not (a.ndim == 3 or (a.ndim == 4 and a.shape[3] == 3)) or 0 in a.shape:
        raise InputError(f"Fused volume shape must be (K, J, I) or (K, J, I, 3), got {a.shape}.")
    m = _check_matrix(ijk_to_ras, "IJK-to-RAS")
    rgb = a.ndim == 4
    node = _add_volume(a, m, name, "vtkMRMLVectorVolumeNode" if rgb else "vtkMRMLScalarVolumeNode")
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 255.0)
    return node


def region_color_table(name: str = REGION_COLOR_TABLE_NAME) -> Any:
    """The scene's entropy-region colour table (created once, reused and reset afterwards)."""
    table = slicer.mrmlScene.GetFirstNodeByName(name)
    if table is None or not table.IsA("vtkMRMLColorTableNode"):
        table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLColorTableNode", name)
    table.SetTypeToUser()
    table.SetNumberOfColors(len(REGION_LABELS))
    for value, (label, rgba) in enumerate(REGION_LABELS):
        table.SetColor(value, label, *(c / 255.0 for c in rgba))
    return table


def add_region_labelmap(labels: np.ndarray, ijk_to_ras: np.ndarray, name: str) -> Any:
    """Add a (K, J, I) region map (0 background, 1 low, 2 mid, 3 high) as a labelmap volume."""
    lab = np.asarray(labels)
    if lab.ndim != 3 or 0 in lab.shape or not np.issubdtype(lab.dtype, np.integer):
        raise InputError(
            f"Region labels must be a (K, J, I) integer array, got {lab.shape} {lab.dtype}."
        )
    if lab.min() < 0 or lab.max() >= len(REGION_LABELS):
        raise InputError(f"Region labels must lie in 0..{len(REGION_LABELS) - 1}.")
    m = _check_matrix(ijk_to_ras, "IJK-to-RAS")
    node = _add_volume(lab.astype(np.uint8), m, name, "vtkMRMLLabelMapVolumeNode")
    # Own display node with the colour table set first: the default one would look for
    # Slicer's generic label colours, which a bare MRML scene does not have.
    display = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeDisplayNode")
    display.SetAndObserveColorNodeID(region_color_table().GetID())
    node.SetAndObserveDisplayNodeID(display.GetID())
    return node


def convert_labelmap_to_segmentation(labelmap: Any, name: str | None = None) -> Any:
    """A segmentation node with one segment per label present, named from the colour table."""
    segmentation = slicer.mrmlScene.AddNewNodeByClass(
        "vtkMRMLSegmentationNode", name or f"{labelmap.GetName()} segmentation"
    )
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(labelmap)
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    if not logic.ImportLabelmapToSegmentationNode(labelmap, segmentation):
        slicer.mrmlScene.RemoveNode(segmentation)
        raise InputError(f"Could not convert '{labelmap.GetName()}' to a segmentation.")
    return segmentation


def show_in_slice_views(
    background: Any = None,
    foreground: Any = None,
    label: Any = None,
    foreground_opacity: float | None = None,
    label_opacity: float | None = None,
) -> None:
    """Set the layers of every slice view (``None`` keeps a layer); fitting is left to the GUI."""
    keep = "keep-current"
    slicer.util.setSliceViewerLayers(
        background=keep if background is None else background,
        foreground=keep if foreground is None else foreground,
        label=keep if label is None else label,
        foregroundOpacity=foreground_opacity,
        labelOpacity=label_opacity,
    )


# --------------------------------------------------------------------------- transforms
def add_transform_node(matrix: np.ndarray, name: str, apply_to: Any = None) -> Any:
    """Add a linear transform node whose "to parent" matrix is ``matrix`` (RAS moving->fixed).

    ``apply_to`` (a transformable node, e.g. the moving volume) is placed under it.
    """
    m = _check_matrix(matrix, "The transform matrix")
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    slicer.util.updateTransformMatrixFromArray(node, m)
    if apply_to is not None:
        apply_to.SetAndObserveTransformNodeID(node.GetID())
    return node


# --------------------------------------------------------------------------- tables
def _metric_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    seen = [k for row in rows for k in row if k != SCOPE_COLUMN]
    extra = list(dict.fromkeys(k for k in seen if k not in METRIC_COLUMNS))
    return [k for k in METRIC_COLUMNS if k in seen] + extra


def update_metrics_table(table: Any, rows: Sequence[Mapping[str, Any]]) -> Any:
    """Refill a table node: a text ``scope`` column, then one float column per metric.

    Each row is a dict such as ``{"scope": "slice 12", "EN": 6.1, ...}``; a missing value
    is stored as NaN.
    """
    if not rows or any(SCOPE_COLUMN not in row for row in rows):
        raise InputError(
            f"Metric rows must be a non-empty list of dicts with a '{SCOPE_COLUMN}' key."
        )
    columns = _metric_columns(rows)
    try:
        values = np.array(
            [[float(row.get(k, np.nan)) for k in columns] for row in rows], np.float64
        )
    except (TypeError, ValueError) as exc:
        raise InputError(f"Metric values must be numbers: {exc}") from exc
    was_modifying = table.StartModify()
    table.RemoveAllColumns()
    scope = table.AddColumn()
    scope.SetName(SCOPE_COLUMN)
    double = slicer.vtkMRMLTableNode.GetValueTypeFromString("double")
    for column in columns:
        table.AddColumn().SetName(column)
        table.SetColumnType(column, double)
    vtk_table = table.GetTable()
    vtk_table.SetNumberOfRows(len(rows))
    for i, row in enumerate(rows):
        scope.SetValue(i, str(row[SCOPE_COLUMN]))
    for j, column in enumerate(columns):
        slicer.util.arrayFromTableColumn(table, column)[:] = values[:, j]
    table.EndModify(was_modifying)
    table.Modified()
    return table


def add_metrics_table(rows: Sequence[Mapping[str, Any]], name: str) -> Any:
    """Add a table node of fusion metrics, one row per scope (volume, region, slice)."""
    table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", name)
    try:
        return update_metrics_table(table, rows)
    except InputError:
        slicer.mrmlScene.RemoveNode(table)
        raise


# --------------------------------------------------------------------------- plots
def _plot_columns(
    x: Iterable[float], series: Mapping[str, Iterable[float]], x_label: str
) -> tuple[list[np.ndarray], list[str]]:
    xs = np.array(list(x), dtype=np.float64)
    ys = [np.array(list(v), dtype=np.float64) for v in series.values()]
    names = list(series)
    if not names or x_label in names or any(len(y) != len(xs) for y in ys):
        raise InputError(
            "A plot needs at least one series, each as long as x, and no series named like the x axis."
        )
    return [xs, *ys], [x_label, *names]


def add_plot(
    x: Iterable[float],
    series: Mapping[str, Iterable[float]],
    name: str,
    x_label: str = "epoch",
    y_label: str = "value",
) -> Any:
    """Add a line chart (plot chart node + one plot series node per series + backing table)."""
    columns, names = _plot_columns(x, series, x_label)
    table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", f"{name} table")
    slicer.util.updateTableFromArray(table, columns, names)
    chart = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    chart.SetTitle(name)
    chart.SetXAxisTitle(x_label)
    chart.SetYAxisTitle(y_label)
    for series_name in names[1:]:
        _add_series(chart, table, x_label, series_name)
    return chart


def _add_series(chart: Any, table: Any, x_label: str, series_name: str) -> Any:
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", series_name)
    node.SetAndObserveTableNodeID(table.GetID())
    node.SetXColumnName(x_label)
    node.SetYColumnName(series_name)
    node.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
    node.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
    node.SetColor(*PLOT_COLORS[chart.GetNumberOfPlotSeriesNodes() % len(PLOT_COLORS)])
    chart.AddAndObservePlotSeriesNodeID(node.GetID())
    return node


def update_plot(chart: Any, x: Iterable[float], series: Mapping[str, Iterable[float]]) -> None:
    """Replace a chart's data (for live training curves); new series names get new lines.

    The x axis keeps its column name; a series left out of ``series`` shows no points.
    """
    if chart.GetNumberOfPlotSeriesNodes() == 0:
        raise InputError("This chart has no series; create it with add_plot.")
    first = chart.GetNthPlotSeriesNode(0)
    table, x_label = first.GetTableNode(), first.GetXColumnName()
    columns, names = _plot_columns(x, series, x_label)
    existing = {
        chart.GetNthPlotSeriesNode(i).GetYColumnName()
        for i in range(chart.GetNumberOfPlotSeriesNodes())
    }
    slicer.util.updateTableFromArray(table, columns, names)
    for series_name in names[1:]:
        if series_name not in existing:
            _add_series(chart, table, x_label, series_name)
