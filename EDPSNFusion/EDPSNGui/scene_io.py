"""Scene in and out for the EDPSN commands: nodes exported to files, results back as nodes.

Input nodes are never modified: they are exported with ``world=True``, which hardens a parent
transform on a temporary copy. The node conversions themselves are EDPSNGui.mrml (tested
against the real MRML classes).
"""

import slicer

from EDPSNGui import mrml
from EDPSNLib.jobs import fuse as fuse_jobs

#: DICOM Modality attribute -> the modality EDPSN uses.
DICOM_MODALITY = {"CT": "CT", "PT": "PET", "NM": "SPECT", "ST": "SPECT"}


def guessModality(node):
    """'CT', 'PET' or 'SPECT' from the DICOM Modality of a volume loaded from DICOM, else None."""
    code = node.GetAttribute("DICOM.Modality") or ""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    if not code and sh:
        code = sh.GetItemAttribute(sh.GetItemByDataNode(node), "DICOM.Modality") or ""
    uids = (node.GetAttribute("DICOM.instanceUIDs") or "").split()
    db = getattr(slicer, "dicomDatabase", None)
    if not code and uids and db is not None and db.isOpen:
        filePath = db.fileForInstance(uids[0])
        code = db.fileValue(filePath, "0008,0060") if filePath else ""
    return DICOM_MODALITY.get(code.strip().upper())


def exportNodes(nodes, files):
    """Write each node of ``{key: node}`` (None skipped) to ``files[key]``, the inputs untouched."""
    for key, node in nodes.items():
        if node is None:
            continue
        # world=True hardens a parent transform on a temporary copy: the input is untouched.
        # A fresh properties dict each call: exportNode stores the file format it picked in
        # its (mutable, shared) default dict, which would force that format on later exports.
        slicer.util.exportNode(node, str(files[key]), properties={}, world=True)
        if not files[key].is_file():
            raise RuntimeError(f"Could not write {node.GetName()} to {files[key]}.")


def importFusionResults(p, done):
    """Add the outputs of ``edpsn fuse`` that were asked for to the scene; record them in ``p``."""
    import SimpleITK as sitk

    from EDPSNLib.fusion.scoring import ijk_to_ras_matrix
    from EDPSNLib.volume.io import read_volume

    def load(key):
        vol = read_volume(done["outputs"][key], validate=False)
        return vol.array, ijk_to_ras_matrix(vol)

    name, nodes = f"{p.movingVolume.GetName()} on {p.mriVolume.GetName()}", {}
    fused = nodes["fused"] = mrml.add_fused_volume(*load("fused"), f"{name} EDPSN fused")
    for key in ("modality", "ctWindow", "colormap", "axis"):  # read back by EDPSN Training
        value = p.getValue(key)
        fused.SetAttribute(f"EDPSN.{key}", getattr(value, "value", value))
    fused.SetNodeReferenceID("EDPSN.mri", p.mriVolume.GetID())
    fused.SetNodeReferenceID("EDPSN.moving", p.movingVolume.GetID())
    if p.createRegions:
        regions = mrml.add_region_labelmap(*load("regions"), f"{name} EDPSN regions")
        nodes["regions"] = p.regionLabelmap = regions
        fused.SetNodeReferenceID("EDPSN.regions", regions.GetID())
    if p.createTransform and done["outputs"].get("transform"):
        itk = sitk.ReadTransform(done["outputs"]["transform"])
        toMri = f"{p.movingVolume.GetName()} to {p.mriVolume.GetName()}"
        transform = mrml.add_transform_node(mrml.transform_matrix_from_sitk(itk), toMri)
        nodes["transform"] = p.transformNode = transform
        fused.SetNodeReferenceID("EDPSN.transform", transform.GetID())
    if p.createMetrics:
        table = mrml.add_metrics_table(fuse_jobs.metric_rows(done), f"{name} EDPSN metrics")
        nodes["metrics"] = p.metricsTable = table
    if p.createFused:
        p.fusedVolume = fused
    else:  # it only carried the links to the other outputs
        slicer.mrmlScene.RemoveNode(nodes.pop("fused"))
    mrml.show_in_slice_views(nodes.get("fused", p.mriVolume))  # the fused volume behind
    showRegions(nodes.get("regions"), p.showRegions, p.regionOpacity)
    slicer.util.resetSliceViews()
    return nodes


def showRegions(labelmap, show, opacity):
    """The region map over every slice view at ``opacity`` (default 0.2: the anatomy and the
    uptake stay visible), or no label layer when ``show`` is off; None leaves the views."""
    if labelmap is not None:
        slicer.util.setSliceViewerLayers(label=labelmap if show else None, labelOpacity=opacity)


def setTable(p, field, rows, name):
    """Metric rows into the table node of parameter ``field`` (created when there is none)."""
    if p.getValue(field):
        mrml.update_metrics_table(p.getValue(field), rows)
    else:
        p.setValue(field, mrml.add_metrics_table(rows, name))


def setChart(p, field, x, series, name, **labels):
    """Plot data into the chart node of parameter ``field`` (created and shown when there is none)."""
    if p.getValue(field):
        mrml.update_plot(p.getValue(field), x, series)
    else:
        p.setValue(field, mrml.add_plot(x, series, name, **labels))
        slicer.modules.plots.logic().ShowChartInLayout(p.getValue(field))


def showTable(table):
    """Switch to a layout with a table view and show ``table`` there."""
    slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView)
    slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(table.GetID())
    slicer.app.applicationLogic().PropagateTableSelection()
