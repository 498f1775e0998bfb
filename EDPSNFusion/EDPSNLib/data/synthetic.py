"""Small synthetic data for the in-Slicer self-tests, which may not download anything.

The pytest suite uses the real data; these only have to look enough like an MRI and a PET
(or a Harvard folder) for the modules' whole path to run in a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def synthetic_mri_pet(
    shape: tuple[int, int, int] = (24, 64, 64), shift_mm: float = 3.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A head-like MRI and PET volume pair that show the same world positions.

    Args:
        shape: the MRI's (K, J, I) voxels (1 mm); the PET has half as many per axis (2 mm).
        shift_mm: how far the PET's origin lies off the MRI's along R, in mm.

    Returns:
        ``(mri, mri_ijk_to_ras, pet, pet_ijk_to_ras)``: int16 (K, J, I), a 4x4 matrix, float32
        (K/2, J/2, I/2), a 4x4 matrix.

    Example:
        >>> mri, mri_m, pet, pet_m = synthetic_mri_pet((8, 16, 16))
        >>> mri.shape, mri.dtype, pet.shape, float(pet_m[0, 3])
        ((8, 16, 16), dtype('int16'), (4, 8, 8), 3.0)
    """
    kk, jj, ii = (a.astype(np.float32) for a in np.indices(shape))
    ck, cj, ci = (s / 2.0 for s in shape)
    r = np.sqrt(
        ((ii - ci) / (0.4 * shape[2])) ** 2
        + ((jj - cj) / (0.34 * shape[1])) ** 2
        + ((kk - ck) / (0.6 * shape[0])) ** 2
    )
    mri = np.where(r < 1.0, 400.0 + 300.0 * np.cos(6.0 * r) + 20.0 * np.sin(ii / 3.0), 0.0)
    pet_shape = tuple(max(2, s // 2) for s in shape)
    k, j, i = (a.astype(np.float32) for a in np.indices(pet_shape))
    x, y, z = 2.0 * i + shift_mm, 2.0 * j, 2.0 * k  # world (RAS) mm of the PET voxels
    hot = np.exp(-((x - 1.25 * ci) ** 2 + (y - cj) ** 2) / 60.0 - (z - ck) ** 2 / 80.0)
    body = np.sqrt(((x - ci) / (0.4 * shape[2])) ** 2 + ((y - cj) / (0.34 * shape[1])) ** 2) < 1.0
    pet = 1000.0 * hot + 100.0 * body
    pet_ijk_to_ras = np.diag([2.0, 2.0, 2.0, 1.0])
    pet_ijk_to_ras[0, 3] = shift_mm
    return mri.astype(np.int16), np.eye(4), pet.astype(np.float32), pet_ijk_to_ras


def synthetic_harvard(
    root: str | Path,
    pair: str = "MRI-PET",
    n_train: int = 10,
    n_test: int = 3,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write a tiny Harvard-layout folder: ``<pair>/MRI``, ``<pair>/<func>`` and ``splits``.

    Args:
        root: the folder to write into (created).
        pair: the modality pair; CT images are grey, PET/SPECT colour.
        n_train: images listed in ``train.txt``.
        n_test: images listed in ``test.txt``.
        size: the images' side in pixels.
        seed: the seed of the noise.

    Returns:
        ``root``, readable by :func:`EDPSNLib.data.harvard.list_pairs`.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     root = synthetic_harvard(tmp, "MRI-CT", n_train=2, n_test=1, size=16)
        ...     sorted(p.name for p in (root / "MRI-CT" / "CT").iterdir())
        ['90000.png', '90001.png', '90002.png']
    """
    from PIL import Image

    root = Path(root)
    func = pair.split("-", 1)[1]
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    names = [f"{90000 + n}" for n in range(n_train + n_test)]
    for folder in ("MRI", func):
        (root / pair / folder).mkdir(parents=True, exist_ok=True)
    for n, name in enumerate(names):
        head = np.hypot(xx / 0.42, yy / 0.36) < 1.0
        mri = head * (120 + 80 * np.cos(14 * np.hypot(xx, yy) + n) + rng.normal(0, 6, (size, size)))
        spot = np.exp(-((xx - 0.1 * np.sin(n)) ** 2 + (yy - 0.1) ** 2) / 0.01)
        grey = np.clip(head * (60 + 180 * spot), 0, 255)
        colour = (
            np.stack([grey, 0.6 * grey, 255 - grey], axis=-1) * head[..., None]
            if func != "CT"
            else grey
        )
        Image.fromarray(np.clip(mri, 0, 255).astype(np.uint8)).save(
            root / pair / "MRI" / f"{name}.png"
        )
        Image.fromarray(np.clip(colour, 0, 255).astype(np.uint8)).save(
            root / pair / func / f"{name}.png"
        )
    splits = root / "splits" / pair
    splits.mkdir(parents=True, exist_ok=True)
    (splits / "train.txt").write_text("".join(f"{n}.png\n" for n in names[:n_train]))
    (splits / "test.txt").write_text("".join(f"{n}.png\n" for n in names[n_train:]))
    return root
