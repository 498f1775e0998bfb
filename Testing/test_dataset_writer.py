"""Prepared training sets: real Harvard slices written as cases and read back by the loader."""

from __future__ import annotations

import json

import numpy as np
import pytest

from EDPSNLib.data.harvard import list_pairs, load_pair, load_pairs
from EDPSNLib.errors import InputError
from EDPSNLib.training.dataset_writer import (
    MANIFEST_NAME,
    add_case,
    dataset_summary,
    read_manifest,
    tissue_slices,
)


@pytest.fixture(scope="module")
def real_pet_slices() -> tuple[np.ndarray, np.ndarray]:
    """Six real MRI/PET pairs of the Harvard test split, as uint8 stacks."""
    return load_pairs(list_pairs("MRI-PET", "test")[:6])


def test_cases_round_trip_through_the_harvard_loader(tmp_path, real_pet_slices):
    mri, pet = real_pet_slices
    names = add_case(tmp_path, "MRI-PET", "caseA", mri[:4], pet[:4], [10, 11, 12, 13])
    add_case(tmp_path, "MRI-PET", "caseB", mri[4:], pet[4:], [0, 1], split="test")
    assert names == ["caseA_0010", "caseA_0011", "caseA_0012", "caseA_0013"]
    train = list_pairs("MRI-PET", "trainval", tmp_path)
    test = list_pairs("MRI-PET", "test", tmp_path)
    assert [p.name for p in train] == names
    assert [p.name for p in test] == ["caseB_0000", "caseB_0001"]
    got_mri, got_pet = load_pair(train[2])
    np.testing.assert_array_equal(got_mri, mri[2])
    np.testing.assert_array_equal(got_pet, pet[2])
    assert dataset_summary(tmp_path) == {"MRI-PET": {"train": 4, "test": 2}}


def test_re_adding_a_case_replaces_it_and_removes_stale_slices(tmp_path, real_pet_slices):
    mri, pet = real_pet_slices
    add_case(tmp_path, "MRI-PET", "caseA", mri[:4], pet[:4], [0, 1, 2, 3], source={"v": 1})
    add_case(tmp_path, "MRI-PET", "caseA", mri[:2], pet[:2], [0, 1], source={"v": 2})
    manifest = read_manifest(tmp_path)
    assert len(manifest["cases"]) == 1 and manifest["cases"][0]["source"] == {"v": 2}
    assert sorted(p.stem for p in (tmp_path / "MRI-PET" / "PET").glob("*.png")) == [
        "caseA_0000",
        "caseA_0001",
    ]
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())["format"] == "edpsn-dataset/1"


def test_bad_cases_are_refused_with_advice(tmp_path, real_pet_slices):
    mri, pet = real_pet_slices
    add_case(tmp_path, "MRI-PET", "caseA", mri[:2], pet[:2], [0, 1])
    with pytest.raises(InputError, match="--size 256"):
        add_case(tmp_path, "MRI-PET", "small", mri[:2, :128, :128], pet[:2, :128, :128], [0, 1])
    with pytest.raises(InputError, match="functional slices must be uint8"):
        add_case(tmp_path, "MRI-PET", "grey", mri[:2], mri[:2], [0, 1])
    with pytest.raises(InputError, match="Case name"):
        add_case(tmp_path, "MRI-PET", "../escape", mri[:2], pet[:2], [0, 1])
    with pytest.raises(InputError, match="no slices"):
        add_case(tmp_path, "MRI-PET", "empty", mri[:0], pet[:0], [])
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(InputError, match="prepare it again"):
        read_manifest(tmp_path)


def test_tissue_slices_needs_signal_in_both_images(real_pet_slices):
    mri, pet = real_pet_slices
    mri01, pet01 = mri[:3] / 255.0, pet[:3] / 255.0
    mri01[1] = 0.0  # an MRI slice outside the body
    pet01[2] = 0.0  # a functional slice with no uptake at all
    assert tissue_slices(mri01, pet01).tolist() == [0]
