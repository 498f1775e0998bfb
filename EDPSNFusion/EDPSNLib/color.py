"""Colour conversions on arrays (BT.601 full range, the JPEG/kornia convention); torch-free.

The tensor versions for the network are in :mod:`EDPSNLib.network.color`.
"""

from __future__ import annotations

import numpy as np

#: BT.601 luma weights: Y = 0.299 R + 0.587 G + 0.114 B (``cv2.COLOR_RGB2GRAY`` before rounding).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def rgb_to_luma(image: np.ndarray) -> np.ndarray:
    """Channel-last RGB (..., 3) to BT.601 luma (...) as float64, not rounded; grey passes through."""
    arr = np.asarray(image)
    if arr.ndim >= 3 and arr.shape[-1] == 3:
        # Contiguous first: a matmul over a strided view may round its last bit differently,
        # which flips EN's uint8 rounding for the same values.
        rgb = np.ascontiguousarray(arr, dtype=np.float64)
        return rgb @ np.asarray(LUMA_WEIGHTS, dtype=np.float64)
    return arr.astype(np.float64)
