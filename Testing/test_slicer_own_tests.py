"""Slicer's own tests of parameterNodeWrapper, parameter packs and slicer.util, run on the
harness: a check of the harness itself (Slicer's code behaves as Slicer's tests expect)."""

from __future__ import annotations

import importlib.util
import sys
import unittest

import pytest
import slicer_harness as harness

TESTS = harness.BASE_PYTHON / "slicer" / "tests"
FILES = (
    "test_slicer_parameter_node_wrapper.py",
    "test_slicer_parameter_pack.py",
    "test_slicer_util_getNodes.py",
    "test_slicer_util_VTKObservationMixin.py",
)
#: Cases that need a real Qt class (the harness's qt stand-ins cannot be built): allowed to
#: error, and only with that reason.
NEEDS_QT = {
    "test_slicer_parameter_node_wrapper.SlicerParameterNodeWrapperTest.test_qcolor",
    "test_slicer_util_VTKObservationMixin.SlicerUtilVTKObservationMixinTests.test_moduleWidgetMixin",
}


@pytest.mark.parametrize("name", FILES)
def test_slicer_own_tests_pass_on_the_harness(slicer_scene, name):
    spec = importlib.util.spec_from_file_location(name[:-3], TESTS / name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # the serializers find test classes by module name
    spec.loader.exec_module(module)
    suite = unittest.defaultTestLoader.loadTestsFromModule(module)
    result = unittest.TestResult()
    suite.run(result)
    assert result.testsRun > 0
    assert not result.failures, result.failures[0][1]
    for case, trace in result.errors:
        assert case.id() in NEEDS_QT and "needs Qt" in trace, f"{case.id()}:\n{trace}"
