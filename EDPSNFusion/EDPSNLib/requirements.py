"""The Python packages the core needs in a host interpreter such as Slicer's, and which are missing.

torch is not listed: inside Slicer it comes from the PyTorch extension (PyTorchUtils), which
picks the build that matches the GPU driver. numpy and SimpleITK ship with Slicer and must not
be replaced (Slicer issue 6711), so a pip install is run with them pinned.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Mapping

#: Import name -> pip requirement, beside Slicer's own numpy, SimpleITK and vtk.
PYTHON_REQUIREMENTS: dict[str, str] = {
    "safetensors": "safetensors>=0.4",
    "pywt": "PyWavelets>=1.4",
    "nibabel": "nibabel>=5.0",
    "pydicom": "pydicom>=2.4",
    "tqdm": "tqdm>=4.60",
    "skimage": "scikit-image>=0.21",
    "scipy": "scipy>=1.10",
    "matplotlib": "matplotlib>=3.7",
    "PIL": "Pillow>=9.0",
}
#: Packages the host ships; a pip install must keep their installed versions.
PINNED_PACKAGES = ("numpy", "SimpleITK")
#: What EDPSN needs of torch (asked of PyTorchUtils.installTorch).
TORCH_REQUIREMENT = ">=2.1"


def missing_requirements(requirements: Mapping[str, str] = PYTHON_REQUIREMENTS) -> list[str]:
    """The pip requirements whose import name cannot be found (nothing is imported)."""
    importlib.invalidate_caches()
    return [spec for name, spec in requirements.items() if importlib.util.find_spec(name) is None]


def constraints_text(packages: tuple[str, ...] = PINNED_PACKAGES) -> str:
    """A pip constraints file pinning the installed version of each package that is installed."""
    lines = []
    for name in packages:
        try:
            lines.append(f"{name}=={importlib.metadata.version(name)}\n")
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed as a distribution: pip cannot replace it either
    return "".join(lines)
