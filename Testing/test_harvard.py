"""Harvard loader on the real pairs: counts, splits, pairing and bad folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from EDPSNLib.data.harvard import PAIR_NAMES, list_pairs, load_pair, load_pairs, split_names
from EDPSNLib.errors import InputError
from EDPSNLib.paths import data_root

EXPECTED = {"MRI-CT": (184, 160, 24), "MRI-PET": (269, 245, 24), "MRI-SPECT": (357, 333, 24)}


@pytest.mark.parametrize("pair", PAIR_NAMES)
def test_split_sizes_partition_the_set(pair: str) -> None:
    total, n_train, n_test = EXPECTED[pair]
    train, val, test = (set(split_names(pair, s)) for s in ("train", "val", "test"))
    assert len(test) == n_test and len(train) + len(val) == n_train
    assert len(val) == round(0.2 * n_train)
    assert not (train & val) and not (train & test) and not (val & test)
    assert len(train | val | test) == total == len(split_names(pair, "all"))


def test_validation_split_is_seeded() -> None:
    assert split_names("MRI-PET", "val") == split_names("MRI-PET", "val")


@pytest.mark.parametrize("pair", PAIR_NAMES)
def test_load_pair_channels(pair: str) -> None:
    mri, func = load_pair(list_pairs(pair, "test")[0])
    assert mri.dtype == np.uint8 and mri.shape == (256, 256)
    assert func.shape == ((256, 256) if pair == "MRI-CT" else (256, 256, 3))


def test_load_pairs_stacks() -> None:
    mri, func = load_pairs(list_pairs("MRI-SPECT", "test")[:5])
    assert mri.shape == (5, 256, 256) and func.shape == (5, 256, 256, 3)


def _copy_set(tmp_path: Path, pair: str = "MRI-CT", n: int = 4) -> tuple[Path, list[str]]:
    src = data_root() / "harvard"
    names = split_names(pair, "test")[:n]
    for sub in ("MRI", pair.split("-")[1]):
        (tmp_path / pair / sub).mkdir(parents=True)
        for name in names:
            shutil.copy(src / pair / sub / f"{name}.png", tmp_path / pair / sub)
    (tmp_path / "splits" / pair).mkdir(parents=True)
    (tmp_path / "splits" / pair / "test.txt").write_text("\n".join(f"{n}.png" for n in names))
    (tmp_path / "splits" / pair / "train.txt").write_text("")
    return tmp_path, names


def test_unpaired_file_is_named(tmp_path: Path) -> None:
    root, names = _copy_set(tmp_path)
    (root / "MRI-CT" / "CT" / f"{names[0]}.png").unlink()
    with pytest.raises(InputError, match=names[0]):
        list_pairs("MRI-CT", "test", root)


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    root, names = _copy_set(tmp_path)
    bad = root / "MRI-CT" / "MRI" / f"{names[1]}.png"
    bad.write_bytes(b"not a png")
    pairs = list_pairs("MRI-CT", "test", root)
    with pytest.raises(InputError, match=str(bad)):
        load_pairs(pairs)


def test_wrong_channels_and_size(tmp_path: Path) -> None:
    from PIL import Image

    root, names = _copy_set(tmp_path)
    ct = root / "MRI-CT" / "CT" / f"{names[0]}.png"
    Image.new("CMYK", (256, 256)).save(ct.with_suffix(".tif"))
    ct.unlink()
    ct.with_suffix(".tif").rename(ct)  # a CMYK image under the .png name: PIL reads it by content
    with pytest.raises(InputError, match="mode CMYK"):
        load_pair(list_pairs("MRI-CT", "test", root)[0])
    Image.new("L", (128, 256)).save(ct)
    with pytest.raises(InputError, match="same size"):
        load_pair(list_pairs("MRI-CT", "test", root)[0])


def test_empty_and_missing(tmp_path: Path) -> None:
    root, _ = _copy_set(tmp_path)
    with pytest.raises(InputError, match="empty"):
        list_pairs("MRI-CT", "train", root)
    with pytest.raises(InputError, match="does not exist"):
        list_pairs("MRI-CT", "test", tmp_path / "nowhere")
    with pytest.raises(InputError, match="Unknown pair"):
        list_pairs("MRI-XR", "test", root)
