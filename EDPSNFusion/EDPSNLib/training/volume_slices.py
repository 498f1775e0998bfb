"""Training slices of a volume pair: the tissue slices, normalised as fusion does, as uint8.

Used by :mod:`EDPSNLib.training.volume_dataset`; separate so each file stays readable.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from EDPSNLib.errors import InputError
from EDPSNLib.fusion.normalize import to_uint8
from EDPSNLib.training.dataset_writer import tissue_slices

#: Tissue rule for a training slice (see :func:`dataset_writer.tissue_slices`): both images
#: above this level in at least this fraction of the pixels.
TISSUE_LEVEL = 0.05
TISSUE_FRACTION = 0.05
#: Slices normalised per batch (bounds the float32 working memory).
BATCH = 16

Progress = Callable[[int, int], None]


def _pad_square(x: np.ndarray, fill: float) -> np.ndarray:
    """Centre (N, H, W[, 3]) slices in an S x S square (S = max(H, W)), filled with ``fill``."""
    h, w = x.shape[1:3]
    s = max(h, w)
    top, left = (s - h) // 2, (s - w) // 2
    pad = [(0, 0), (top, s - h - top), (left, s - w - left)] + [(0, 0)] * (x.ndim - 3)
    return np.pad(x, pad, constant_values=fill)


def _resize(x01: np.ndarray, size: int) -> np.ndarray:
    """Square (N, S, S[, 3]) slices on [0, 1] to (N, size, size[, 3]); antialiased bilinear."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(x01, dtype=np.float32))
    t = t.permute(0, 3, 1, 2) if t.ndim == 4 else t[:, None]
    if t.shape[-1] != size:
        t = F.interpolate(
            t, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    t = t.permute(0, 2, 3, 1) if x01.ndim == 4 else t[:, 0]
    return t.numpy()


def tissue_training_slices(
    todo: np.ndarray,
    mri01: np.ndarray,
    mov: np.ndarray,
    func_norm: Callable,
    fill: float,
    size: int | None,
    progress: Progress | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The slices to train on (MRI tissue and functional tissue), normalised batch by batch.

    Args:
        todo: indices of the slices with MRI tissue (the ones fusion fuses).
        mri01: (N, H, W) MRI on [0, 1].
        mov: (N, H, W[, 3]) moving values on the MRI grid.
        func_norm: the fusion pipeline's normaliser of moving slices.
        fill: the moving value outside its field of view (pads resized slices).
        size: resample each slice (padded to a square) to ``size`` x ``size``; None keeps it.
        progress: called with (slices done, slices to do).

    Returns:
        (indices kept, MRI uint8 (K, h, w), functional uint8 (K, h, w[, 3])).
    """
    # ``todo``: the slices the pipeline fuses (MRI tissue); a training slice also needs tissue
    # in the functional image, or the network learns to copy the MRI.
    keep, mri_out, func_out = [], [], []
    for done in range(0, len(todo), BATCH):
        idx = todo[done : done + BATCH]
        m, f_raw = mri01[idx], mov[idx]
        f = func_norm(f_raw)
        ok = tissue_slices(m, f, TISSUE_LEVEL, TISSUE_FRACTION)
        if len(ok):
            m, f = m[ok], f[ok]
            if size is not None:  # pad the raw values: as if the field of view were larger
                m = _resize(_pad_square(m, 0.0), size)
                f = _resize(func_norm(_pad_square(f_raw[ok], fill)), size)
            keep.append(idx[ok])
            mri_out.append(to_uint8(m))
            func_out.append(to_uint8(f))
        if progress is not None:
            progress(min(done + BATCH, len(todo)), len(todo))
    if not keep:
        raise InputError(
            f"No slice has tissue in both images ({len(todo)} of {len(mri01)} slices have MRI "
            "tissue, none also has the functional image above "
            f"{TISSUE_LEVEL:g} in {TISSUE_FRACTION:.0%} of its pixels). Check the pairing, the "
            "registration, the CT window or the slice axis."
        )
    return np.concatenate(keep), np.concatenate(mri_out), np.concatenate(func_out)
