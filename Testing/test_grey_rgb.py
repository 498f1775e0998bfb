"""Grey images stored as RGB (three equal channels, common in published fusion sets) are read
as grey by ``edpsn evaluate`` and the training loaders; colour ones give a one-line warning."""

from __future__ import annotations

import csv
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from EDPSNLib.cli import main
from EDPSNLib.data.harvard import list_pairs, load_pair, split_names
from EDPSNLib.errors import EDPSNWarning
from EDPSNLib.paths import data_root


def _copy_pairs(root: Path, pair: str = "MRI-PET", n: int = 3, as_rgb: bool = False) -> list[str]:
    """A Harvard-layout folder with ``n`` real test pairs; MRIs saved as RGB when asked."""
    src = data_root() / "harvard" / pair
    func = pair.split("-")[1]
    names = split_names(pair, "test")[:n]
    for sub in ("MRI", func):
        (root / pair / sub).mkdir(parents=True)
    for name in names:
        shutil.copy(src / func / f"{name}.png", root / pair / func)
        mri = Image.open(src / "MRI" / f"{name}.png")
        (mri.convert("RGB") if as_rgb else mri).save(root / pair / "MRI" / f"{name}.png")
    (root / "splits" / pair).mkdir(parents=True)
    (root / "splits" / pair / "test.txt").write_text("\n".join(f"{n}.png" for n in names))
    (root / "splits" / pair / "train.txt").write_text("")
    return names


def _summary(folder: Path) -> dict[str, str]:
    with open(next(folder.rglob("*summary*.csv"))) as fh:
        return next(csv.DictReader(fh))


def test_evaluate_scores_mri_pngs_stored_as_rgb(tmp_path: Path, capsys) -> None:
    names = _copy_pairs(tmp_path / "rgb", as_rgb=True)
    _copy_pairs(tmp_path / "grey")
    mri_png = tmp_path / "rgb" / "MRI-PET" / "MRI" / f"{names[0]}.png"
    assert Image.open(mri_png).mode == "RGB"
    for name in ("rgb", "grey"):
        args = ["evaluate", "--data", str(tmp_path / name), "--pair", "MRI-PET"]
        assert main([*args, "--method", "max", "--out", str(tmp_path / f"out-{name}")]) == 0
    assert "warning" not in capsys.readouterr().err  # equal channels: grey, nothing to say
    assert _summary(tmp_path / "out-rgb") == _summary(tmp_path / "out-grey")


def test_colour_image_where_grey_is_expected_warns_once_per_file(tmp_path: Path, capsys) -> None:
    names = _copy_pairs(tmp_path, pair="MRI-CT", n=2)
    mri_png = tmp_path / "MRI-CT" / "MRI" / f"{names[0]}.png"
    grey = np.asarray(Image.open(mri_png))
    tinted = np.stack([grey, grey // 2, grey // 3], axis=-1)  # channels differ
    Image.fromarray(tinted).save(mri_png)
    pair = list_pairs("MRI-CT", "test", tmp_path)[0]
    with pytest.warns(EDPSNWarning, match="channels differ"):
        mri, _ = load_pair(pair)
    assert mri.shape == grey.shape and mri.dtype == np.uint8
    assert np.abs(mri.astype(int) - np.asarray(Image.fromarray(tinted).convert("L"))).max() == 0
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        args = ["evaluate", "--data", str(tmp_path), "--pair", "MRI-CT", "--method", "max"]
        assert main([*args, "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert f"edpsn evaluate: warning: {mri_png} is a colour image" in err
    assert "Traceback" not in err
