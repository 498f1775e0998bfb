"""Harvard fusion pairs as a torch Dataset with seeded random crops and flips.

Randomness never comes from global or worker RNG state: the sampler hands every item a key
``(index, augmentation_seed)`` drawn from a generator seeded by ``(seed, epoch)``, so an epoch's
batches, crops and flips are a pure function of the seed and the epoch number. That makes
training deterministic with any number of loader workers, and lets a resumed run skip to the
exact step where it stopped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from EDPSNLib.data.harvard import HarvardPair, load_pair
from EDPSNLib.errors import InputError
from EDPSNLib.training.augment import augment_pair, parse_augment

#: A dataset key: an index (whole image, no augmentation) or (index, augmentation seed).
Key = int | tuple[int, int]


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W) or (H, W, C) to float32 (C, H, W) on [0, 1]."""
    arr = np.asarray(image)
    arr = arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32) / 255.0)


def unit_tensor(image: np.ndarray) -> torch.Tensor:
    """float (H, W) or (H, W, C) already on [0, 1] to float32 (C, H, W)."""
    arr = np.asarray(image, dtype=np.float32)
    arr = arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
    return torch.from_numpy(np.ascontiguousarray(arr))


def augment_params(seed: int, height: int, width: int, crop: int) -> tuple[int, int, bool, bool]:
    """(top, left, hflip, vflip) of one random crop, drawn from a generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(int(seed))
    top = int(torch.randint(0, height - crop + 1, (1,), generator=gen))
    left = int(torch.randint(0, width - crop + 1, (1,), generator=gen))
    hflip, vflip = (torch.rand(2, generator=gen) < 0.5).tolist()
    return top, left, bool(hflip), bool(vflip)


def crop_and_flip(
    image: torch.Tensor, top: int, left: int, crop: int, hflip: bool, vflip: bool
) -> torch.Tensor:
    """Crop (C, H, W) to (C, crop, crop) at (top, left), then flip left-right and/or up-down."""
    out = image[:, top : top + crop, left : left + crop]
    dims = [d for d, flag in ((-1, hflip), (-2, vflip)) if flag]
    return out.flip(dims) if dims else out


def image_size(path: str) -> tuple[int, int]:
    """(height, width) of an image file, reading only its header."""
    try:
        with Image.open(path) as img:
            return img.height, img.width
    except OSError as exc:
        raise InputError(f"Cannot read image {path}: {exc}. Replace or remove the file.") from exc


class HarvardFusionDataset(Dataset):
    """Pairs as ``(mri (1, h, w), func (C, h, w))`` float32 tensors on [0, 1].

    Key ``i``: the whole pair. Key ``(i, seed)``: a ``crop`` x ``crop`` patch at a seeded random
    place, flipped left-right and up-down each with probability 1/2 (fusion is local and has
    no preferred orientation, so flips are safe extra data). ``augment`` adds the seeded
    contrast, functional-scale and rotation changes of :mod:`EDPSNLib.training.augment` to
    keyed items (before the crop; whole-image keys stay unchanged, as validation needs).
    """

    def __init__(
        self, pairs: Sequence[HarvardPair], crop: int | None = None, augment: Sequence[str] = ()
    ) -> None:
        self.augment = parse_augment(augment)
        if not pairs:
            raise InputError("No image pairs to train on; check the data folder and split.")
        self.pairs = list(pairs)
        self.crop = crop
        if crop is not None:
            if crop < 8:
                raise InputError(f"Crop size {crop} is too small; use at least 8 (e.g. 128).")
            h, w = image_size(str(self.pairs[0].mri_path))
            if crop > min(h, w):
                raise InputError(
                    f"Crop size {crop} is larger than the images ({h}x{w}); use --crop {min(h, w)} or less."
                )

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = (key, None) if isinstance(key, int) else key
        mri_u8, func_u8 = load_pair(self.pairs[index])
        if seed is not None and self.augment:
            mri_f, func_f = augment_pair(mri_u8 / 255.0, func_u8 / 255.0, seed, self.augment)
            mri, func = unit_tensor(mri_f), unit_tensor(func_f)
        else:
            mri, func = to_tensor(mri_u8), to_tensor(func_u8)
        if seed is None or self.crop is None:
            return mri, func
        h, w = mri.shape[-2:]
        if self.crop > min(h, w):
            raise InputError(
                f"Pair {self.pairs[index].name} is {h}x{w}, smaller than the crop {self.crop}; "
                "use a smaller --crop or remove the pair."
            )
        top, left, hflip, vflip = augment_params(seed, h, w, self.crop)
        return (
            crop_and_flip(mri, top, left, self.crop, hflip, vflip),
            crop_and_flip(func, top, left, self.crop, hflip, vflip),
        )


def steps_per_epoch(n_items: int, batch_size: int, max_steps: int | None = None) -> int:
    """Full batches in one pass over ``n_items`` (at least 1), capped by ``max_steps``."""
    steps = max(1, n_items // batch_size)
    return min(steps, max_steps) if max_steps else steps


def epoch_batches(
    n_items: int, batch_size: int, seed: int, epoch: int, max_steps: int | None = None
) -> list[list[tuple[int, int]]]:
    """The batches of keys of one epoch: a seeded permutation cut into full batches.

    The remainder is dropped (the next epoch's permutation differs), except that a data set
    smaller than one batch gives one smaller batch.
    """
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    order = torch.randperm(n_items, generator=gen).tolist()
    aug_seeds = torch.randint(0, 2**62, (n_items,), generator=gen).tolist()
    keys = list(zip(order, aug_seeds))
    size = min(batch_size, n_items)
    steps = steps_per_epoch(n_items, size, max_steps)
    return [keys[i * size : (i + 1) * size] for i in range(steps)]
