"""torch through the PyTorch extension (never pip here), the other packages through pip."""

import importlib
import inspect
import tempfile
from pathlib import Path

import slicer

from EDPSNLib import requirements


def setupPythonRequirements(log, askConfirmation=True):
    """Make torch and EDPSN's other packages importable in Slicer; raise RuntimeError if not."""
    try:
        import PyTorchUtils
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            "EDPSN needs the PyTorch extension: install 'PyTorch' from the Extensions Manager, "
            "restart Slicer and try again."
        ) from exc
    torchLogic = PyTorchUtils.PyTorchUtilsLogic()
    if not torchLogic.torchInstalled():
        log("Installing PyTorch with PyTorch Utils (this can take several minutes)...")
        need = requirements.TORCH_REQUIREMENT
        if (
            torchLogic.installTorch(askConfirmation=askConfirmation, torchVersionRequirement=need)
            is None
        ):
            raise RuntimeError("PyTorch was not installed; EDPSN cannot run without it.")
    missing = requirements.missing_requirements()
    if missing:
        log(f"Installing {', '.join(missing)}...")
        folder = tempfile.mkdtemp(prefix="EDPSN-pip-", dir=slicer.app.temporaryPath)
        constraints = Path(folder) / "constraints.txt"  # keeps Slicer's numpy and SimpleITK
        constraints.write_text(requirements.constraints_text())
        pydeps = pipModule()
        if pydeps is not None:  # check, ask, install with progress, offer a restart
            from packaging.requirements import Requirement  # pip_ensure's own dependency

            # Requirement objects: slicer.pydeps.pip_ensure takes only those (not strings).
            options = dict(constraints=str(constraints), prompt_install=askConfirmation)
            # pip_ensure skips installing in testing mode by default (Slicer >= 5.12), which
            # would turn the self-tests into skips: they need the packages like a user does.
            if "skip_in_testing" in inspect.signature(pydeps.pip_ensure).parameters:
                options["skip_in_testing"] = False
            pydeps.pip_ensure([Requirement(spec) for spec in missing], requester="EDPSN", **options)
        else:
            slicer.util.pip_install(["-c", str(constraints), *missing])
    if requirements.missing_requirements():
        still = ", ".join(requirements.missing_requirements())
        raise RuntimeError(f"These Python packages could not be installed: {still}.")


def pipModule():
    """Slicer's package helper with pip_ensure (5.11: slicer.pydeps, later slicer.packaging)."""
    for name in ("slicer.packaging", "slicer.pydeps"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "pip_ensure"):
            return module
    return None
