"""Slicer 5.10+ runs Python 3.12: the module files, the GUI helpers and the core compile under
it, and the torch-free modules the GUI imports before any package is installed import there
(python3.12 here has no numpy or torch, like Slicer before EDPSN's packages are installed)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Modules the GUI loads at start-up that need only the standard library.
STDLIB_ONLY = (
    "EDPSNLib.errors",
    "EDPSNLib.atomic",
    "EDPSNLib.paths",
    "EDPSNLib.requirements",
    "EDPSNLib.names",
    "EDPSNLib.device_info",
    "EDPSNLib.jobs.fuse",
    "EDPSNLib.jobs.train",
    "EDPSNLib.jobs.process",
    "EDPSNLib.models.registry",
    "EDPSNGui.choices",
)


def _python312():
    """A working python3.12 (PATH, or pyenv's versions folder), or None."""
    candidates = [shutil.which("python3.12")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))
    for exe in filter(None, candidates):
        check = "import sys; assert sys.version_info[:2] == (3, 12)"
        ok = subprocess.run([exe, "-c", check], capture_output=True).returncode == 0
        if ok:
            return exe
    return None


@pytest.fixture(scope="module")
def python312():
    exe = _python312()
    if exe is None:
        pytest.skip("no python3.12 on this machine (Slicer 5.10+ runs 3.12)")
    return exe


def test_every_shipped_python_file_compiles_under_312(python312):
    files = [str(p) for p in (REPO / "EDPSNFusion").rglob("*.py")]
    files += [str(REPO / "EDPSNTraining" / "EDPSNTraining.py")]
    script = (
        "import sys\n"
        "bad = []\n"
        "for f in sys.argv[1:]:\n"
        "    try:\n"
        "        compile(open(f, encoding='utf-8').read(), f, 'exec')\n"
        "    except SyntaxError as e:\n"
        "        bad.append(f'{f}: {e}')\n"
        "print('\\n'.join(bad)); sys.exit(1 if bad else 0)\n"
    )
    run = subprocess.run([python312, "-c", script, *files], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(files) > 60


@pytest.mark.parametrize("module", STDLIB_ONLY)
def test_torch_free_modules_import_under_312(python312, module):
    env = {**os.environ, "PYTHONPATH": str(REPO / "EDPSNFusion"), "PYTHONDONTWRITEBYTECODE": "1"}
    run = subprocess.run(
        [python312, "-c", f"import {module}"], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stderr[-2000:]
