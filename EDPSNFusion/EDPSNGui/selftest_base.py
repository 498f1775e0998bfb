"""What both modules' in-Slicer self-tests share: a clean scene, the Python requirements (a test
fails without them), waiting for a background job while the GUI keeps running, a private user models folder.
"""

import contextlib
import logging
import os
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest

from EDPSNLib import paths


class EDPSNTestBase(ScriptedLoadableModuleTest):
    """Base of EDPSNFusionTest and EDPSNTrainingTest (run with Reload and Test, or ctest)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTests(self, *tests):
        """Run the tests one by one on a clean scene. Reload and Test calls runTest() directly,
        where an exception stops the rest: a skip is recorded, the others run, and the run
        fails at the end if any test was skipped (a skipped self-test has shown nothing)."""
        skipped = []
        for test in tests:
            self.setUp()
            try:
                test()
            except unittest.SkipTest as exc:
                logging.warning(f"{test.__name__} skipped: {exc}")
                skipped.append(f"{test.__name__}: {exc}")
        if skipped:
            self.fail("Self-tests skipped, so not run: " + "; ".join(skipped))

    def requireSetup(self, logic):
        """The logic with torch and the other packages installed (a failure fails the test)."""
        try:
            logic.setupPythonRequirements(askConfirmation=False)
        except (RuntimeError, ImportError, subprocess.CalledProcessError) as exc:
            self.fail(f"EDPSN's Python packages could not be set up: {exc}")
        return logic

    def waitForJob(self, logic, running, timeout, what="the job"):
        """Poll the logic's events while ``running()`` holds, keeping Slicer responsive."""
        events, deadline = [], time.time() + timeout
        while running():
            events += logic.poll()
            slicer.app.processEvents()
            time.sleep(0.1)
            self.assertLess(time.time(), deadline, f"{what} did not finish in time")
        return events

    @contextlib.contextmanager
    def privateUserModels(self):
        """A fresh user models folder (EDPSN_MODELS) for the test, restored afterwards."""
        folder = Path(tempfile.mkdtemp(dir=slicer.app.temporaryPath))
        old = os.environ.get(paths.USER_MODELS_ENV)
        os.environ[paths.USER_MODELS_ENV] = str(folder / "models")
        try:
            yield folder
        finally:
            if old is None:
                os.environ.pop(paths.USER_MODELS_ENV, None)
            else:
                os.environ[paths.USER_MODELS_ENV] = old
