"""The two module files on Slicer's own Python layer (Testing/slicer_harness.py): loading,
parameter nodes (defaults, validation, a .mrml round trip), the .ui bindings, the self-tests."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import slicer_harness as harness

MODULES = {
    "EDPSNFusion": harness.REPO / "EDPSNFusion",
    "EDPSNTraining": harness.REPO / "EDPSNTraining",
}
#: Parameters the module code sets itself (outputs, combo boxes filled by hand): no widget.
SET_BY_CODE = {
    "EDPSNFusion": {"fusedVolume", "metricsTable", "model", "transformNode"},
    "EDPSNTraining": {
        "baseWeights",
        "evalChart",
        "evalTable",
        "lossChart",
        "resultsTable",
        "validationChart",
    },
}


def _bound_parameters(ui_file):
    """{parameter: widget class} of the widgets with a SlicerParameterName in a .ui file."""
    bound = {}
    for widget in ET.parse(ui_file).iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.findtext("string")] = widget.get("class")
    return bound


def test_modules_load_as_slicer_loads_scripted_modules(slicer_harness):
    import slicer

    for name in MODULES:
        parent = getattr(slicer.modules, name.lower())
        instance = getattr(slicer.modules, f"{name}Instance")
        assert type(instance).__name__ == name and instance.moduleName == name
        assert parent.categories == ["Filtering"] and parent.contributors and parent.helpText
        assert parent.icon is not None and not parent.icon.isNull()  # Resources/Icons found
        assert name in slicer.selfTests  # ScriptedLoadableModule registered the self-test
    assert slicer.modules.edpsntraining.dependencies == ["EDPSNFusion"]


@pytest.mark.parametrize("name", MODULES)
def test_every_parameter_the_user_edits_has_a_widget(slicer_harness, name):
    module = slicer_harness.scripted[name]
    params = set(getattr(module, f"{name}ParameterNode").allParameters)
    bound = _bound_parameters(MODULES[name] / "Resources" / "UI" / f"{name}.ui")
    assert set(bound) <= params, f"widgets bound to no parameter: {set(bound) - params}"
    assert params - set(bound) == SET_BY_CODE[name], "a parameter lost its widget"


def test_fusion_parameter_defaults_and_validation(slicer_scene):
    module = slicer_scene.scripted["EDPSNFusion"]
    p = module.EDPSNFusionLogic().getParameterNode()
    assert p.modality == module.Modality.PET and p.registration == module.Registration.RIGID
    assert p.showRegions and p.regionOpacity <= 0.3  # the anatomy stays visible by default
    assert (p.batchSize, p.ctWindow, p.colormap, p.model) == (8, "brain", "default", "")
    assert p.mriVolume is None and p.createFused and p.createRegions
    with pytest.raises(ValueError):
        p.batchSize = 65  # WithinRange(1, 64)
    with pytest.raises(ValueError):
        p.ctWindow = "lung-ish"  # Choice of the CT windows
    with pytest.raises(ValueError):
        p.regionOpacity = 1.5
    with pytest.raises((TypeError, ValueError)):
        p.mriVolume = slicer_scene.scene.AddNewNodeByClass("vtkMRMLTableNode")
    assert p.batchSize == 8 and p.regionOpacity <= 0.3  # a refused value changes nothing


def test_training_parameter_defaults_and_validation(slicer_scene):
    module = slicer_scene.scripted["EDPSNTraining"]
    p = module.EDPSNTrainingLogic().getParameterNode()
    assert p.source == module.DataSource.HARVARD and p.pair == module.Pair.MRI_PET
    assert (p.epochs, p.batchSize, p.crop, p.sceneTestPercent) == (10, 8, 128, 15)
    assert p.weightAverage is False  # the trained weights themselves, as edpsn train
    with pytest.raises(ValueError):
        p.crop = 16  # WithinRange(32, 512)
    with pytest.raises(ValueError):
        p.sceneTestPercent = 80


def test_parameter_node_survives_a_mrml_save_and_reload(slicer_scene, tmp_path):
    import slicer

    module = slicer_scene.scripted["EDPSNFusion"]
    p = module.EDPSNFusionLogic().getParameterNode()
    mri = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "MRI")
    pet = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "PET")
    p.mriVolume, p.movingVolume = mri, pet
    p.modality, p.axis, p.batchSize = module.Modality.SPECT, module.Axis.CORONAL, 3
    p.regionOpacity, p.showRegions, p.colormap = 0.25, False, "hot"
    scene_file = tmp_path / "scene.mrml"
    assert slicer.util.saveScene(str(scene_file))
    slicer_scene.close_scene()
    assert module.EDPSNFusionLogic().getParameterNode().mriVolume is None
    slicer_scene.close_scene()
    slicer.util.loadScene(str(scene_file))  # through the IO manager, as File > Load Scene
    q = module.EDPSNFusionLogic().getParameterNode()
    assert q.mriVolume.GetName() == "MRI" and q.movingVolume.GetName() == "PET"
    assert (q.modality, q.axis, q.batchSize) == (module.Modality.SPECT, module.Axis.CORONAL, 3)
    assert (q.regionOpacity, q.showRegions, q.colormap) == (0.25, False, "hot")


@pytest.mark.parametrize("name", MODULES)
def test_module_self_tests_run_and_pass(slicer_scene, name, monkeypatch, tmp_path):
    """The modules' own ScriptedLoadableModuleTest, as Reload and Test runs it (runTest)."""
    monkeypatch.setenv("EDPSN_MODELS", str(tmp_path / "models"))
    module = slicer_scene.scripted[name]
    case = getattr(module, f"{name}Test")()
    ran = []
    for test_name in [t for t in dir(case) if t.startswith("test_")]:
        original = getattr(case, test_name)

        def recorded(original=original, test_name=test_name):
            ran.append(test_name)
            return original()

        recorded.__name__ = test_name
        setattr(case, test_name, recorded)
    case.runTest()  # a skipped test fails the run (EDPSNTestBase.runTests)
    assert sorted(ran) == sorted(t for t in dir(type(case)) if t.startswith("test_"))


def test_packaging_states_the_minimum_slicer_and_its_screenshot_exists():
    """Slicer 5.10 (Python 3.12) in the README, the .s4ext and CMake; screenshot URLs point
    at files of this repository."""
    raw = "https://raw.githubusercontent.com/edpsn/SlicerEDPSN/main/"
    cmake = (harness.REPO / "CMakeLists.txt").read_text()
    s4ext = (harness.REPO / "EDPSN.s4ext").read_text()
    readme = (harness.REPO / "README.md").read_text()
    assert 'EDPSN_MINIMUM_SLICER_VERSION "5.10"' in cmake and "VERSION_LESS" in cmake
    for text in (cmake, s4ext, readme):
        assert "Slicer 5.10 or later" in text
    urls = [line.split()[1:] for line in s4ext.splitlines() if line.startswith("screenshoturls")]
    assert urls and urls[0]
    for url in urls[0]:
        assert url.startswith(raw) and (harness.REPO / url.removeprefix(raw)).is_file(), url


def test_process_checks_its_options_before_starting(slicer_scene):
    import slicer

    module = slicer_scene.scripted["EDPSNFusion"]
    logic = module.EDPSNFusionLogic()
    mri = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "MRI")
    pet = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "PET")
    with pytest.raises(ValueError, match="Unknown option 'regsitration'"):
        logic.process(mri, pet, "PET", regsitration="none")
    with pytest.raises(ValueError):  # an enum option takes the command's value
        logic.process(mri, pet, "PET", registration="elastic")
    with pytest.raises(ValueError, match="different CT, PET or SPECT"):
        logic.process(mri, mri, "PET", registration="none")
    p = logic.getParameterNode()
    assert p.registration == module.Registration.NONE  # "none" was taken before the refusal
    assert (
        not logic.isRunning() and slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLVolumeNode") == 2
    )


def test_export_hardens_a_parent_transform_on_a_copy(slicer_scene, tmp_path):
    """scene_io.exportNodes through slicer.util.exportNode(world=True): the file is in world
    coordinates, the node keeps its transform and its voxels."""
    import numpy as np
    import SimpleITK as sitk
    import slicer

    from EDPSNGui import mrml, scene_io

    voxels = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    node = slicer.util.addVolumeFromArray(voxels, name="moved")
    shift = np.eye(4)
    shift[:3, 3] = (10.0, -20.0, 30.0)
    mrml.add_transform_node(shift, "shift", apply_to=node)
    files = {"vol": tmp_path / "vol.nrrd"}
    scene_io.exportNodes({"vol": node}, files)
    image = sitk.ReadImage(str(files["vol"]))
    np.testing.assert_allclose(image.GetOrigin(), (-10.0, 20.0, 30.0), atol=1e-6)  # LPS
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), voxels)
    assert node.GetParentTransformNode().GetName() == "shift"
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), voxels)


def test_training_run_folder_starts_over_or_resumes(slicer_scene, tmp_path, monkeypatch):
    """A new run empties its folder (the widget asked first); Resume needs something to resume."""
    from EDPSNGui import training_plan
    from EDPSNLib import paths

    monkeypatch.setenv(paths.USER_MODELS_ENV, str(tmp_path))
    p = slicer_scene.scripted["EDPSNTraining"].EDPSNTrainingLogic().getParameterNode()
    p.outputName = "run-a"
    with pytest.raises(ValueError, match="no checkpoint or data set of 'run-a' to resume"):
        training_plan.runFolder(p, resume=True)
    run = training_plan.runFolder(p)
    (run / "checkpoint.pt").write_bytes(b"old")
    assert training_plan.runFolder(p, resume=True) == run and (run / "checkpoint.pt").is_file()
    assert training_plan.runFolder(p) == run and not any(run.iterdir())
    event = {"epoch": 2, "step": 3, "steps": 10, "loss": 0.012345, "eta_s": 125}
    assert (
        training_plan.stepStatus(event) == "Epoch 2, step 3/10: loss 0.01235, about 2 min 5 s left"
    )
