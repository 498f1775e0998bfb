"""A volume pair becomes a training set: the shipped Harvard sample (aligned RGB PET), the porcine
CT/MR phantom (real rigid registration), a real SUV PET (scalar colour-map path), then training."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from EDPSNLib.cli import main
from EDPSNLib.data.harvard import list_pairs, load_pair
from EDPSNLib.errors import InputError, RegistrationError
from EDPSNLib.fusion.normalize import colormap_lut, to_uint8, window_ct
from EDPSNLib.fusion.pipeline import FusionOptions, fuse_volumes
from EDPSNLib.fusion.slices import BaselineSliceFuser
from EDPSNLib.paths import data_root, repo_root
from EDPSNLib.training.dataset_writer import dataset_summary, read_manifest
from EDPSNLib.training.volume_dataset import prepare_volume_pair, split_blocks
from EDPSNLib.volume.io import Volume, read_volume
from EDPSNLib.volume.registration import resample_to

#: The shipped sample is aligned and its atlas slices are coronal.
PET_CORONAL = FusionOptions("PET", register="none", axis="coronal")
SAMPLE = repo_root() / "Resources" / "Sample"
PHANTOM = data_root() / "volumes" / "mridir_porcine_phantom"
STS = data_root() / "dicom" / "tcia_sts_001_petct"


def _slab(vol: Volume, start: int, n: int) -> Volume:
    """Index slices start..start+n along k (the sample's coronal atlas slices)."""
    return Volume(vol.image[:, :, start : start + n], vol.modality, dict(vol.meta))


@pytest.fixture(scope="module")
def sample() -> tuple[Volume, Volume]:
    return read_volume(SAMPLE / "harvard_case25_MRI.nrrd"), read_volume(
        SAMPLE / "harvard_case25_PET.nrrd"
    )


class Recorder:
    """A real baseline fuser that also keeps what the fusion pipeline fed it, slice by slice."""

    def __init__(self) -> None:
        self.inner, self.mri, self.func = BaselineSliceFuser("mean"), [], []

    def __call__(self, mri: np.ndarray, func: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.mri.append(mri.copy())
        self.func.append(func.copy())
        return self.inner(mri, func)


def _fed(mri: Volume, moving: Volume, opts: FusionOptions) -> tuple[np.ndarray, np.ndarray]:
    """Slice index -> (MRI, functional) as fuse_volumes hands them to the network, in uint8."""
    rec = Recorder()
    res = fuse_volumes(mri, moving, opts, fuser=rec)
    idx = np.flatnonzero(res.tissue)
    return idx, to_uint8(np.concatenate(rec.mri)), to_uint8(np.concatenate(rec.func))


def _png(root: Path, pair: str, folder: str, name: str) -> np.ndarray:
    return np.asarray(Image.open(root / pair / folder / f"{name}.png"))


def _index(name: str) -> int:
    return int(name.rsplit("_", 1)[1])


def test_sample_pet_slices_are_what_fusion_feeds_the_network(tmp_path, sample):
    mri, pet = (_slab(v, 38, 14) for v in sample)
    res = prepare_volume_pair(mri, pet, PET_CORONAL, tmp_path, "c25")
    assert res.registration is None and res.pair == "MRI-PET" and res.test == []
    idx, fed_mri, fed_pet = _fed(mri, pet, FusionOptions("PET", register="none", axis="coronal"))
    written = [_index(n) for n in res.train]
    assert set(written) <= set(idx.tolist()) and len(written) >= 10
    for name in res.train:
        k = int(np.flatnonzero(idx == _index(name))[0])
        np.testing.assert_array_equal(_png(tmp_path, "MRI-PET", "MRI", name), fed_mri[k])
        np.testing.assert_array_equal(_png(tmp_path, "MRI-PET", "PET", name), fed_pet[k])
        # RGB PET goes in as it is: the written slice is the volume's own voxels
        np.testing.assert_array_equal(fed_pet[k], pet.array[_index(name)])
    src = read_manifest(tmp_path)["cases"][0]["source"]
    assert src["registration"]["mode"] == "none" and src["axis"]["name"] == "coronal"
    assert src["normalisation"]["functional"] == {"rgb": "used as is (value / 255)"}
    # the loader sees the case as training pairs of the right shapes
    pairs = list_pairs("MRI-PET", "trainval", tmp_path)
    m, f = load_pair(pairs[0])
    assert m.shape == (256, 256) and f.shape == (256, 256, 3)


def test_scalar_suv_pet_goes_through_the_colour_map_like_fusion(tmp_path):
    # Plumbing only: the PET/CT exam's CT stands in for the MRI (same frame of reference, so
    # register='none' resamples the 4.7 mm SUV PET onto the CT grid by the headers).
    ct = read_volume(STS / "CT_crop")
    ref = Volume(ct.image[:, :, 24:34], "MR", dict(ct.meta))
    pet = read_volume(STS / "PT_SUV_crop")
    res = prepare_volume_pair(
        ref, pet, FusionOptions("PET", register="none", colormap="harvard-pet"), tmp_path, "sts"
    )
    assert res.registration is not None and res.registration.iterations == 0  # resampled only
    idx, fed_mri, fed_pet = _fed(ref, pet, FusionOptions("PET", register="none"))
    lut = to_uint8(colormap_lut("harvard-pet"))
    for name in res.train:
        k = int(np.flatnonzero(idx == _index(name))[0])
        img = _png(tmp_path, "MRI-PET", "PET", name)
        np.testing.assert_array_equal(img, fed_pet[k])
        np.testing.assert_array_equal(_png(tmp_path, "MRI-PET", "MRI", name), fed_mri[k])
        colours = np.unique(img.reshape(-1, 3), axis=0)  # every colour is on the palette
        assert (np.abs(colours[:, None].astype(int) - lut[None]).max(-1).min(1) <= 1).all()
    functional = read_manifest(tmp_path)["cases"][0]["source"]["normalisation"]["functional"]
    assert functional["colormap"] == "harvard-pet" and functional["range"][0] == 0.0


@pytest.mark.slow
def test_phantom_ct_rigid_registration_and_test_block(tmp_path):
    ct = read_volume(PHANTOM / "CT_MRI-DIR-zzmeatphantom_bin2x2x2.nii.gz")
    mr = read_volume(PHANTOM / "MR-T2_MRI-DIR-zzmeatphantom_bin2x2x1.nii.gz")
    mr, ct = (
        Volume(sitk.BinShrink(v.image, [2, 2, 2]), v.modality, dict(v.meta)) for v in (mr, ct)
    )
    # head-first vs feet-first: with the headers trusted (--orientation header), the fusion
    # pipeline's own refusal reaches the user unchanged
    with pytest.raises(RegistrationError, match="180"):
        prepare_volume_pair(mr, ct, FusionOptions("CT", orientation="header"), tmp_path, "pig")
    assert not (tmp_path / "dataset.json").exists()
    res = prepare_volume_pair(
        mr,
        ct,
        FusionOptions("CT", orientation="search", ct_window="soft-tissue"),
        tmp_path,
        "pig",
        test_fraction=0.25,
    )
    reg = res.registration
    assert reg.final_metric < reg.metric_before - 0.1 and reg.orientation.startswith("turned 180")
    # the recorded transform reproduces the written CT slices
    rec = read_manifest(tmp_path)["cases"][0]["source"]["registration"]["result"]["transform"]
    t = sitk.Euler3DTransform()
    t.SetFixedParameters(rec["fixed_parameters"])
    t.SetParameters(rec["parameters"])
    ct01 = window_ct(resample_to(mr, ct, t).array, "soft-tissue")
    for name in res.train[::5] + res.test[::5]:
        img = _png(tmp_path, "MRI-CT", "CT", name)
        assert img.ndim == 2 and img.dtype == np.uint8
        np.testing.assert_array_equal(img, to_uint8(ct01[_index(name)]))  # axial = array axis 0
    # every slice has tissue in both images; the test block is contiguous, in the middle,
    # and two slices on each side of it are in neither split
    for name in res.train + res.test:
        for folder in ("MRI", "CT"):
            assert (_png(tmp_path, "MRI-CT", folder, name) > 0.05 * 255).mean() >= 0.05
    train, test = [_index(n) for n in res.train], [_index(n) for n in res.test]
    assert test == list(range(test[0], test[-1] + 1)) and res.test[0].startswith("pig-test_")
    assert len(test) == round(0.25 * (len(train) + len(test) + 4))
    assert min(train) < test[0] and max(train) > test[-1]
    assert not {test[0] - 2, test[0] - 1, test[-1] + 1, test[-1] + 2} & set(train)
    assert dataset_summary(tmp_path) == {"MRI-CT": {"train": len(train), "test": len(test)}}
    assert (tmp_path / "splits" / "MRI-CT" / "test.txt").read_text().split() == res.test


def test_split_blocks_edges():
    train, test = split_blocks(20, 0.2, 2)
    assert test.tolist() == [8, 9, 10, 11] and train.tolist() == [*range(6), *range(14, 20)]
    assert split_blocks(5, 0.0, 2)[1].size == 0
    with pytest.raises(InputError, match="none for training"):
        split_blocks(5, 0.5, 2)
    with pytest.raises(InputError, match="test-fraction"):
        split_blocks(5, 1.0, 0)


def test_append_replace_and_size(tmp_path, sample):
    mri, pet = sample
    a = prepare_volume_pair(
        *(_slab(v, 30, 12) for v in sample), PET_CORONAL, tmp_path, "a", test_fraction=0.25
    )
    b = prepare_volume_pair(*(_slab(v, 50, 8) for v in sample), PET_CORONAL, tmp_path, "b")
    cases = {e["case"]: e for e in read_manifest(tmp_path)["cases"]}
    assert set(cases) == {"a", "a-test", "b"} and cases["a-test"]["split"] == "test"
    assert dataset_summary(tmp_path)["MRI-PET"] == {
        "train": len(a.train) + len(b.train),
        "test": len(a.test),
    }
    # replacing a without a test block drops a-test: manifest, split files and images
    a2 = prepare_volume_pair(*(_slab(v, 30, 6) for v in sample), PET_CORONAL, tmp_path, "a")
    assert {e["case"] for e in read_manifest(tmp_path)["cases"]} == {"a", "b"}
    assert (tmp_path / "splits" / "MRI-PET" / "test.txt").read_text() == ""
    on_disk = sorted(p.stem for p in (tmp_path / "MRI-PET" / "PET").glob("*.png"))
    assert on_disk == sorted(a2.train + b.train)
    # a case on another grid is refused with advice, and nothing changes
    before = (tmp_path / "dataset.json").read_bytes()
    with pytest.raises(InputError, match="--size"):
        prepare_volume_pair(
            _slab(mri, 40, 4),
            _slab(pet, 40, 4),
            FusionOptions("PET", register="none"),
            tmp_path,
            "c",
        )
    assert (tmp_path / "dataset.json").read_bytes() == before
    # --size: axial slices of the sample are 94 x 256: padded to a square, then 128 x 128
    sized = prepare_volume_pair(
        _slab(mri, 30, 40),
        _slab(pet, 30, 40),
        FusionOptions("PET", register="none", axis="axial"),
        tmp_path / "s",
        "ax",
        size=128,
    )
    assert sized.size == (128, 128)
    img = _png(tmp_path / "s", "MRI-PET", "PET", sized.train[len(sized.train) // 2])
    band = (256 - 94) // 2 * 128 // 256  # rows of padding above the slice at 128 pixels
    assert img.shape == (128, 128, 3) and img[: band - 1].max() == 0 and img[-band + 1 :].max() == 0
    assert img[band + 2 : -band - 2].max() > 100


@pytest.mark.slow
def test_prepared_set_trains(tmp_path, sample):
    from EDPSNLib.models.weights import load_weights
    from EDPSNLib.training.trainer import TrainConfig, train

    data = tmp_path / "data"
    prep = prepare_volume_pair(*(_slab(v, 38, 12) for v in sample), PET_CORONAL, data, "c25")
    cfg = TrainConfig(
        out=tmp_path / "run",
        pair="MRI-PET",
        data=data,
        epochs=1,
        max_steps_per_epoch=1,
        batch_size=2,
        crop=64,
        max_val_images=2,
        device="cpu",
    )
    result = train(cfg)
    assert result.weights is not None and result.weights.is_file()
    _, meta = load_weights(result.weights, expected_pair="MRI-PET", device="cpu")
    assert meta["data"] == str(data) and str(meta["steps"]) == "1"
    # validation is drawn from the prepared train slices by the existing loader
    assert int(meta["train_pairs"]) + int(meta["val_pairs"]) == len(prep.train)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_end_to_end_and_bad_input(tmp_path, sample, capsys):
    mri, pet = (_slab(v, 40, 8) for v in sample)
    paths = [tmp_path / "sub-01_T1w.nrrd", tmp_path / "sub-01_pet.nrrd"]
    for vol, path in zip((mri, pet), paths):
        sitk.WriteImage(vol.image, str(path))
    before = [_sha(p) for p in paths]
    out = tmp_path / "set"
    args = [
        "prepare",
        "volumes",
        "--mri",
        str(paths[0]),
        "--moving",
        str(paths[1]),
        "--modality",
        "PET",
        "--out",
        str(out),
        "--register",
        "none",
        "--axis",
        "coronal",
        "--test-fraction",
        "0.2",
        "--test-gap",
        "1",
    ]
    assert main([*args, "--json-progress"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    done = events[-1]
    assert done["event"] == "done" and done["case"] == "sub-01_T1w"
    assert {e["event"] for e in events} >= {"stage", "progress", "done"}
    assert done["train"] + done["test"] == 8 - 2 and done["test"] == 2
    assert f"--data {out.resolve()} --pair MRI-PET" in done["train_command"]
    assert [_sha(p) for p in paths] == before  # inputs untouched
    # human output ends with the summary and the command to run next
    assert main([*args, "--case", "again"]) == 0
    text = capsys.readouterr().out
    assert "Case again: 4 train + 2 test" in text and "edpsn train --data" in text
    # bad input: a message and exit code 2, nothing written
    assert main([*args[:-4], "--modality", "CT", "--case", "x"]) == 2
    assert "RGB" in capsys.readouterr().err
    assert "x" not in {e["case"] for e in read_manifest(out)["cases"]}
    # the same file name from another exam must not replace the first case silently
    (tmp_path / "other").mkdir()
    shutil.copy(paths[0], tmp_path / "other" / paths[0].name)
    other = [a if a != str(paths[0]) else str(tmp_path / "other" / paths[0].name) for a in args]
    assert main(other) == 2 and "--case" in capsys.readouterr().err
    assert main(args) == 0  # the same MRI again: replaces its own case, as documented


def test_bad_inputs_have_clear_messages(tmp_path, sample):
    mri, pet = (_slab(v, 40, 6) for v in sample)
    with pytest.raises(InputError, match="2-D"):
        one = tmp_path / "one.nrrd"
        sitk.WriteImage(mri.image[:, :, 0], str(one))
        prepare_volume_pair(one, pet, PET_CORONAL, tmp_path / "o", "c")
    with pytest.raises(InputError, match="RGB"):  # colour PET called CT
        prepare_volume_pair(
            mri, pet, FusionOptions("CT", register="none", axis="coronal"), tmp_path / "o", "c"
        )
    with pytest.raises(InputError, match="RGB"):  # colour volume as the MRI
        prepare_volume_pair(pet, pet, PET_CORONAL, tmp_path / "o", "c")
    with pytest.raises(InputError, match="Hounsfield"):  # a real CT called PET
        prepare_volume_pair(
            read_volume(STS / "CT_crop"),
            read_volume(STS / "CT_crop"),
            FusionOptions("PET", register="none"),
            tmp_path / "o",
            "c",
        )
    far = Volume(sitk.Image(pet.image), "", {})
    far.image.SetOrigin(tuple(np.array(pet.origin) + [0.0, 0.0, 500.0]))
    with pytest.raises(RegistrationError, match="overlap"):
        prepare_volume_pair(mri, far, PET_CORONAL, tmp_path / "o", "c")
    dim = Volume.from_array(pet.array // 40, pet)  # exported with a wrong scaling: no tissue
    with pytest.raises(InputError, match="No slice has tissue in both"):
        prepare_volume_pair(mri, dim, PET_CORONAL, tmp_path / "o", "c")
    oblique = FusionOptions("PET", register="none", axis="oblique")
    for opts, kwargs, match in (
        (PET_CORONAL, {"test_fraction": 1.0}, "test-fraction"),
        (oblique, {}, "axis"),
        (PET_CORONAL, {"size": 4}, "size"),
        (PET_CORONAL, {"case": "a b"}, "Case name"),
    ):
        kw = {"case": "c", **kwargs}
        with pytest.raises(InputError, match=match):
            prepare_volume_pair(mri, pet, opts, tmp_path / "o", **kw)
    with pytest.raises(InputError, match="CT window"):
        prepare_volume_pair(
            mri,
            read_volume(STS / "CT_crop"),
            FusionOptions("CT", ct_window="lungs"),
            tmp_path / "o",
            "c",
        )
    assert not (tmp_path / "o").exists()
