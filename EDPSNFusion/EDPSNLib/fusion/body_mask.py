"""The body (head) inside an MRI volume: where entropy regions and region metrics are defined.

Outside the body the MRI is air: its noise has high local entropy and, unmasked, gets region
labels all around the head (speckle over the slice views). The mask is a threshold well under
the tissue level, opened to drop noise specks, kept to the largest connected piece and filled
slice by slice (dark CSF, bone and sinuses inside the head belong to the body).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from EDPSNLib.errors import InputError

#: Voxels above this fraction of the MRI's 99th percentile (of non-zero voxels) are tissue.
BODY_LEVEL = 0.08
#: In-plane opening radius (pixels) that removes noise specks from the thresholded mask.
OPENING_RADIUS = 2
#: In-plane closing radius (pixels) that bridges gaps in the scalp before the holes are filled.
CLOSING_RADIUS = 6


def _disk(radius: int) -> np.ndarray:
    """(1, 2r+1, 2r+1) bool structuring element: a disk in the slice plane only."""
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return (x * x + y * y <= radius * radius)[None]


def body_mask(
    mri: np.ndarray, level: float = BODY_LEVEL, opening_radius: int = OPENING_RADIUS
) -> np.ndarray:
    """Boolean mask of the body in a slice-first MRI volume.

    Args:
        mri: (N, H, W) MRI, any real dtype (slices along axis 0; the holes are filled in
            each slice). Not modified.
        level: threshold as a fraction of the 99th percentile of the non-zero voxels.
        opening_radius: in-plane radius of the opening that removes noise specks (0: none).

    Returns:
        (N, H, W) bool: the largest connected piece above the threshold, holes filled per
        slice. All False when the volume holds no signal.

    Example:
        >>> mri = np.zeros((3, 32, 32)); mri[:, 8:24, 8:24] = 100.0; mri[:, 14:18, 14:18] = 0
        >>> mask = body_mask(mri)
        >>> bool(mask[1, 15, 15]), bool(mask[1, 2, 2])  # the dark hole is body, the air is not
        (True, False)
    """
    if mri.ndim != 3 or not np.issubdtype(mri.dtype, np.number) or np.iscomplexobj(mri):
        raise InputError(f"body_mask needs an (N, H, W) real MRI volume, got {mri.shape}.")
    signal = mri[mri > 0]
    if signal.size == 0:
        return np.zeros(mri.shape, bool)
    mask = mri > level * float(np.percentile(signal, 99))
    if opening_radius > 0:
        mask = ndimage.binary_opening(mask, structure=_disk(opening_radius))
    # Closing on a padded copy: a head cut by the image border stays closed at the border.
    r = CLOSING_RADIUS
    padded = np.pad(mask, ((0, 0), (r, r), (r, r)), mode="edge")
    mask = ndimage.binary_closing(padded, structure=_disk(r))[:, r:-r, r:-r]
    labels, count = ndimage.label(mask)
    if count > 1:  # keep the head; isolated blobs in the air are noise or scanner artefacts
        sizes = np.bincount(labels.ravel())[1:]
        mask = labels == 1 + int(np.argmax(sizes))
    plane = np.zeros((3, 3, 3), bool)
    plane[1] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_fill_holes(mask, structure=plane)
