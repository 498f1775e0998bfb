"""Whether the slicer-core tests must run here: a missing wheel fails where CI promises it.

(Not named slicer_core.py: that would shadow the wheel's own slicer_core package.)

pyproject's ``test`` extra installs ``slicer-core`` only where its environment marker holds
(the wheels exist for CPython 3.11). There, a missing or wrong ``slicer`` package is a broken
test environment and the tests fail; elsewhere they skip and say why.
"""

from __future__ import annotations

import re
from types import ModuleType

import pytest
from packaging.requirements import Requirement

from EDPSNLib.paths import repo_root


def slicer_core_promised() -> bool:
    """Whether pyproject's ``test`` extra installs slicer-core on this interpreter.

    Returns:
        True when the ``slicer-core`` requirement's marker holds here.

    Example:
        >>> isinstance(slicer_core_promised(), bool)
        True
    """
    text = (repo_root() / "pyproject.toml").read_text()
    try:
        import tomllib
    except ImportError:  # Python 3.10: the TOML strings of the extra are plain "..." strings
        test_extra = re.findall(r'"([^"]+)"', text.split("test = [", 1)[-1].split("]", 1)[0])
    else:
        test_extra = tomllib.loads(text)["project"]["optional-dependencies"]["test"]
    for line in test_extra:
        requirement = Requirement(line)
        if requirement.name == "slicer-core":
            return requirement.marker is None or requirement.marker.evaluate()
    return False  # not in the test extra at all: nothing is promised


def require_slicer_core() -> ModuleType:
    """The slicer-core ``slicer`` module, or a failure (where promised) or a skip (elsewhere).

    Returns:
        The ``slicer`` package with the real MRML classes.
    """
    why = None
    try:
        import slicer
    except ImportError as exc:
        why = f"slicer-core is not installed ({exc})"
    else:
        if not hasattr(slicer, "vtkMRMLScene"):
            why = f"the installed 'slicer' package ({slicer.__file__}) is not slicer-core"
    if why is None:
        return slicer
    if slicer_core_promised():
        pytest.fail(f"{why}, but pyproject's test extra installs it here: pip install -e .[test]")
    pytest.skip(f"{why}; its wheels exist for CPython 3.11 only")
