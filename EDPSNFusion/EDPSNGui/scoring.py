"""EDPSN Training's Evaluate job: score a fused volume of the scene against its two sources
(``python -m EDPSNLib.fusion.scoring`` on exported copies) and show the scores."""

import shutil
import tempfile
from pathlib import Path

import slicer

from EDPSNLib.jobs import fuse as fuse_jobs
from EDPSNLib.metrics import table as metrics_table

from .choices import Axis, Modality
from .runner import Step
from .scene_io import exportNodes, setChart, setTable


def takeFusionSources(p, fused):
    """Fill the Evaluate fields from the links EDPSN Fusion recorded on a fused volume."""
    for role in ("mri", "moving", "transform", "regions"):
        if fused.GetNodeReference(f"EDPSN.{role}") is not None:
            p.setValue("eval" + role.capitalize(), fused.GetNodeReference(f"EDPSN.{role}"))
    for key, enumType in (("modality", Modality), ("axis", Axis)):
        if fused.GetAttribute(f"EDPSN.{key}"):
            p.setValue("eval" + key.capitalize(), enumType(fused.GetAttribute(f"EDPSN.{key}")))


def scoreStep(p):
    """Export the chosen volumes; the scoring step, its folder (to remove) and its metrics CSV."""
    if not (p.evalFused and p.evalMri and p.evalMoving):
        raise ValueError("Select the fused volume, its MRI and its CT, PET or SPECT volume.")
    tmp = Path(tempfile.mkdtemp(prefix="EDPSNEvaluate-", dir=slicer.app.temporaryPath))
    files = fuse_jobs.score_files(tmp)
    nodes = {
        "mri": p.evalMri,
        "moving": p.evalMoving,
        "fused": p.evalFused,
        "regions": p.evalRegions,
    }
    try:
        exportNodes(nodes, files)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fused, transform = p.evalFused, p.evalTransform
    colormap = fused.GetAttribute("EDPSN.colormap")
    args = fuse_jobs.score_arguments(
        files,
        p.evalModality.value,
        ct_window=fused.GetAttribute("EDPSN.ctWindow") or "brain",
        colormap=None if colormap in (None, "", "default") else colormap,
        axis=p.evalAxis.value,
        moving_to_mri=slicer.util.arrayFromTransformMatrix(transform, toWorld=True)
        if transform
        else None,
        regions=p.evalRegions is not None,
    )
    step = Step(f"Scoring {fused.GetName()}...", "Scoring", "EDPSNLib.fusion.scoring", args)
    return step, tmp, files["metrics"]


def showScores(p, csv, name):
    """The scores as a table (volume, regions, slices) and a per-slice plot; the end event."""
    try:
        rows = metrics_table.read_metrics_csv(csv)
        setTable(p, "evalTable", rows, f"{name} metrics")
        x, series = metrics_table.slice_series(rows)
        labels = {"x_label": "slice", "y_label": "metric"}
        setChart(p, "evalChart", x, series, f"{name} per slice", **labels)
        slicer.modules.plots.logic().ShowChartInLayout(p.evalChart)
    except Exception as exc:  # report it; never leave the GUI stuck in "running"
        return {"event": "failed", "message": f"The metrics could not be shown: {exc}"}
    return {"event": "results", "message": f"Metrics of {name} computed.", "table": "evalTable"}
