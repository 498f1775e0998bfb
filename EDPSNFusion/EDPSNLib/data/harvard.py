"""Harvard Whole Brain Atlas fusion pairs: listing, splits and loading with clear errors."""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from EDPSNLib import names
from EDPSNLib.data.splits import fold_split_names, parse_fold_split
from EDPSNLib.errors import EDPSNWarning, InputError
from EDPSNLib.paths import harvard_root

#: The three modality pairs and the folder name of the functional image in each.
PAIR_NAMES = names.PAIR_NAMES
SPLITS = ("train", "val", "test", "trainval", "all")
#: Other names of the source repo's splits: ``source-test`` says where the test list comes from.
SPLIT_ALIASES = {"source-test": "test", "source-train": "train", "source-val": "val"}
SPLIT_HELP = (
    "train, val, test (= source-test: the source repo's list), trainval, all, or a case-grouped "
    "split case-fold-<k>[/train|val|test|trainval] (no atlas case on both sides; data/splits.py) "
    "or case-all[/train|val] (the shipped weights' split)"
)
#: Fraction of the source repo's train list held out for validation, with a fixed seed.
VAL_FRACTION = 0.2
VAL_SEED = 0
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass(frozen=True)
class HarvardPair:
    """One registered slice pair: the MRI and the functional (CT, PET or SPECT) image.

    Attributes:
        name: the file name both images share, without its suffix.
        pair: the modality pair, e.g. "MRI-PET".
        mri_path: the MRI image.
        func_path: the CT, PET or SPECT image.
    """

    name: str
    pair: str
    mri_path: Path
    func_path: Path


def functional_modality(pair: str) -> str:
    """The functional modality of a modality pair.

    Args:
        pair: one of ``names.PAIR_NAMES``.

    Returns:
        The modality after "MRI-".

    Raises:
        InputError: an unknown pair, with the list of known ones.

    Example:
        >>> functional_modality("MRI-PET")
        'PET'
    """
    if pair not in PAIR_NAMES:
        raise InputError(f"Unknown pair '{pair}'; choose one of {', '.join(PAIR_NAMES)}.")
    return pair.split("-", 1)[1]


def _image_names(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise InputError(
            f"Folder {folder} does not exist; a Harvard-layout data folder needs "
            "<pair>/MRI/ and <pair>/<CT|PET|SPECT>/ with images paired by file name."
        )
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in _IMAGE_SUFFIXES}


def _read_split_file(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"Split file {path} is missing; expected one file name per line.")
    return [Path(line.strip()).stem for line in path.read_text().splitlines() if line.strip()]


def check_split_name(split: str) -> str:
    """The split name if known (a source split, an alias or a case fold), else an InputError."""
    if split in SPLITS or split in SPLIT_ALIASES or parse_fold_split(split) is not None:
        return split
    raise InputError(f"Unknown split '{split}'; choose {SPLIT_HELP}.")


def split_names(pair: str, split: str, root: str | Path | None = None) -> list[str]:
    """The image names of one split of a modality pair.

    ``test`` (alias ``source-test``) is ``splits/<pair>/test.txt``; ``trainval`` is
    ``train.txt``; ``val`` is a seeded :data:`VAL_FRACTION` of it and ``train`` the rest;
    ``all`` is every MRI image; ``case-fold-<k>[/<part>]`` are case-grouped folds of all
    names (:mod:`EDPSNLib.data.splits`).

    Args:
        pair: the modality pair.
        split: one of :data:`SPLITS`, an alias of :data:`SPLIT_ALIASES` or a case-fold name.
        root: a Harvard-layout folder (or the folder holding ``harvard/``); None for the
            shared data.

    Returns:
        The names (file names without suffix), in the split file's order.

    Raises:
        InputError: an unknown split, or a missing folder or split file.

    Example:
        >>> train, val = split_names("MRI-CT", "train"), split_names("MRI-CT", "val")
        >>> sorted(train + val) == sorted(split_names("MRI-CT", "trainval"))
        True
    """
    split = SPLIT_ALIASES.get(check_split_name(split), split)
    base = harvard_root(root)
    split_dir = base / "splits" / pair
    if split == "all":
        return sorted(_image_names(base / pair / "MRI"))
    if parse_fold_split(split) is not None:
        return fold_split_names(_image_names(base / pair / "MRI"), split)
    if split == "test":
        return _read_split_file(split_dir / "test.txt")
    train = _read_split_file(split_dir / "train.txt")
    if split == "trainval":
        return train
    shuffled = sorted(train)
    random.Random(VAL_SEED).shuffle(shuffled)
    n_val = round(len(shuffled) * VAL_FRACTION)
    chosen = set(shuffled[:n_val]) if split == "val" else set(shuffled[n_val:])
    return [n for n in train if n in chosen]


def list_pairs(pair: str, split: str = "test", root: str | Path | None = None) -> list[HarvardPair]:
    """The image pairs of one modality pair and split, each name checked to have both images.

    Args:
        pair: the modality pair.
        split: one of :data:`SPLITS`.
        root: a Harvard-layout folder; None for the shared data.

    Returns:
        One :class:`HarvardPair` per name of the split (no image is read yet).

    Raises:
        InputError: unpaired images, a split naming missing images, or an empty split.

    Example:
        >>> first = list_pairs("MRI-SPECT", "test")[0]
        >>> first.pair, first.mri_path.stem == first.func_path.stem == first.name
        ('MRI-SPECT', True)
    """
    func = functional_modality(pair)
    base = harvard_root(root) / pair
    mri, other = _image_names(base / "MRI"), _image_names(base / func)
    unpaired = sorted(set(mri) ^ set(other))
    if unpaired:
        shown = ", ".join(unpaired[:10]) + (" ..." if len(unpaired) > 10 else "")
        raise InputError(
            f"Unpaired images in {base}: {shown}. Each MRI/<name> needs a {func}/<name> "
            "(and vice versa); remove or complete them."
        )
    names = split_names(pair, split, root)
    missing = [n for n in names if n not in mri]
    if missing:
        raise InputError(f"Split '{split}' of {pair} names images not in {base}: {missing[:10]}.")
    if not names:
        raise InputError(f"Split '{split}' of {pair} in {base} is empty; nothing to do.")
    return [HarvardPair(n, pair, mri[n], other[n]) for n in names]


def _grey_from_rgb(rgb: np.ndarray, path: Path) -> np.ndarray:
    """An RGB image used as grey: its first channel when the three are equal (grey saved as
    colour, common in published fusion sets), else its luma, with a warning."""
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all():
        return np.ascontiguousarray(rgb[..., 0])
    warnings.warn(
        f"{path} is a colour image where a grey one is expected; its channels differ, so its "
        "luma (0.299 R + 0.587 G + 0.114 B) is used. Check that the folders are not swapped.",
        EDPSNWarning,
        stacklevel=3,
    )
    return np.asarray(Image.fromarray(rgb).convert("L"))


def read_image(path: Path, channels: int | tuple[int, ...]) -> np.ndarray:
    """Read an 8-bit image as uint8 (H, W) or (H, W, 3), checking its channel count.

    A grey image stored as RGB (three equal channels) is read as grey where grey is expected;
    a colour one gives its luma and an :class:`EDPSNWarning`.

    Args:
        path: the image file (PNG, JPEG, ... anything PIL reads).
        channels: 1 for grey, 3 for RGB, or a tuple of the counts accepted.

    Returns:
        uint8 array, (H, W) for grey or (H, W, 3) for RGB.

    Raises:
        InputError: an unreadable file or an image of another kind.

    Example:
        >>> read_image(list_pairs("MRI-PET", "test")[0].func_path, 3).shape
        (256, 256, 3)
    """
    accepted = np.atleast_1d(channels)
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("L", "P", "I;16", "I", "F") and 1 in accepted:
                arr = np.asarray(img.convert("L"))
            elif mode in ("RGB", "RGBA") and 3 in accepted:
                arr = np.asarray(img.convert("RGB"))
            elif mode in ("RGB", "RGBA") and 1 in accepted:
                arr = _grey_from_rgb(np.asarray(img.convert("RGB")), path)
            elif mode == "L" and 3 in accepted:
                arr = np.repeat(np.asarray(img)[..., None], 3, axis=-1)
            else:
                want = " or ".join(str(c) for c in accepted)
                raise InputError(f"{path} has image mode {mode}; expected {want} channel(s).")
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"Cannot read image {path}: {exc}. Replace or remove the file.") from exc
    return arr


def load_pair(p: HarvardPair) -> tuple[np.ndarray, np.ndarray]:
    """Read the two images of a pair.

    Args:
        p: the pair.

    Returns:
        MRI uint8 (H, W) and functional uint8, (H, W) for CT or (H, W, 3) for PET/SPECT.

    Raises:
        InputError: an unreadable image, or images of different sizes.

    Example:
        >>> mri, ct = load_pair(list_pairs("MRI-CT", "test")[0])
        >>> mri.shape, ct.shape, ct.dtype
        ((256, 256), (256, 256), dtype('uint8'))
    """
    mri = read_image(p.mri_path, 1)
    func = read_image(p.func_path, 1 if functional_modality(p.pair) == "CT" else (3,))
    if mri.shape[:2] != func.shape[:2]:
        raise InputError(
            f"Pair {p.name}: MRI {p.mri_path} is {mri.shape[:2]} but {p.func_path} is "
            f"{func.shape[:2]}; the two images of a pair must have the same size."
        )
    return mri, func


def load_pairs(pairs: list[HarvardPair]) -> tuple[np.ndarray, np.ndarray]:
    """Read pairs of one size and stack them.

    Args:
        pairs: the pairs, e.g. from :func:`list_pairs`.

    Returns:
        MRI uint8 (N, H, W) and functional uint8 (N, H, W) or (N, H, W, 3).

    Raises:
        InputError: images of different sizes, or any problem of :func:`load_pair`.

    Example:
        >>> mri, pet = load_pairs(list_pairs("MRI-PET", "test")[:2])
        >>> mri.shape, pet.shape
        ((2, 256, 256), (2, 256, 256, 3))
    """
    loaded = [load_pair(p) for p in pairs]
    shapes = {m.shape for m, _ in loaded}
    if len(shapes) > 1:
        raise InputError(f"Images of different sizes {sorted(shapes)} cannot be stacked.")
    return np.stack([m for m, _ in loaded]), np.stack([f for _, f in loaded])
