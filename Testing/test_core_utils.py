"""Colour conversions, atomic writes and data paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import EDPSNLib.atomic as atomic_module
from EDPSNLib import interrupts
from EDPSNLib.atomic import atomic_path, atomic_paths, check_output_path, write_text_atomic
from EDPSNLib.color import rgb_to_luma
from EDPSNLib.data.harvard import list_pairs, load_pair
from EDPSNLib.errors import InputError
from EDPSNLib.network.color import merge_luma, rgb_to_ycbcr, split_luma, ycbcr_to_rgb
from EDPSNLib.paths import DATA_ENV, data_root


def _pet() -> np.ndarray:
    return load_pair(list_pairs("MRI-PET", "test")[3])[1]


def test_luma_matches_pil_convert_before_rounding() -> None:
    pet = _pet()
    luma = rgb_to_luma(pet)
    pil = np.asarray(Image.fromarray(pet).convert("L"), dtype=np.float64)
    # PIL rounds its fixed-point BT.601 luma: within one grey level of ours.
    assert np.abs(luma - pil).max() <= 1.0
    assert rgb_to_luma(pet[..., 0]).dtype == np.float64


def test_ycbcr_round_trip_on_real_pet() -> None:
    x = torch.from_numpy(np.moveaxis(_pet(), -1, 0).astype(np.float32) / 255.0)
    ycc = rgb_to_ycbcr(x)
    assert torch.allclose(ycbcr_to_rgb(ycc), x, atol=1e-5)
    assert torch.allclose(ycc[0], 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2], atol=1e-6)
    grey = torch.full((1, 3, 4, 4), 0.3)
    assert torch.allclose(rgb_to_ycbcr(grey)[:, 1:], torch.full((1, 2, 4, 4), 0.5), atol=1e-6)


def test_split_merge_luma() -> None:
    pet = _pet().astype(np.float32) / 255.0
    y, cbcr = split_luma(pet)
    assert np.allclose(merge_luma(y, cbcr), pet, atol=1e-5)
    grey, none = split_luma(pet[..., 0])
    assert none is None and np.array_equal(merge_luma(grey, None), pet[..., 0])


def test_ycbcr_rejects_wrong_channels() -> None:
    with pytest.raises(ValueError, match=r"\(\*, 3, H, W\)"):
        rgb_to_ycbcr(torch.zeros(1, 2, 4, 4))


def test_atomic_path_keeps_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out.nii.gz"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii.gz"]
    write_text_atomic(target, "new")
    assert target.read_text() == "new"


def test_atomic_paths_leave_no_temporary_when_interrupted_while_creating_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SIGTERM right as the output set starts (the Slicer module's Cancel): the second
    # temporary is never made, and the first must not stay behind.
    made = []
    real = atomic_module.tempfile.mkstemp

    def mkstemp_then_signal(**kw):
        if made:
            interrupts.request("SIGTERM")  # what the handler does inside a deferred block
        made.append(real(**kw))
        return made[-1]

    monkeypatch.setattr(atomic_module.tempfile, "mkstemp", mkstemp_then_signal)
    targets = {"fused": tmp_path / "fused.nrrd", "regions": tmp_path / "regions.nrrd"}
    with pytest.raises(KeyboardInterrupt), atomic_paths(targets):
        raise AssertionError("the block must not run")
    assert len(made) == 2 and list(tmp_path.iterdir()) == []


def test_check_output_path(tmp_path: Path) -> None:
    inp = tmp_path / "mri.nrrd"
    inp.write_text("x")
    with pytest.raises(InputError, match="also an input"):
        check_output_path(tmp_path / "." / "mri.nrrd", inputs=(inp,))
    assert check_output_path(tmp_path / "fused.nrrd", inputs=(inp,)) == (tmp_path / "fused.nrrd")


def test_data_root_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert (data_root() / "harvard").is_dir()
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert data_root() == tmp_path


def test_functional_range_and_uint8_conversion() -> None:
    from EDPSNLib.fusion.normalize import functional_range, normalize_functional, rescale, to_uint8

    pet = rgb_to_luma(_pet()) * 37.0  # a scalar "activity" volume with a real distribution
    lo, hi = functional_range(pet)
    assert lo == 0.0 and 0 < hi <= pet.max()
    assert np.array_equal(rescale(pet, lo, hi), normalize_functional(pet))
    assert to_uint8(np.array([-0.1, 0.0, 0.5 / 255, 1.5 / 255, 1.0, 2.0])).tolist() == [
        0,
        0,
        0,
        2,
        255,
        255,
    ]
