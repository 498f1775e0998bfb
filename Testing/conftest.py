"""Shared test setup: the real data must be present; CPU threads kept to the CI machine's two."""

from __future__ import annotations

import os

import pytest

from EDPSNLib.paths import data_root

os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Fail early, with the fix, when the real data folder is missing."""
    root = data_root()
    if not (root / "harvard").is_dir():
        raise pytest.UsageError(
            f"Real test data not found at {root}: put shared/data beside the repo or set EDPSN_DATA."
        )
    try:
        import torch

        torch.set_num_threads(min(2, os.cpu_count() or 1))
    except ImportError:
        pass


@pytest.fixture(scope="session")
def slicer_harness():
    """Slicer's own Python layer on slicer-core with the scene of an application
    (Testing/slicer_harness.py). On the harness's Python (3.11) a harness that cannot start
    fails the test; on other Pythons (no slicer-core wheel) the test is skipped."""
    import sys

    import slicer_harness as harness

    if sys.version_info[:2] != harness.HARNESS_PYTHON:
        pytest.skip(f"the Slicer harness runs on Python 3.11 (slicer-core), not {sys.version}")
    h = harness.start()
    h.load_scripted_module(harness.SLICER_SOURCE / "SlicerPyTorch/PyTorchUtils/PyTorchUtils.py")
    h.load_scripted_module(harness.REPO / "EDPSNFusion" / "EDPSNFusion.py")
    h.load_scripted_module(harness.REPO / "EDPSNTraining" / "EDPSNTraining.py")
    return h


@pytest.fixture
def slicer_scene(slicer_harness):
    """The harness with a closed (empty) scene, as after File > Close Scene."""
    slicer_harness.close_scene()
    yield slicer_harness
    slicer_harness.close_scene()
