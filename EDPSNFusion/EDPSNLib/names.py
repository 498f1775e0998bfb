"""The names the whole product shares (metrics, methods, modalities...), in one torch-free place.

Every other list of these names is built from here (or, for the GUI enums, tested against it).
"""

from __future__ import annotations

#: The seven fusion metrics, in table order.
METRIC_NAMES = ("EN", "SD", "SCD", "Qabf", "VIF", "PSNR", "SSIM")
#: The classical baseline fusion methods, in table order.
BASELINE_NAMES = ("mean", "max", "pca", "dwt", "laplacian")
