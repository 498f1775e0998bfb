"""GUI helpers shared by the EDPSN Fusion and EDPSN Training modules (needs Slicer).

This is the GUI layer: it may import qt, slicer, vtk, EDPSNGui.mrml and the rest of EDPSNLib;
EDPSNLib never imports it. It is a package, not loose .py files beside the module files,
because Slicer takes every top-level .py file of a module folder for a module.

- ``advice``: a failed command's message with the options it advises named as the module does;
- ``choices``: the enums of the parameter nodes;
- ``module_base``: the widget and logic base classes (the .ui, parameter node binding, log);
- ``python_setup``: torch through the PyTorch extension, other packages through pip;
- ``runner``: ``PythonSlicer -m EDPSNLib...`` commands, one or several in a row, and cancel;
- ``scene_io``: volumes exported for the commands, their results brought into the scene;
- ``training_plan``: EDPSN Training's chain (prepare the data, score, train, score);
- ``selftest_base``: the base class of both modules' in-Slicer self-tests.
"""
