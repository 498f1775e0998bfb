"""Which of the core's Python packages a host interpreter (Slicer's) still needs."""

from __future__ import annotations

import importlib.metadata

import numpy

from EDPSNLib.requirements import (
    PINNED_PACKAGES,
    PYTHON_REQUIREMENTS,
    constraints_text,
    missing_requirements,
)


def test_every_requirement_is_installed_here_and_torch_is_not_listed():
    # This venv is built from pyproject.toml: nothing the modules install may be missing here.
    assert missing_requirements() == []
    assert "torch" not in PYTHON_REQUIREMENTS and "numpy" not in PYTHON_REQUIREMENTS
    assert not {"numpy", "SimpleITK", "vtk"} & {
        s.split(">")[0].split("=")[0] for s in PYTHON_REQUIREMENTS.values()
    }


def test_a_missing_package_is_reported_by_its_pip_requirement():
    wanted = {"numpy": "numpy>=1", "edpsn_no_such_module": "edpsn-no-such-package>=1.0"}
    assert missing_requirements(wanted) == ["edpsn-no-such-package>=1.0"]


def test_constraints_pin_the_installed_versions_of_the_host_packages():
    text = constraints_text()
    assert f"numpy=={numpy.__version__}\n" in text
    assert f"SimpleITK=={importlib.metadata.version('SimpleITK')}\n" in text
    assert set(PINNED_PACKAGES) == {"numpy", "SimpleITK"}
    assert constraints_text(("edpsn-no-such-package",)) == ""
